import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source.options';
import { storageFaultOf } from '../../src/database/storage-unavailable';
import { DatabaseProxy } from '../fixtures/database-proxy';

const DATABASE_URL = process.env.DATABASE_URL;
/** The gateway's is 10 s; the same mechanism, quicker. */
const QUERY_TIMEOUT_MS = 400;

describe(
  'a database connection that goes silent (PostgreSQL server behind a proxy)',
  {
    skip: DATABASE_URL ? false : 'DATABASE_URL is not set',
  },
  () => {
    let proxy: DatabaseProxy;
    let dataSource: DataSource;

    before(async () => {
      const target = new URL(DATABASE_URL!);
      proxy = new DatabaseProxy(target);
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
