import { Client } from 'pg';

/** What `pg` rejects a query with when `query_timeout` passes before the server answers. */
const READ_TIMEOUT = 'Query read timeout';

/**
 * The `pg` client of the DataSource's pool: a connection on which a query went unanswered for `query_timeout`
 * is closed, so that the pool opens a new one for the next statement.
 *
 * `pg` answers such a query with "Query read timeout" but keeps it as the connection's active query, and the
 * pool takes the connection back as healthy: every later statement on it queues behind one that a silent
 * server (a network partition, a failover that moved the address, a stalled proxy) never answers, and times
 * out in turn, until the operating system gives up on the socket some fifteen minutes later. A connection
 * the server answers late is closed too: whatever it sends next belongs to the abandoned statement.
 *
 * The client is marked not queryable (pg's own flag for a connection that failed, which the pool reads when
 * a client comes back) and its socket closed: the pool drops it when TypeORM hands it back.
 */
export class DroppingClient extends Client {
  override query(...args: unknown[]): never {
    const last = args.length - 1;
    const callback = args[last];
    if (typeof callback === 'function') {
      // The callback form (pg-pool's pool.query): told first, then the caller.
      args[last] = (error: unknown, ...rest: unknown[]) => {
        this.dropAfter(error);
        return (callback as (...a: unknown[]) => unknown)(error, ...rest);
      };
    }
    const result = (super.query as (...a: unknown[]) => unknown)(...args);
    // Registered before the caller's own reaction, so the socket is closed before the connection goes back.
    if (isPromise(result)) result.catch((error: unknown) => this.dropAfter(error));
    return result as never;
  }

  private dropAfter(error: unknown): void {
    if (!(error instanceof Error && error.message === READ_TIMEOUT)) return;
    const self = this as unknown as { _queryable: boolean; connection?: { stream?: { destroy(): void } } };
    // At once, not when the socket's close is reported: the pool reads this when the connection comes back
    // (pg-pool's _release), and drops it instead of handing it to the next caller.
    self._queryable = false;
    self.connection?.stream?.destroy();
  }
}

function isPromise(value: unknown): value is Promise<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}
