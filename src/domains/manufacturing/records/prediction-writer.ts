import { isStorageOutage } from '../../../database/storage-unavailable';
import type { PredictionEntity } from './prediction.entity';

export type PredictionRow = PredictionEntity;

/** A row the database refuses for its own content, with what it said. */
export interface RefusedPrediction {
  row: PredictionRow;
  error: unknown;
}

interface Pending {
  rows: PredictionRow[];
  done: (error?: Error) => void;
  /** Rows of an earlier failed INSERT, written again. */
  retry?: boolean;
}

/** Rows per INSERT at most: keeps each statement, and the transaction it commits, bounded. */
const MAX_ROWS_PER_INSERT = 5000;

/** Rows of failed INSERTs kept for retrying at most; past it the oldest are dropped, and handed to onDropped. */
const MAX_RETRY_ROWS = 200_000;

/**
 * Statements a group may spend looking for the rows the database refuses. Halving finds one bad row among
 * 5,000 in at most 26; what is not looked into by then is written again later, and looked into again.
 */
const MAX_SEARCH_STATEMENTS = 100;

export interface PredictionWriterOptions {
  /**
   * Takes the rows the database refuses for their own content (not an outage), so that they do not hold
   * the others: awaited before their callers are answered; must not throw.
   */
  onRefused: (refused: RefusedPrediction[]) => Promise<void>;
  /** First wait before rows of a failed INSERT are written again; doubled up to 30 s while it keeps failing. */
  retryDelayMs?: number;
  /** Told of the rows dropped from a full retry queue (the oldest): must not throw. */
  onDropped?: (rows: PredictionRow[]) => void;
}

/**
 * Group commit for predictions: `write` resolves once its rows are committed. One INSERT is in
 * flight at a time; rows that arrive meanwhile wait together and go in the next one, so a stream of
 * small ingests (one MQTT message each) shares round trips instead of queueing one INSERT apiece.
 *
 * A failed INSERT fails every caller whose rows were not all committed: with the outage if the database
 * was away for one of them, else with what it said. When the database is away (isStorageOutage) the rows
 * are written again later until it takes them: the readings they came from are already in their assets'
 * windows, so a redelivered message or a retried request finds them duplicates and would not predict
 * them again. The INSERT ignores a row already stored, so a retry never writes one twice.
 *
 * A group the database refuses for another reason (a constraint, a value a column cannot take) is halved
 * until the rows it refuses alone are found, and the rest is written. A row refused alone goes to
 * onRefused once the database has taken other rows since it was first refused; until then (a database
 * that refuses everything: a bug, not the rows) it is written again later, as in an outage.
 */
export class PredictionWriter {
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;
  private retryRows: PredictionRow[] = [];
  /** Rows of failed INSERTs being written again now. */
  private retrying = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs: number;
  private readonly firstRetryDelayMs: number;
  /** INSERTs committed: a row refused alone while this grows is refused for its content. */
  private commits = 0;
  /** Rows refused alone while nothing else was committed, with `commits` then. */
  private readonly suspects = new WeakMap<PredictionRow, number>();
  /** Rows of failed INSERTs not committed yet (waiting, or being written again), by asset incarnation (keptKey). */
  private readonly keptByAsset = new Map<string, number>();
  /** When rows were last written again (the timer or retryNow). */
  private lastRetryAt = -Infinity;

  constructor(
    private readonly insert: (rows: PredictionRow[]) => Promise<void>,
    private readonly options: PredictionWriterOptions,
  ) {
    this.firstRetryDelayMs = options.retryDelayMs ?? 1000;
    this.retryDelayMs = this.firstRetryDelayMs;
  }

  /** Rows waiting to be written again after a failed INSERT. */
  get waitingForRetry(): number {
    return this.retryRows.length;
  }

  /** Rows of failed INSERTs not committed yet: waiting, or being written again. */
  get kept(): number {
    return this.retryRows.length + this.retrying;
  }

  /**
   * Whether rows of the asset's incarnation from failed INSERTs are not committed yet. An asset removed and made again
   * is another incarnation: the removed one's rows are not its readings' (and are not written over its own).
   */
  keeps(assetId: string, incarnation: string): boolean {
    return this.keptByAsset.has(keptKey(assetId, incarnation));
  }

