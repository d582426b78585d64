import type { DataSource, EntityManager } from 'typeorm';

/**
 * Tables listed newest first and paged by id (`beforeId`) on a PostgreSQL server, where lanes and gateways insert
 * side by side: a row whose id was drawn first can become visible after rows drawn later, and a page read in between
 * moves past it for good (the next page lists only ids below the last one it listed). Each such table has its own
 * advisory lock (two-key form: apart from the audit writer claims' one-key locks), held shared by every insert (taken
 * before any id is drawn, held to the commit), so inserts still run side by side, and exclusively by a listing's read
 * (readInInsertOrder), which so waits for the inserts in flight and sees every id drawn before it.
 */
export type InsertOrderLock = readonly [number, number];

/** 'aud\0': the audit trail (audit_events). */
export const AUDIT_ORDER_LOCK: InsertOrderLock = [1_635_083_264, 1];
/** manufacturing_alarms. */
export const ALARMS_ORDER_LOCK: InsertOrderLock = [1_635_083_264, 2];
/** manufacturing_dead_letters. */
export const DEAD_LETTERS_ORDER_LOCK: InsertOrderLock = [1_635_083_264, 3];

/** How long a listing waits for the inserts in flight before it gives up (55P03: a 503, as for a database away). */
export const LISTING_LOCK_TIMEOUT = '2s';

/**
 * The head of an `INSERT ... SELECT ... FROM ordered[, ...]` that holds `lock` shared: a materialised CTE, joined to
 * the rows, so the lock is taken before the first row is formed, hence before any id is drawn, and held to the commit.
 * `also`: more expressions evaluated once with it (a pg_notify, sent at the commit), in the same statement.
 */
export function sharedLockCte(lock: InsertOrderLock, also?: string): string {
  return `WITH ordered AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(${lock.join(', ')})${also ? `, ${also}` : ''}) `;
}

/**
 * Runs a listing's read. On a PostgreSQL server (`server`) it runs in a transaction that first takes `lock`
 * exclusively: it waits for the inserts in flight (LISTING_LOCK_TIMEOUT at most: then the read fails with SQLSTATE
 * 55P03, which orUnavailable makes a 503), so no row with an id below one it lists can become visible after it.
 * Embedded PGlite runs one statement at a time, so an insert is whole before a read begins: read as it is.
 */
export function readInInsertOrder<T>(
  dataSource: DataSource,
  server: boolean,
  lock: InsertOrderLock,
  read: (manager: EntityManager) => Promise<T>,
): Promise<T> {
  if (!server) return read(dataSource.manager);
  return dataSource.transaction(async (manager) => {
    await manager.query(`SET LOCAL lock_timeout = '${LISTING_LOCK_TIMEOUT}'`);
    await manager.query(`SELECT pg_advisory_xact_lock(${lock.join(', ')})`);
    return read(manager);
  });
}
