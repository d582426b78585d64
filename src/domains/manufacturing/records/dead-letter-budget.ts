import { FixedWindowCounts } from '../../../common/fixed-window-counts';
import type { DeadLetterEntity } from './dead-letter.entity';

export type DeadLetterRow = Omit<DeadLetterEntity, 'id'>;

/**
 * Reasons that refuse what a source sent (a message, a reading): past the budget these are summed up. The
 * others (ingest-failed, held-too-long, inference-failed, prediction-refused, alarm-refused) record a reading
 * or row the gateway gave up on, each the only trace of it, and are always kept one by one.
 */
export const REFUSED_INPUT = new Set([
  'malformed',
  'too-large',
  'unknown-topic',
  'unknown-asset',
  'asset-mismatch',
  'unknown-alias',
  'invalid-value',
  'late',
  'duplicate',
]);

/** Kinds (source, channel, reason) tracked in one window; a further channel shares one budget per source and reason. */
export const MAX_KINDS = 10_000;
export const OTHER_CHANNELS = '(other channels)';

/** Dead letters of one kind past its budget, since the last summary. */
export interface Surplus {
  last: DeadLetterRow;
  channel: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
}

/**
 * The dead letters of refused input kept per minute for each source, channel and reason
 * (MANUFACTURING_DEAD_LETTER_LIMIT); past it, each is counted into its kind's surplus, which the
 * repository writes as one summary dead letter (summaryOf) when the minute ends. A sensor or edge node
 * that sends garbage without end would otherwise have a row of up to 4 KiB written for each message,
 * in the database the audit trail shares.
 */
export class DeadLetterBudget {
  private readonly counts: FixedWindowCounts;
  private surplus = new Map<string, Surplus>();

  constructor(
    readonly limit: number,
    windowMs = 60_000,
    now: () => number = Date.now,
  ) {
    this.counts = new FixedWindowCounts(windowMs, MAX_KINDS, now);
  }

  get windowMs(): number {
    return this.counts.windowMs;
  }

  /** The rows to keep, and those counted into their kind's surplus instead. */
  admit(rows: readonly DeadLetterRow[]): { kept: DeadLetterRow[]; summarised: DeadLetterRow[] } {
    if (this.limit === 0) return { kept: [...rows], summarised: [] };
    const kept: DeadLetterRow[] = [];
    const summarised: DeadLetterRow[] = [];
    for (const row of rows) {
      if (!REFUSED_INPUT.has(row.reason)) {
        kept.push(row);
        continue;
      }
      const own = kindOf(row.source, row.channel, row.reason);
      const { key, count } = this.counts.add(own, kindOf(row.source, OTHER_CHANNELS, row.reason));
      if (count <= this.limit) {
        kept.push(row);
        continue;
      }
      summarised.push(row);
      const surplus = this.surplus.get(key);
      if (surplus) {
        surplus.count++;
        surplus.last = row;
        surplus.lastAt = row.receivedAt;
      } else {
        const channel = key === own ? row.channel : OTHER_CHANNELS;
        this.surplus.set(key, { last: row, channel, count: 1, firstAt: row.receivedAt, lastAt: row.receivedAt });
      }
    }
    return { kept, summarised };
  }

  /** Whether some are counted and wait for their summary. */
  get pending(): boolean {
    return this.surplus.size > 0;
  }

  /** The surplus so far, each kind's once; `restore` puts back what could not be written. */
  take(): Surplus[] {
    const taken = [...this.surplus.values()];
    this.surplus = new Map();
    return taken;
  }

  restore(taken: readonly Surplus[]): void {
    for (const s of taken) {
      const key = kindOf(s.last.source, s.channel, s.last.reason);
      const later = this.surplus.get(key);
      if (later) {
        later.count += s.count;
        later.firstAt = s.firstAt;
      } else {
        this.surplus.set(key, s);
      }
    }
  }
}

function kindOf(source: string, channel: string, reason: string): string {
  return `${source}\u0000${channel}\u0000${reason}`;
}

/** The summary dead letter of a kind's surplus: its last message as the payload, and how many were counted when. */
export function summaryOf(surplus: Surplus, limit: number): DeadLetterRow {
  return {
    ...surplus.last,
    channel: surplus.channel,
    receivedAt: surplus.lastAt,
    detail: (
      `${surplus.count} more dead letters like this from ${surplus.firstAt.toISOString()} to ` +
      `${surplus.lastAt.toISOString()} were counted, not kept (more than ${limit} a minute); the last one's ` +
      `detail: ${surplus.last.detail}`
    ).slice(0, 1000),
  };
}