  /**
   * Writes the rows waiting for a retry now rather than at the retry timer, for a caller that waits on them; at most
   * once per first retry delay (else, or while they are being written, it waits for the write under way). Resolves
   * once tried, whatever came of it (rows not written wait for the next retry).
   */
  retryNow(): Promise<void> {
    const due = Date.now() - this.lastRetryAt >= this.firstRetryDelayMs;
    if (this.retryRows.length === 0 || !due) return this.running ?? Promise.resolve();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    return new Promise<void>((resolve) => this.writeAgain(() => resolve()));
  }

  /** Stops retrying (shutdown); rows still waiting are not written. */
  close(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  write(rows: PredictionRow[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ rows, done: (error) => (error ? reject(error) : resolve()) });
      this.running ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    // Let the callers of this turn of the event loop join the first group.
    await Promise.resolve();
    while (this.queue.length > 0) {
      const group: Pending[] = [];
      let count = 0;
      // Rows written again go alone: a row the database would never take cannot fail new callers' rows.
      while (
        this.queue.length > 0 &&
        (count === 0 ||
          (!group[0].retry && !this.queue[0].retry && count + this.queue[0].rows.length <= MAX_ROWS_PER_INSERT))
      ) {
        const next = this.queue.shift()!;
        group.push(next);
        count += next.rows.length;
      }
      const rows = group.length === 1 ? group[0].rows : group.flatMap((p) => p.rows);
      const retrying = group.reduce((n, p) => n + (p.retry ? p.rows.length : 0), 0);
      this.retrying += retrying;
      try {
        const commits = this.commits;
        const { failed, held, refused } = await this.insertAll(rows);
        if (refused.length > 0) await this.options.onRefused(refused).catch(() => undefined);
        // Retries come sooner again once one gets anywhere (some rows written, a bad row found).
        if (group.some((p) => p.retry) && (this.commits > commits || refused.length > 0)) {
          this.retryDelayMs = this.firstRetryDelayMs;
        }
        // Rows written again are kept no more, but those held again (in the same turn: keeps never misses them).
        for (const p of group) if (p.retry) this.countKept(p.rows, -1);
        if (held.length > 0) this.keepForRetry(held);
        for (const p of group) p.done(failed.size === 0 ? undefined : errorOf(p.rows, failed));
      } finally {
        this.retrying -= retrying;
      }
    }
    this.running = undefined;
  }

  /**
   * Writes the rows, in statements of at most MAX_ROWS_PER_INSERT, and halves those the database refuses
   * other than for an outage. `failed`: each row not committed, with the error that kept it out; of those,
   * `held` are to be written again (an outage, or not looked into yet) and `refused` are not.
   */
  private async insertAll(rows: PredictionRow[]): Promise<{
    failed: Map<PredictionRow, unknown>;
    held: PredictionRow[];
    refused: RefusedPrediction[];
  }> {
    const failed = new Map<PredictionRow, unknown>();
    const held: PredictionRow[] = [];
    const alone: Array<RefusedPrediction & { commits: number }> = [];
    const parts: PredictionRow[][] = [];
    for (let i = 0; i < rows.length; i += MAX_ROWS_PER_INSERT) {
      parts.push(rows.length <= MAX_ROWS_PER_INSERT ? rows : rows.slice(i, i + MAX_ROWS_PER_INSERT));
    }
    let outage: unknown;
    let refusal: unknown;
    let budget = MAX_SEARCH_STATEMENTS;
    const hold = (part: PredictionRow[], error: unknown) => {
      for (const row of part) {
        failed.set(row, error);
        held.push(row);
      }
    };
    for (let part = parts.shift(); part; part = parts.shift()) {
      // Once the database is away, or the search has spent its statements, the rest waits for a retry.
      if (outage !== undefined || (refusal !== undefined && budget-- <= 0)) {
        hold(part, outage ?? refusal);
        continue;
      }
      try {
        await this.insert(part);
        this.commits++;
      } catch (error) {
        if (isStorageOutage(error)) {
          outage = error;
          hold(part, error);
        } else if (part.length > 1) {
          refusal = error;
          const half = Math.ceil(part.length / 2);
          parts.unshift(part.slice(0, half), part.slice(half));
        } else {
          refusal = error;
          alone.push({ row: part[0], error, commits: this.commits });
        }
      }
    }
    const refused: RefusedPrediction[] = [];
    for (const { row, error, commits } of alone) {
      const since = this.suspects.get(row) ?? commits;
      if (this.commits > since) {
        refused.push({ row, error });
        failed.set(row, error);
      } else {
        this.suspects.set(row, since);
        hold([row], error);
      }
    }
    return { failed, held, refused };
  }

