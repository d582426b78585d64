import type { DataSource } from 'typeorm';

/**
 * Rows per DELETE when old records are purged: each statement holds the database (embedded PGlite runs one
 * statement at a time, the audit trail's commits included) for a few milliseconds, not for the whole backlog.
 */
export const PURGE_CHUNK = 2000;

/**
 * Runs `sql`, a DELETE of at most PURGE_CHUNK rows (its inner SELECT's `LIMIT ${PURGE_CHUNK}`), again and again
 * with a pause between statements until a run deletes fewer, and resolves with how many rows went in all.
 */
export async function deleteInChunks(dataSource: DataSource, sql: string, params: unknown[]): Promise<number> {
  let total = 0;
  for (;;) {
    const [{ n }] = await dataSource.query<Array<{ n: number }>>(
      `WITH gone AS (${sql} RETURNING 1) SELECT count(*)::int AS n FROM gone`,
      params,
    );
    total += n;
    if (n < PURGE_CHUNK) return total;
    await new Promise((later) => setTimeout(later, 5));
  }
}
