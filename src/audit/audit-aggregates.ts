import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { AuditDraft, AuditWriter } from './audit-writer.service';

/** One key's refusals since its last summary row. */
interface Aggregate {
  /** The first refusal's row, the summary's template (actor, roles, tenant, action, status). */
  first: AuditDraft;
  group: string;
  /** The last refusal's client address, which the summary names. */
  address: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
  lastRequestId: string;
  lastReason: unknown;
  /** A later refusal named another actor (a DIMSE peer trying calling AE titles): the summary names none. */
  severalActors: boolean;
}

/**
 * Requests counted rather than written one by one (a request whose audit note carries `aggregate`): refusals past
 * their address's budget of refused tokens, or their subject's in its tenant of 403s and 429s (RefusalLimiter), and
 * scrapes of /metrics, which decide nothing and come every few seconds (MetricsController). Each group
 * (an address, a subject in a tenant), tenant, action and status gets one summary row per AUTH_REFUSAL_WINDOW_MS
 * while they keep coming, written through the same hash chain as any row: the client address (the last one; an IPv6
 * address limited by its /64 as that), how many were refused (`refusals`, with the last reason) or answered
 * (`requests`), the first and last time, the last request id, and the actor where they all named one (else none, and
 * severalActors). What is still counted at shutdown
 * is written before the trail closes. The answers to these requests do not wait for the summary's commit: they
 * decide nothing.
 */
@Injectable()
export class AuditAggregates implements BeforeApplicationShutdown {
  private readonly logger = new Logger('Audit');
  private pending = new Map<string, Aggregate>();
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  /** Set at shutdown: a summary that fails then is logged with its count, as nothing will write it later. */
  private closing = false;

  constructor(
    private readonly writer: AuditWriter,
    config: AppConfig,
  ) {
    this.intervalMs = config.AUTH_REFUSAL_WINDOW_MS;
  }

  /** Counts `draft` (a refusal's row, a scrape's) into the summary for `group` (an address's, a subject's, a scraper's). */
  count(group: string, draft: AuditDraft): void {
    const key = keyOf(group, draft);
    const at = draft.occurredAt;
    const reason = draft.outputSummary?.reason;
    const entry = this.pending.get(key);
    if (entry) {
      entry.count++;
      entry.lastAt = at;
      entry.lastRequestId = draft.requestId;
      entry.lastReason = reason;
      entry.address = draft.clientAddress;
      if (draft.actor !== entry.first.actor) entry.severalActors = true;
    } else {
      this.pending.set(key, {
        first: draft,
        group,
        address: draft.clientAddress,
        count: 1,
        firstAt: at,
        lastAt: at,
        lastRequestId: draft.requestId,
        lastReason: reason,
        severalActors: false,
      });
    }
    this.schedule();
  }

  /** Writes one summary row per key counted so far; a key whose row cannot be written is counted on. */
  async flush(): Promise<void> {
    const entries = [...this.pending.values()];
    this.pending = new Map();
    await Promise.all(
      entries.map((entry) =>
        this.writer.record(summaryOf(entry)).catch((error: unknown) => {
          this.logger.warn({
            msg: this.closing
              ? 'audit summary of counted requests not written before shutdown'
              : 'audit summary of counted requests not written; kept for the next one',
            group: entry.group,
            requests: entry.count,
            error: String(error),
          });
          if (!this.closing) this.merge(entry);
        }),
      ),
    );
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.intervalMs).unref();
  }

  private merge(entry: Aggregate): void {
    const key = keyOf(entry.group, entry.first);
    const later = this.pending.get(key);
    if (later) {
      later.severalActors ||= entry.severalActors || later.first.actor !== entry.first.actor;
      later.count += entry.count;
      later.first = entry.first;
      later.firstAt = entry.firstAt;
    } else {
      this.pending.set(key, entry);
    }
    this.schedule();
  }
}

/**
 * One summary row per group, tenant, action and status: a tenant's row never counts another tenant's refusals
 * nor names their last request id, whatever group they were counted in (every caller past the tracked ones
 * shares one). JSON, so that no group, tenant or action spells another's key.
 */
function keyOf(group: string, draft: AuditDraft): string {
  return JSON.stringify([group, draft.tenant, draft.action, draft.statusCode]);
}

function summaryOf(entry: Aggregate): AuditDraft {
  const refused = entry.first.statusCode >= 400;
  return {
    ...entry.first,
    actor: entry.severalActors ? null : entry.first.actor,
    occurredAt: new Date(),
    requestId: entry.lastRequestId,
    clientAddress: entry.address,
    inputDigest: null,
    outputSummary: {
      // A refusal's summary says why (the last reason) and how many; a read's (a scrape of /metrics) how many.
      ...(refused ? { reason: entry.lastReason ?? `HTTP ${entry.first.statusCode}`, refusals: entry.count } : {}),
      ...(refused ? {} : { requests: entry.count }),
      firstAt: entry.firstAt.toISOString(),
      lastAt: entry.lastAt.toISOString(),
      ...(entry.severalActors ? { severalActors: true } : {}),
    },
    latencyMs: 0,
  };
}
