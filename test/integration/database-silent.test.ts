import assert from 'node:assert/strict';
import { AddressInfo, createConnection, createServer, Server, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source.options';
import { storageFaultOf } from '../../src/database/storage-unavailable';

const DATABASE_URL = process.env.DATABASE_URL;
/** The gateway's is 10 s; the same mechanism, quicker. */
const QUERY_TIMEOUT_MS = 400;

/**
 * A TCP proxy in front of the PostgreSQL server whose open connections can be made silent: bytes still
 * accepted, none forwarded either way, the sockets left open (a network partition, a failover that moved
 * the server's address, a stalled load balancer). Connections opened afterwards are forwarded as usual.
 */
class SilencingProxy {
  private readonly server: Server;
  private readonly silenced = new WeakSet<Socket>();
  private readonly sockets = new Set<Socket>();
  connections = 0;

  constructor(target: URL) {
    this.server = createServer((client) => {
      this.connections++;
      const upstream = createConnection({ host: target.hostname, port: Number(target.port || 5432) });
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.sockets.add(from);
        from.on('data', (chunk) => {
          if (!this.silenced.has(from)) to.write(chunk);
        });
        from.on('error', () => undefined);
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
      }
    });
  }

  listen(): Promise<number> {
    return new Promise((ok) =>
      this.server.listen(0, '127.0.0.1', () => ok((this.server.address() as AddressInfo).port)),
    );
  }

  /** Every connection open now stops carrying anything, both ways. */
  silence(): void {
    for (const socket of this.sockets) this.silenced.add(socket);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((ok) => this.server.close(ok));
  }
}

describe(
  'a database connection that goes silent (PostgreSQL server behind a proxy)',
  {
    skip: DATABASE_URL ? false : 'DATABASE_URL is not set',
  },
  () => {
    let proxy: SilencingProxy;
    let dataSource: DataSource;

    before(async () => {
      const target = new URL(DATABASE_URL!);
      proxy = new SilencingProxy(target);
      const port = await proxy.listen();
      const viaProxy = new URL(target);
      viaProxy.hostname = '127.0.0.1';
      viaProxy.port = String(port);
      // The gateway's own options, one connection in the pool, a shorter query timeout.
      const options = dataSourceOptions({ url: viaProxy.toString() }, 1);
      dataSource = new DataSource({
        ...options,
        extra: { ...(options.extra as object), query_timeout: QUERY_TIMEOUT_MS },
      });
      await dataSource.initialize();
    });
    after(async () => {
      await dataSource?.destroy().catch(() => undefined);
      await proxy?.close();
    });

    it('times the unanswered statement out, then serves the next one on a new connection', async () => {
      assert.deepEqual(await dataSource.query('SELECT 1 AS one'), [{ one: 1 }]);
      const before = proxy.connections;

      proxy.silence();
      const failure = await dataSource.query('SELECT 2 AS two').then(
        () => assert.fail('a silent connection answered'),
        (error: unknown) => error,
      );
      assert.equal(storageFaultOf(failure), 'outage', String(failure));

      // Before: the pool kept the silent connection, and this statement queued behind the unanswered one
      // and timed out in turn, as did every later one.
      assert.deepEqual(await dataSource.query('SELECT 3 AS three'), [{ three: 3 }]);
      assert.equal(proxy.connections, before + 1, 'one new connection, in place of the silent one');
      assert.deepEqual(await dataSource.query('SELECT 4 AS four'), [{ four: 4 }]);
    });

    it('drops a silent connection a transaction holds, and the next transaction commits', async () => {
      proxy.silence();
      const failure = await dataSource
        .transaction(async (manager) => {
          await manager.query('SELECT 1');
        })
        .then(
          () => assert.fail('a silent connection answered'),
          (error: unknown) => error,
        );
      assert.equal(storageFaultOf(failure), 'outage', String(failure));
      const rows: unknown = await dataSource.transaction((manager) => manager.query('SELECT 5 AS five'));
      assert.deepEqual(rows, [{ five: 5 }]);
    });
  },
);
