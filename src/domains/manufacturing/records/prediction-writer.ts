import type { PredictionEntity } from './prediction.entity';

export type PredictionRow = PredictionEntity;

interface Pending {
  rows: PredictionRow[];
  done: (error?: Error) => void;
  /** Rows of an earlier failed INSERT, written again. */
  retry?: boolean;
}

/** Rows per INSERT at most: keeps each statement, and the transaction it commits, bounded. */
const MAX_ROWS_PER_INSERT = 5000;

/** Rows of failed INSERTs kept for retrying at most; past it the oldest are dropped, and logged. */
const MAX_RETRY_ROWS = 200_000;

export interface PredictionWriterOptions {
  /** First wait before rows of a failed INSERT are written again; doubled up to 30 s while it keeps failing. */
  retryDelayMs?: number;
  /** Told when rows are dropped from a full retry queue. */
  onDropped?: (rows: number) => void;
}

/**
 * Group commit for predictions: `write` resolves once its rows are committed. One INSERT is in
 * flight at a time; rows that arrive meanwhile wait together and go in the next one, so a stream of
 * small ingests (one MQTT message each) shares round trips instead of queueing one INSERT apiece.
 * A failed INSERT fails every caller whose rows were in it (their messages stay unacknowledged, the
 * HTTP caller gets its error), and its rows are written again later until the database takes them:
 * the readings they came from are already in their assets' windows, so a redelivered message or a
 * retried request finds them duplicates and would not predict them again. The INSERT ignores a row
 * already stored, so a retry never writes one twice.
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

  constructor(
    private readonly insert: (rows: PredictionRow[]) => Promise<void>,
    private readonly options: PredictionWriterOptions = {},
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
        for (let i = 0; i < rows.length; i += MAX_ROWS_PER_INSERT) {
          await this.insert(rows.length <= MAX_ROWS_PER_INSERT ? rows : rows.slice(i, i + MAX_ROWS_PER_INSERT));
        }
        for (const p of group) p.done();
        if (group.some((p) => p.retry)) this.retryDelayMs = this.firstRetryDelayMs;
      } catch (error) {
        this.keepForRetry(rows);
        for (const p of group) p.done(error as Error);
      } finally {
        this.retrying -= retrying;
      }
    }
    this.running = undefined;
  }

  private keepForRetry(rows: PredictionRow[]): void {
    // One by one: push(...rows) overflows the stack past some 120,000 rows, and the writer would stop for good.
    for (const row of rows) this.retryRows.push(row);
    const over = this.retryRows.length - MAX_RETRY_ROWS;
    if (over > 0) {
      this.retryRows.splice(0, over);
      this.options.onDropped?.(over);
    }
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      const rows = this.retryRows;
      this.retryRows = [];
      this.retryDelayMs = Math.min(30_000, this.retryDelayMs * 2);
      // A failure goes back to keepForRetry (the rows are in the group); nobody waits on this one.
      this.queue.push({ rows, done: () => undefined, retry: true });
      this.running ??= this.drain();
    }, this.retryDelayMs);
    this.retryTimer.unref();
  }
}
