import type { PredictionEntity } from './prediction.entity';

export type PredictionRow = PredictionEntity;

interface Pending {
  rows: PredictionRow[];
  done: (error?: Error) => void;
}

/** Rows per INSERT at most: keeps each statement, and the transaction it commits, bounded. */
const MAX_ROWS_PER_INSERT = 5000;

/**
 * Group commit for predictions: `write` resolves once its rows are committed. One INSERT is in
 * flight at a time; rows that arrive meanwhile wait together and go in the next one, so a stream of
 * small ingests (one MQTT message each) shares round trips instead of queueing one INSERT apiece.
 * A failed INSERT fails every caller whose rows were in it (their messages stay unacknowledged).
 */
export class PredictionWriter {
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;

  constructor(private readonly insert: (rows: PredictionRow[]) => Promise<void>) {}

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
      while (this.queue.length > 0 && (count === 0 || count + this.queue[0].rows.length <= MAX_ROWS_PER_INSERT)) {
        const next = this.queue.shift()!;
        group.push(next);
        count += next.rows.length;
      }
      const rows = group.length === 1 ? group[0].rows : group.flatMap((p) => p.rows);
      try {
        for (let i = 0; i < rows.length; i += MAX_ROWS_PER_INSERT) {
          await this.insert(rows.length <= MAX_ROWS_PER_INSERT ? rows : rows.slice(i, i + MAX_ROWS_PER_INSERT));
        }
        for (const p of group) p.done();
      } catch (error) {
        for (const p of group) p.done(error as Error);
      }
    }
    this.running = undefined;
  }
}
