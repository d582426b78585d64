import { AppError } from '../common/errors/app-error';

/**
 * SQLSTATEs of a database that is away or busy, not of a bad statement: connection exceptions (08),
 * insufficient resources (53: too many connections, out of memory or disk), a statement cancelled
 * (57014: statement_timeout, or a cancel), the server shutting down or killing the session (57P01-57P05),
 * a lock not granted in time (55P03), a serialisation failure or deadlock (40001, 40P01), and a
 * database refusing connections (55000 at connect: ALLOW_CONNECTIONS false).
 */
const OUTAGE_STATES = /^(08|53|57014$|57P0|55P03$|40001$|40P01$)/;
/** What the `pg` driver and its pool say when the server is gone or does not answer in time. */
const OUTAGE_MESSAGES =
  /connection terminated|timeout exceeded when trying to connect|query read timeout|not queryable|not currently accepting connections|the database system is (starting up|shutting down|in recovery mode)/i;
const OUTAGE_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/**
 * Whether an error from a query means the database is unreachable, restarting, refusing connections
 * or too slow (worth a retry), rather than a statement it refused (a bug: a 500). TypeORM wraps a
 * failed query's driver error (QueryFailedError.driverError); a failed connect comes as it is.
 */
export function isStorageOutage(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 4; depth++) {
    const { code, driverError } = e as { code?: unknown; driverError?: unknown };
    if (typeof code === 'string' && (OUTAGE_STATES.test(code) || OUTAGE_ERRNOS.has(code))) return true;
    if (OUTAGE_MESSAGES.test(e.message)) return true;
    e = driverError ?? e.cause;
  }
  return false;
}

/**
 * Runs a database call; a database outage becomes a 503 STORAGE_UNAVAILABLE with Retry-After that says
 * what could not be done (never the driver's text, which names the database). Other errors pass as they are.
 */
export async function orUnavailable<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof AppError || !isStorageOutage(error)) throw error;
    throw new AppError('STORAGE_UNAVAILABLE', `the database is unavailable: ${what}; retry`, {
      retryAfterSeconds: 1,
      cause: error,
    });
  }
}