  private keepForRetry(rows: PredictionRow[]): void {
    // One by one: push(...rows) overflows the stack past some 120,000 rows, and the writer would stop for good.
    for (const row of rows) this.retryRows.push(row);
    this.countKept(rows, 1);
    const over = this.retryRows.length - MAX_RETRY_ROWS;
    if (over > 0) {
      const dropped = this.retryRows.splice(0, over);
      this.countKept(dropped, -1);
      this.options.onDropped?.(dropped);
    }
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryDelayMs = Math.min(30_000, this.retryDelayMs * 2);
      // A failure goes back to keepForRetry (the rows are in the group); nobody waits on this one.
      this.writeAgain(() => undefined);
    }, this.retryDelayMs);
    this.retryTimer.unref();
  }

  /** Queues the rows waiting for a retry as one group, written alone. */
  private writeAgain(done: () => void): void {
    const rows = this.retryRows;
    this.retryRows = [];
    this.lastRetryAt = Date.now();
    this.queue.push({ rows, done, retry: true });
    this.running ??= this.drain();
  }

  private countKept(rows: readonly PredictionRow[], delta: 1 | -1): void {
    for (const row of rows) {
      const key = keptKey(row.assetId, row.incarnation);
      const n = (this.keptByAsset.get(key) ?? 0) + delta;
      if (n > 0) this.keptByAsset.set(key, n);
      else this.keptByAsset.delete(key);
    }
  }
}

/** An asset incarnation's key: the incarnation is a uuid (36 characters, no space), so no two pairs share one. */
function keptKey(assetId: string, incarnation: string): string {
  return `${incarnation} ${assetId}`;
}

/** A caller's error: the outage if any of its rows waits for the database, else why one was refused. */
function errorOf(rows: PredictionRow[], failed: Map<PredictionRow, unknown>): Error | undefined {
  let error: unknown;
  for (const row of rows) {
    const e = failed.get(row);
    if (e === undefined) continue;
    if (isStorageOutage(e)) return e as Error;
    error ??= e;
  }
  return error as Error | undefined;
}

/** Assets named one by one in a summary of dropped rows; the rest are counted together. */
const MAX_NAMED_ASSETS = 20;

interface DroppedRange {
  rows: number;
  from: string;
  to: string;
}

/**
 * Which assets lost predictions, and from when to when, for a log line of a bounded size: the assets that
 * lost most first, at most MAX_NAMED_ASSETS of them, the others counted.
 */
export function droppedSummary(rows: PredictionRow[]): DroppedRange & {
  assets: Array<DroppedRange & { assetId: string }>;
  otherAssets?: { assets: number; rows: number };
} {
  const byAsset = new Map<string, { rows: number; from: number; to: number }>();
  let from = Infinity;
  let to = -Infinity;
  for (const row of rows) {
    const at = row.at.getTime();
    from = Math.min(from, at);
    to = Math.max(to, at);
    const range = byAsset.get(row.assetId);
    if (range) {
      range.rows++;
      range.from = Math.min(range.from, at);
      range.to = Math.max(range.to, at);
    } else {
      byAsset.set(row.assetId, { rows: 1, from: at, to: at });
    }
  }
  const iso = (ms: number) => new Date(ms).toISOString();
  const ranked = [...byAsset].sort((a, b) => b[1].rows - a[1].rows);
  const named = ranked.slice(0, MAX_NAMED_ASSETS);
  const others = ranked.slice(MAX_NAMED_ASSETS);
  return {
    rows: rows.length,
    from: iso(from),
    to: iso(to),
    assets: named.map(([assetId, r]) => ({ assetId, rows: r.rows, from: iso(r.from), to: iso(r.to) })),
    ...(others.length > 0
      ? { otherAssets: { assets: others.length, rows: others.reduce((n, [, r]) => n + r.rows, 0) } }
      : {}),
  };
}
