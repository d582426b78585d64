import { AppError } from '../common/errors/app-error';

/**
 * Why the database cannot serve a statement for now: out of disk space, out of memory, at its
 * connection limit, read-only (a standby), or away, busy or restarting (an outage). Each is worth a
 * retry; all but the last are the operator's to fix on the database's side, and a caller or
 * /health/ready is told which.
 */
export type StorageFault = 'disk-full' | 'out-of-memory' | 'connection-limit' | 'read-only' | 'outage';

/** A fault in words for an answer or /health/ready ("the database is ..."): no path, no SQL, no server name. */
export const STORAGE_FAULT_WORDS: Record<StorageFault, string> = {
  'disk-full': 'out of disk space',
  'out-of-memory': 'out of memory',
  'connection-limit': 'at its connection limit',
  'read-only': 'read-only (a standby, or a primary demoted by a failover)',
  outage: 'unavailable',
};

/**
 * SQLSTATEs of a database that is away or busy, not of a bad statement: connection exceptions (08),
 * insufficient resources (53: the three named ones above, and any other), a statement cancelled
 * (57014: statement_timeout, or a cancel), the server shutting down or killing the session (57P01-57P05),
 * a lock not granted in time (55P03), a serialisation failure or deadlock (40001, 40P01), and a
 * database refusing connections (55000 at connect: ALLOW_CONNECTIONS false).
 */
const FAULT_STATES: Array<[RegExp, StorageFault]> = [
  [/^53100$/, 'disk-full'],
  [/^53200$/, 'out-of-memory'],
  [/^53300$/, 'connection-limit'],
  // read_only_sql_transaction: the connection reached a hot standby, or a primary a failover demoted.
  [/^25006$/, 'read-only'],
  [/^(08|53|57014$|57P0|55P03$|40001$|40P01$)/, 'outage'],
];
/**
 * What comes without a SQLSTATE: the file system's own errors (a quota is a full disk to the writer), and
 * what the `pg` driver and its pool say when the server is gone or does not answer in time (ECONNREFUSED also
 * for a Unix socket left with no listener, and ENOENT at connect for one removed: see storageFaultOf).
 */
const FAULT_ERRNOS = new Map<string, StorageFault>([
  ['ENOSPC', 'disk-full'],
  ['EDQUOT', 'disk-full'],
  ...['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].map(
    (code) => [code, 'outage'] as [string, StorageFault],
  ),
]);
const FAULT_MESSAGES: Array<[RegExp, StorageFault]> = [
  [/no space left on device|disk quota exceeded/i, 'disk-full'],
  [
    /connection terminated|timeout exceeded when trying to connect|query read timeout|not queryable|not currently accepting connections|the database system is (starting up|shutting down|in recovery mode)/i,
    'outage',
  ],
];

/**
 * Why an error from a query means the database cannot serve for now (worth a retry), or undefined for a
 * statement it refused (a bug: a 500). TypeORM wraps a failed query's driver error
 * (QueryFailedError.driverError); a failed connect comes as it is; `pg` and PGlite give the SQLSTATE as `code`.
 */
export function storageFaultOf(error: unknown): StorageFault | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 4; depth++) {
    const { code, driverError } = e as { code?: unknown; driverError?: unknown };
    if (typeof code === 'string') {
      const fault =
        FAULT_STATES.find(([state]) => state.test(code))?.[1] ??
        FAULT_ERRNOS.get(code) ??
        // The embedded database's socket is gone while its thread restarts; any other missing file is not an outage.
        (code === 'ENOENT' && (e as NodeJS.ErrnoException).syscall === 'connect' ? 'outage' : undefined);
      if (fault) return fault;
    }
    const { message } = e;
    const fault = FAULT_MESSAGES.find(([words]) => words.test(message))?.[1];
    if (fault) return fault;
    e = driverError ?? e.cause;
  }
  return undefined;
}

/**
 * The first `code` along an error's causes (TypeORM's driverError, then `cause`): the database's SQLSTATE,
 * or the system's errno.
 */
export function errorCodeOf(error: unknown): string | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 4; depth++) {
    const { code, driverError } = e as { code?: unknown; driverError?: unknown };
    if (typeof code === 'string') return code;
    e = driverError ?? e.cause;
  }
  return undefined;
}

/**
 * Whether an error from a query means the database is unreachable, restarting, refusing connections,
 * out of resources or too slow (worth a retry), rather than a statement it refused (a bug: a 500).
 */
export function isStorageOutage(error: unknown): boolean {
  return storageFaultOf(error) !== undefined;
}

/**
 * The 503 STORAGE_UNAVAILABLE with Retry-After for a database fault, in the words every domain answers
 * with: "the database is <fault>: <what was not done>" (never the driver's text). `what` ends as the
 * caller needs: "; retry" where nothing was kept (orUnavailable), or what was kept instead.
 */
export function storageUnavailable(fault: StorageFault, what: string, cause: unknown): AppError {
  return new AppError('STORAGE_UNAVAILABLE', `the database is ${STORAGE_FAULT_WORDS[fault]}: ${what}`, {
    retryAfterSeconds: 1,
    cause,
  });
}

/**
 * Runs a database call; a database outage becomes a 503 STORAGE_UNAVAILABLE with Retry-After that says
 * what could not be done and why in words (never the driver's text, which names the database or a file).
 * Other errors pass as they are.
 */
export async function orUnavailable<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const fault = error instanceof AppError ? undefined : storageFaultOf(error);
    if (!fault) throw error;
    throw storageUnavailable(fault, `${what}; retry`, error);
  }
}
