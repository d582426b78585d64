import { isIPv4, isIPv6 } from 'node:net';
import { Logger } from '@nestjs/common';
import { FixedWindowCounts } from '../common/fixed-window-counts';

/** Addresses (or subjects) tracked in one window; beyond it, every new one shares one budget (overflowKey). */
export const MAX_TRACKED_ADDRESSES = 10_000;
export const OVERFLOW_KEY = 'other addresses';

export interface RefusalLimiterOptions {
  now?: () => number;
  /** What a budget belongs to, from what `refused` is given (default: addressKey). */
  keyOf?: (caller: string) => string;
  /** The key beyond MAX_TRACKED_ADDRESSES (default: OVERFLOW_KEY). */
  overflowKey?: string;
}

/** A refusal past the address's budget: answer 429, and count it into the address's summary row. */
export interface Limited {
  /** The address as the budget counts it (an IPv6 address by its /64), for the audit trail. */
  key: string;
  retryAfterSeconds: number;
  limit: number;
  windowSeconds: number;
  /** The first past the budget in this window: the one to log, once. */
  first: boolean;
}

/**
 * Counts the requests each client address has had refused for want of a valid token (401), in fixed
 * windows of `windowMs`. Past `limit` in a window, the address's further refusals are Limited: the caller
 * answers them 429 and the audit trail counts them into one summary row per address (AuditAggregates)
 * instead of writing a row each, so that nobody without a token can grow the audit table or hold its
 * commits at will. Requests that carry a valid token are never counted or limited, so one broken
 * client behind a shared address (a NAT, a proxy) does not lock out the others there.
 *
 * An IPv6 address is counted by its /64 (one host's usual allocation, which it can rotate within at no
 * cost), an IPv4-mapped one as IPv4. At most MAX_TRACKED_ADDRESSES are tracked in a window; further
 * addresses share one budget, so a flood spread over many addresses is limited as one.
 */
export class RefusalLimiter {
  private readonly counts: FixedWindowCounts;
  private readonly keyOf: (caller: string) => string;
  private readonly overflowKey: string;

  constructor(
    /** Refusals per address per window before Limited; 0 turns the limit off. */
    private readonly limit: number,
    windowMs: number,
    options: RefusalLimiterOptions = {},
  ) {
    this.counts = new FixedWindowCounts(windowMs, MAX_TRACKED_ADDRESSES, options.now);
    this.keyOf = options.keyOf ?? addressKey;
    this.overflowKey = options.overflowKey ?? OVERFLOW_KEY;
  }

  /** Counts one refusal of `caller`'s request (its address); Limited when it is past its budget. */
  refused(caller: string): Limited | undefined {
    if (this.limit === 0) return undefined;
    const { key, count, msLeft } = this.counts.add(this.keyOf(caller), this.overflowKey);
    if (count <= this.limit) return undefined;
    return {
      key,
      retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)),
      limit: this.limit,
      windowSeconds: this.counts.windowMs / 1000,
      first: count === this.limit + 1,
    };
  }
}

/** The address a refusal budget belongs to: IPv4 as is (an IPv4-mapped IPv6 too), IPv6 by its /64 prefix. */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped && isIPv4(mapped[1])) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.split('%')[0].toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (::1.2.3.4) takes two groups; only the first four groups matter here.
  const rightGroups = right.flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]));
  const groups = address.includes('::')
    ? [...left, ...Array<string>(8 - left.length - rightGroups.length).fill('0'), ...rightGroups]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/** Who a token names, for the budgets and limits kept per caller: its subject, within its tenant. */
export interface TokenCaller {
  subject: string;
  tenant?: string;
}

/**
 * The key of a token's caller: its tenant and subject, JSON-encoded, so that no tenant or subject, whatever
 * it holds, can spell another pair's key (a separator in either cannot shift the boundary between them), a
 * token without a tenant is not one whose tenant is "null", and no key is the limiter's overflow key. One
 * `sub` in several tenants (Auth0 Organizations) is a caller in each: its refusals are budgeted and
 * summed up per tenant, so no tenant's audit rows carry another's request ids or counts.
 */
export function callerKey(caller: TokenCaller): string {
  return JSON.stringify([caller.tenant ?? null, caller.subject]);
}

/**
 * The gateway's budgets of refusals audited one by one in each window: per client address, of requests
 * without a valid token (answered 429 past it); per token subject within its tenant, of its 403s and 429s
 * (answered as before past it). Past either, the refusals go into one summary row per window (AuditAggregates).
 */
export class RefusalBudgets {
  readonly addresses: RefusalLimiter;
  private readonly subjects: RefusalLimiter;

  constructor(limit: number, windowMs: number, now?: () => number) {
    this.addresses = new RefusalLimiter(limit, windowMs, { now });
    this.subjects = new RefusalLimiter(limit, windowMs, {
      now,
      keyOf: (key) => key,
      overflowKey: 'other subjects',
    });
  }

  /** Counts one refusal (403, or 429 past its rate limit) of the token's caller; Limited past its budget. */
  callerRefused(caller: TokenCaller): Limited | undefined {
    return this.subjects.refused(callerKey(caller));
  }
}

const logger = new Logger('Access');

/** Once per address and window: its requests without a valid token from here on are answered 429. */
export function logAddressPastBudget(limited: Limited): void {
  logger.warn({
    msg: 'requests without a valid token past the address budget: answered 429, summed up in the audit trail',
    address: limited.key,
    limit: limited.limit,
    retryAfterSeconds: limited.retryAfterSeconds,
  });
}

/** Once per subject, tenant and window: its refusals from here on are summed up in the audit trail. */
export function logSubjectPastBudget(limited: Limited, caller: TokenCaller): void {
  logger.warn({
    msg: "refusals past the subject's budget: answered as before, summed up in the audit trail",
    subject: caller.subject,
    tenant: caller.tenant ?? null,
    // Past the tracked callers, every further one shares a budget: this one was the first past it.
    ...(limited.key !== callerKey(caller) ? { budget: limited.key } : {}),
    limit: limited.limit,
  });
}
