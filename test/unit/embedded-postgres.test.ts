import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PGlite, protocol } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { Client, Pool } from 'pg';
import {
  type EmbeddedPostgres,
  embeddedDurabilityWarning,
  privateDir,
  restartingError,
  startEmbeddedPostgres,
} from '../../src/database/embedded-postgres';
import { storageFaultOf } from '../../src/database/storage-unavailable';
import { until } from '../fixtures/until';
import { embeddedSession, type EmbeddedSession, refuseAfterPanic } from '../../src/database/embedded-postgres.worker';
import { smallDisk } from '../fixtures/small-disk';

const { serialize } = protocol;

describe('embedded PGlite durability', () => {
  it('warns production, and only production, that the embedded database does not flush to disk', () => {
    const warning = embeddedDurabilityWarning({ NODE_ENV: 'production', DATABASE_URL: undefined });
    assert.match(warning ?? '', /power cut/);
    assert.match(warning ?? '', /DATABASE_URL/);
    assert.equal(embeddedDurabilityWarning({ NODE_ENV: 'development', DATABASE_URL: undefined }), undefined);
    assert.equal(
      embeddedDurabilityWarning({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db.example/audit' }),
      undefined,
    );
  });

  it('rests on a fact of the bundled PGlite: it runs PostgreSQL with fsync off (revisit the warning when this fails)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pglite-fsync-'));
    const db = await PGlite.create(dir);
    try {
      const { rows } = await db.query<{ fsync: string }>('SHOW fsync');
      assert.equal(rows[0].fsync, 'off');
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('embedded PGlite directory permissions', () => {
  const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

  it('makes the database directories for this user alone', async () => {
    const root = await mkdtemp(join(tmpdir(), 'pglite-perms-'));
    try {
      privateDir(join(root, 'pglite', 'pgdata'));
      assert.equal(await modeOf(join(root, 'pglite')), 0o700);
      assert.equal(await modeOf(join(root, 'pglite', 'pgdata')), 0o700);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('closes an existing one to other users (PostgreSQL lets a group read, never write)', async () => {
    const root = await mkdtemp(join(tmpdir(), 'pglite-perms-'));
    try {
      const open = join(root, 'open');
      const grouped = join(root, 'grouped');
      await mkdir(open);
      await chmod(open, 0o777);
      await mkdir(grouped);
      await chmod(grouped, 0o750);
      privateDir(open);
      privateDir(grouped);
      assert.equal(await modeOf(open), 0o750);
      assert.equal(await modeOf(grouped), 0o750);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

/** An INSERT of `value` into t as one exchange, the way a module beside the database writes. */
function insertExchange(value: number): Uint8Array {
  return Buffer.concat([
    serialize.parse({ text: 'INSERT INTO t VALUES ($1)' }),
    serialize.bind({ values: [String(value)] }),
    serialize.execute({}),
    serialize.sync(),
  ]);
}

/** Settles within `ms`? */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.finally(() => (settled = true)).catch(() => undefined);
  await new Promise((later) => setTimeout(later, ms));
  return settled;
}

describe('a module beside embedded PGlite (EmbeddedSession) and the socket clients', () => {
  let dir: string;
  let db: PGlite;
  let session: EmbeddedSession;
  let server: PGLiteSocketServer;
  let client: Client;
  const values = async (): Promise<number[]> =>
    (await db.query<{ v: number }>('SELECT v FROM t ORDER BY v')).rows.map((r) => r.v);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pglite-session-'));
    db = await PGlite.create(join(dir, 'pgdata'));
    session = embeddedSession(db);
    server = new PGLiteSocketServer({ db, path: join(dir, '.s.PGSQL.5432'), maxConnections: 4 });
    await server.start();
    client = new Client({ host: dir, port: 5432, user: 'postgres', database: 'postgres' });
    await client.connect();
    await client.query('CREATE TABLE t (v int PRIMARY KEY)');
  });
  after(async () => {
    await client.end();
    await server.stop();
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers its own exchange with the DataRows, and a socket client its own queries, however they interleave', async () => {
    await client.query('TRUNCATE t');
    const own = Array.from({ length: 200 }, (_, i) => session.exchange(insertExchange(i)));
    const theirs = Array.from({ length: 200 }, (_, i) => client.query<{ n: number }>('SELECT $1::int AS n', [i]));
    await Promise.all(own);
    const answers = await Promise.all(theirs);
    answers.forEach((answer, i) => assert.deepEqual(answer.rows, [{ n: i }]));
    assert.equal((await values()).length, 200);
    const rows = await session.exchange(
      Buffer.concat([
        serialize.parse({ text: 'SELECT v, NULL::text FROM t WHERE v < $1 ORDER BY v' }),
        serialize.bind({ values: ['2'] }),
        serialize.execute({}),
        serialize.sync(),
      ]),
    );
    assert.deepEqual(rows, [
      ['0', null],
      ['1', null],
    ]);
  });

  it("never joins a socket client's transaction: it waits for the end, and a rollback leaves its row alone", async () => {
    await client.query('TRUNCATE t');
    await client.query('BEGIN');
    await client.query('INSERT INTO t VALUES (1)');
    const own = session.exchange(insertExchange(2));
    assert.equal(await settlesWithin(own, 50), false);
    await client.query('ROLLBACK');
    await own;
    assert.deepEqual(await values(), [2]);
  });

  it("waits for a socket client's unfinished exchange (a Bind whose Execute has not come) to reach its Sync", async () => {
    await client.query('TRUNCATE t');
    // What pglite-socket does with a client's messages as they arrive: one call per message.
    const socketMessage = (message: Uint8Array): Promise<void> =>
      db.runExclusive(() => db.execProtocolRawStream(message, { onRawData: () => undefined }));
    await socketMessage(serialize.parse({ text: 'INSERT INTO t VALUES ($1)' }));
    await socketMessage(serialize.bind({ values: ['1'] }));
    const own = session.exchange(insertExchange(2));
    assert.equal(await settlesWithin(own, 50), false);
    await socketMessage(serialize.execute({}));
    await socketMessage(serialize.sync());
    await own;
    assert.deepEqual(await values(), [1, 2]);
  });

  it('binds text parameters with bindText: nulls, empty and multi-byte values, a large one, as sent', async () => {
    const sent: Array<string | null> = [null, '', 'Zürich €', '{"k":"𝄞"}', 'x'.repeat(70_000)];
    await session.exchange(
      Buffer.concat([
        serialize.parse({ name: 'bind_text_check', text: 'CREATE TABLE bt (k int, v text)' }),
        serialize.bind({ statement: 'bind_text_check' }),
        serialize.execute({}),
        serialize.parse({ name: 'bind_text_insert', text: 'INSERT INTO bt VALUES ($1::int, $2)' }),
        ...sent.map((v, k) =>
          Buffer.concat([session.bindText('bind_text_insert', [String(k), v]), serialize.execute({})]),
        ),
        serialize.sync(),
      ]),
    );
    const rows = await session.exchange(
      Buffer.concat([
        serialize.parse({ text: 'SELECT v FROM bt ORDER BY k' }),
        session.bindText('', []),
        serialize.execute({}),
        serialize.sync(),
      ]),
    );
    assert.deepEqual(
      rows.map(([v]) => v),
      sent,
    );
  });

  it("rejects with the database's error, rolls its exchange back, and serves the next one", async () => {
    await client.query('TRUNCATE t');
    await session.exchange(insertExchange(1));
    await assert.rejects(session.exchange(insertExchange(1)), /duplicate key/);
    await session.exchange(insertExchange(3));
    assert.deepEqual(await values(), [1, 3]);
    assert.deepEqual((await client.query<{ n: number }>('SELECT 7 AS n')).rows, [{ n: 7 }]);
  });
});

describe('socket clients of the embedded database, side by side', () => {
  let dir: string;
  let embedded: EmbeddedPostgres;
  let pool: Pool;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pglite-side-by-side-'));
    // As the gateway runs it: the database thread's socket, and a pool as large as its connection limit.
    embedded = await startEmbeddedPostgres(join(dir, 'pglite'), 4);
    pool = new Pool({ host: embedded.host, port: embedded.port, user: 'postgres', database: 'postgres', max: 4 });
  });
  after(async () => {
    await pool.end();
    await embedded.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers each connection's parameterised statements with its own: one's Parse never lands between another's Parse and Bind", async () => {
    // pglite-socket queues each protocol message on its own, and PGlite has one session (one unnamed statement)
    // for every connection. A statement that reaches the database thread in more than one read (a large one, as
    // here; under load, one whose sender was descheduled halfway) let other connections' messages run between
    // its Parse and its Bind: the Bind failed ("bind message supplies 3 parameters, but prepared statement ""
    // requires 1", 08P01: an outage to the gateway), or, of the same shape, could run the other's statement.
    const big = (i: number) => `${i}:${'x'.repeat(1_000_000)}`;
    const shapes = [
      (i: number) => ({ text: 'SELECT $1::int AS a', values: [i], rows: [{ a: i }] }),
      (i: number) => ({
        text: 'SELECT $1::int AS a, $2::text AS b',
        values: [i, `b${i}`],
        rows: [{ a: i, b: `b${i}` }],
      }),
      (i: number) => ({
        text: 'SELECT $1::int AS a, length($2::text) AS n, $3::int AS c',
        values: [i, big(i), -i],
        rows: [{ a: i, n: big(i).length, c: -i }],
      }),
    ];
    const asked = Array.from({ length: 120 }, (_, i) => shapes[i % shapes.length](i));
    const settled = await Promise.allSettled(asked.map(({ text, values }) => pool.query(text, values)));
    const wrong = settled.flatMap((answer, i) =>
      answer.status === 'rejected'
        ? [`${i}: ${String(answer.reason)}`]
        : JSON.stringify(answer.value.rows) === JSON.stringify(asked[i].rows)
          ? []
          : [`${i}: ${JSON.stringify(answer.value.rows)}`],
    );
    assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of ${asked.length} statements answered wrongly`);
    assert.equal(pool.totalCount, 4, 'the statements ran on four connections side by side');
  });

  it('serves the other connections after one closes in the middle of its exchange (a Parse whose Sync never came)', async () => {
    const quitter = await pool.connect();
    quitter.on('error', () => undefined);
    const { stream } = (quitter as unknown as { connection: { stream: Socket } }).connection;
    stream.write(serialize.parse({ text: 'SELECT $1::int AS a' }));
    const other = pool.query<{ a: number; b: string }>('SELECT $1::int AS a, $2::text AS b', [5, 'x']);
    stream.destroy();
    quitter.release(true);
    assert.deepEqual((await other).rows, [{ a: 5, b: 'x' }]);
    assert.deepEqual((await pool.query<{ n: number }>('SELECT 1 AS n')).rows, [{ n: 1 }]);
  });
});

describe('embedded PGlite after a PANIC (refuseAfterPanic)', () => {
  it('tells once that PostgreSQL PANICked, and refuses every later call at once with 57P02 instead of hanging the thread', async (t) => {
    const disk = smallDisk('64m');
    if (!disk) {
      t.skip('needs to mount a tmpfs (root with CAP_SYS_ADMIN)');
      return;
    }
    let db: PGlite | undefined;
    try {
      db = await PGlite.create(join(disk.dir, 'pgdata'));
      let panics = 0;
      refuseAfterPanic(db, () => panics++);
      await db.exec('CREATE TABLE t (v int)');
      await db.query('INSERT INTO t VALUES (1)');
      assert.equal(panics, 0);
      disk.fill();
      // The next WAL segment cannot be made on the full disk: PostgreSQL PANICs at the first write.
      await db.query('SELECT pg_switch_wal()');
      await assert.rejects(db.query('INSERT INTO t VALUES (2)'), (e: { severity?: string; code?: string }) => {
        assert.equal(e.severity, 'PANIC');
        assert.equal(e.code, '53100');
        return true;
      });
      assert.equal(panics, 1);
      // Without the refusal this call never returns (PGlite loops forever on its broken backend).
      const later = db.query('SELECT 1');
      assert.equal(await settlesWithin(later, 2000), true, 'a call after the PANIC hung');
      await assert.rejects(later, (e: { code?: string; message?: string }) => {
        assert.equal(e.code, '57P02');
        assert.match(e.message ?? '', /stopped after a PANIC; it is being restarted/);
        return true;
      });
      assert.equal(panics, 1);
      // Its files are closed (the disk unmounts: nothing holds it), though the thread goes on.
      await new Promise((later) => setImmediate(later));
    } finally {
      disk.remove();
    }
  });
});

describe('the embedded database thread ending unasked', () => {
  it('is replaced by a new one on the same data directory: connections fail meanwhile as an outage, then answer with what was committed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pglite-restart-'));
    const embedded = await startEmbeddedPostgres(join(dir, 'pglite'), 4);
    const connect = async (): Promise<Client> => {
      const client = new Client({ host: embedded.host, port: embedded.port, user: 'postgres', database: 'postgres' });
      client.on('error', () => undefined); // its connection ends with the thread
      await client.connect();
      return client;
    };
    try {
      const before = await connect();
      await before.query('CREATE TABLE kept (v int)');
      await before.query('INSERT INTO kept VALUES (7)');
      embedded.attach(join(__dirname, '..', 'fixtures', 'embedded-exit.js'));
      await assert.rejects(
        (async () => {
          for (;;) await before.query('SELECT 1'); // until the thread is gone
        })(),
        (error: unknown) => storageFaultOf(error) === 'outage',
      );
      const rows = await until('the restarted database', async () => {
        const client = await connect().catch(() => undefined);
        if (!client) return undefined;
        try {
          return (await client.query<{ v: number }>('SELECT v FROM kept')).rows;
        } finally {
          await client.end().catch(() => undefined);
        }
      });
      assert.deepEqual(rows, [{ v: 7 }]);
      assert.equal(storageFaultOf(restartingError()), 'outage');
    } finally {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
