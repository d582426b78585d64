import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { LOCKED_INSERT_SQL } from '../../src/audit/audit-commit';
import { AuditAnchors } from '../../src/audit/audit-anchor.service';
import { describeBootFailure } from '../../src/boot-failure';
import { AppConfig } from '../../src/config/app-config';
import {
  deleteRows,
  forgedRows,
  insertRows,
  verifyCountsLegacyTrail,
  verifyNamesSubMillisecondMove,
  verifyNamesUnreadableTime,
  verifyNamesUnkeyedHead,
  withoutChecks,
} from '../fixtures/audit-tamper';
import { verifyAcrossRotation } from '../fixtures/audit-rotation';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { auditReadinessFor, firstRefusalOnFullDisk, smallDisk } from '../fixtures/small-disk';
import { createTestApp } from '../fixtures/test-app';
import { emptyDataDir } from '../fixtures/test-data-dir';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';
import { MIGRATIONS } from '../../migrations';

const DATABASE_URL = process.env.DATABASE_URL;
const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

const run = promisify(execFile);

/**
 * Stops this machine's PostgreSQL service (the one DATABASE_URL points at), keeps it down for a
 * while under traffic, and starts it again; asynchronously, so the gateway keeps serving meanwhile.
 */
async function restartPostgres(downMs: number): Promise<void> {
  const cluster = ['--skip-systemctl-redirect', readdirSync('/etc/postgresql')[0], 'main'];
  try {
    await run('pg_ctlcluster', [...cluster, 'stop', '-m', 'fast']);
    await new Promise((r) => setTimeout(r, downMs));
  } finally {
    // Whatever happened, leave the machine's service running.
    await run('pg_ctlcluster', [...cluster, 'start']);
  }
}

describe('audit trail on a PostgreSQL server', { skip: DATABASE_URL ? false : 'DATABASE_URL is not set' }, () => {
  let url: string;
  let scratch: ScratchDatabase;

  before(async () => {
    scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_it');
    url = scratch.url;
  });
  after(() => scratch?.drop());

  it('runs the migrations and two gateways share the table, each with its own intact chain', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor']));
    const a = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'gateway-a' });
    const b = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'gateway-b' });
    try {
      await Promise.all(
        [a, b].flatMap((app) =>
          Array.from({ length: 10 }, () =>
            request(app.getHttpServer())
              .post('/v2/models/fixture-linear/infer')
              .set('Authorization', token)
              .send(LINEAR)
              .expect(200),
          ),
        ),
      );
      const report = (await request(a.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200))
        .body;
      assert.equal(report.valid, true);
      // Each gateway writes through its lanes, each lane a chain named `<writer id>/<lane>`.
      const chains = report.chains as Array<{ writerId: string; rows: number }>;
      const rowsOf = (writer: string): number =>
        chains.filter((c) => c.writerId.startsWith(`${writer}/`)).reduce((sum, c) => sum + c.rows, 0);
      assert.equal(rowsOf('gateway-a'), 10);
      assert.equal(rowsOf('gateway-b'), 10);
      const tables: Array<{ name: string }> = await a
        .get(DataSource)
        .query(`SELECT name FROM schema_migrations ORDER BY id`);
      assert.deepEqual(
        tables.map((t) => t.name),
        MIGRATIONS.map((m) => m.name),
        'every migration ran once, in order',
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  // Lanes and gateways commit side by side: a row whose id was drawn first could become visible after rows drawn
  // later, and a listing that read in between paged past it for good (one page walk in 60 missed a row).
  it('a listing waits for an insert in flight: the row whose id was drawn first is on the page, not skipped', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor']));
    const app = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'gateway-order' });
    const lane = new Client({ connectionString: url });
    await lane.connect();
    try {
      const http = request(app.getHttpServer());
      // Another gateway's lane in the middle of its commit: its id drawn, not committed yet.
      await lane.query('BEGIN');
      await lane.query(LOCKED_INSERT_SQL, [JSON.stringify(forgedRows('gateway-other/0', 1, 1))]);
      const [{ held }] = (await lane.query<{ held: string }>('SELECT max(id)::text AS held FROM audit_events')).rows;
      // Rows drawn after it, committed by this gateway's lanes.
      for (let i = 0; i < 3; i++) {
        await http.post('/v2/models/fixture-linear/infer').set('Authorization', token).send(LINEAR).expect(200);
      }
      const listed = http.get('/v1/audit/events?limit=200').set('Authorization', token).expect(200);
      setTimeout(() => void lane.query('COMMIT'), 300);
      const ids = ((await listed).body.events as Array<{ id: string }>).map((e) => e.id);
      assert.ok(ids.includes(held), `row ${held} is on the page with the rows after it: ${ids.join(',')}`);
      // A commit that hangs holds a listing for 2 s at most (lock_timeout), then it is a 503; inserts go on meanwhile.
      await lane.query('BEGIN');
      await lane.query(LOCKED_INSERT_SQL, [
        JSON.stringify(forgedRows('gateway-other/0', 2, 1, forgedRows('gateway-other/0', 1, 1)[0].hash)),
      ]);
      const refused = await http.get('/v1/audit/events?limit=1').set('Authorization', token).expect(503);
      assert.equal(refused.body.code, 'STORAGE_UNAVAILABLE');
      await http.post('/v2/models/fixture-linear/infer').set('Authorization', token).send(LINEAR).expect(200);
      await lane.query('COMMIT');
      await http.get('/v1/audit/events?limit=1').set('Authorization', token).expect(200);
    } finally {
      await lane.end();
      await app.close();
    }
  });

  it('verify names a row whose occurred_at was moved by less than a millisecond, which its hash cannot see', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'sub-ms-test' }));
    const app = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'sub-ms' });
    try {
      const http = request(app.getHttpServer());
      for (let i = 0; i < 3; i++) {
        await http.post('/v2/models/fixture-linear/infer').set('Authorization', token).send(LINEAR).expect(200);
      }
      const db = app.get(DataSource);
      const [victim] = await db.query<Array<{ id: string; seq: number }>>(
        `SELECT id::text AS id, seq::int AS seq FROM audit_events WHERE writer_id LIKE 'sub-ms/%' ORDER BY seq LIMIT 1 OFFSET 1`,
      );
      await verifyNamesSubMillisecondMove(http, db, token, victim);
      // PostgreSQL's own infinity and far years, as the embedded database's.
      const [timed] = await db.query<Array<{ id: string; seq: number; requestId: string }>>(
        `SELECT id::text AS id, seq::int AS seq, request_id AS "requestId" FROM audit_events
         WHERE writer_id LIKE 'sub-ms/%' ORDER BY seq LIMIT 1 OFFSET 1`,
      );
      await verifyNamesUnreadableTime(http, db, token, timed);
    } finally {
      await app.close();
    }
  });

  it('the table refuses rows below seq 1 and hashes not in lowercase hex; rows put in past the checks are named by verify', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'by-hand-test' }));
    const app = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'by-hand' });
    try {
      const http = request(app.getHttpServer());
      await http.post('/v2/models/fixture-linear/infer').set('Authorization', token).send(LINEAR).expect(200);
      const db = app.get(DataSource);
      const [row] = forgedRows('by-hand-ghost/0', -7, 1);
      await assert.rejects(insertRows(db, [row]), /audit_events_seq_from_1/);
      await assert.rejects(insertRows(db, [{ ...row, seq: 1, hash: 'f'.repeat(63) }]), /audit_events_hashes_lower_hex/);
      await withoutChecks(db, async () => {
        await insertRows(db, [...forgedRows('by-hand-ghost/0', -7, 2), ...forgedRows('by-hand/0', 0, 1)]);
        try {
          const report = (await http.get('/v1/audit/verify').set('Authorization', token).expect(200)).body;
          assert.equal(report.valid, false);
          // Each chain names its own first break, whichever the database's collation sorts first.
          const breaks = (report.chains as Array<{ firstBroken: { writerId: string; seq: number; reason: string } }>)
            .filter((c) => c.firstBroken !== null)
            .map((c) => [c.firstBroken.writerId, c.firstBroken.seq, c.firstBroken.reason])
            .sort();
          assert.deepEqual(breaks, [
            ['by-hand-ghost/0', -7, 'expected seq 1: rows are missing or reordered'],
            ['by-hand/0', 0, 'expected seq 1: rows are missing or reordered'],
          ]);
        } finally {
          await deleteRows(db, `actor = 'forger'`);
        }
      });
      const report = (await http.get('/v1/audit/verify').set('Authorization', token).expect(200)).body;
      assert.equal(report.valid, true, JSON.stringify(report.firstBroken));
    } finally {
      await app.close();
    }
  });

  it('keyed row hashes: a trail written before them verifies and is counted unkeyed; an unkeyed row appended at the head of a live chain is named', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'keyed-test' }));
    const app = await createTestApp({
      DATABASE_URL: url,
      AUDIT_WRITER_ID: 'keyed',
      AUDIT_LANES: '1',
      AUDIT_ANCHOR_INTERVAL_MS: '3600000',
    });
    try {
      const http = request(app.getHttpServer());
      await verifyCountsLegacyTrail(app, http, token, 'keyed');
      await verifyNamesUnkeyedHead(app, http, token, 'keyed/0');
    } finally {
      // The forged row must not break the verifies of the tests after this one, on the same database.
      await deleteRows(app.get(DataSource), `writer_id IN ('keyed/0', 'keyed-legacy/0')`);
      await app.close();
    }
  });

  it('AUDIT_HMAC_SECRET rotated under a chain that goes on: it verifies with the old secret retired, a row forged under the old one after the new is named, and without it the first old row is', async () => {
    try {
      await verifyAcrossRotation(createTestApp, { DATABASE_URL: url, DATA_DIR: emptyDataDir() }, 'rotating');
    } finally {
      // Its rows under the new secret, and the forged one, must not break the verifies of the tests after this one.
      const admin = new Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query('BEGIN');
        await admin.query('SET LOCAL session_replication_role = replica'); // past the append-only trigger
        await admin.query(`DELETE FROM audit_events WHERE writer_id = 'rotating/0'`);
        await admin.query('COMMIT');
      } finally {
        await admin.end();
      }
    }
  });

  it('a second gateway given the same AUDIT_WRITER_ID refuses to boot, in one line naming the id and the fix; the first serves on', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'twin-test' }));
    const env = { DATABASE_URL: url, AUDIT_WRITER_ID: 'pod-twin' };
    const first = await createTestApp(env);
    try {
      await request(first.getHttpServer())
        .post('/v2/models/fixture-linear/infer')
        .set('Authorization', token)
        .send(LINEAR)
        .expect(200);
      const refused = await createTestApp(env).then(
        async (second) => {
          await second.close();
          return undefined;
        },
        (error: unknown) => error,
      );
      assert.ok(refused, 'a second gateway with the same writer id booted');
      assert.deepEqual(describeBootFailure(refused), {
        error:
          'audit writer id "pod-twin" is in use by another running gateway on this database (both would append ' +
          'to its hash chains): give each gateway its own AUDIT_WRITER_ID, or leave it unset (host:pid:start time)',
      });
      for (let i = 0; i < 5; i++) {
        await request(first.getHttpServer())
          .post('/v2/models/fixture-linear/infer')
          .set('Authorization', token)
          .send(LINEAR)
          .expect(200);
      }
      const report = (
        await request(first.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200)
      ).body;
      assert.equal(report.valid, true, JSON.stringify(report.firstBroken));
    } finally {
      await first.close();
    }
    // Stopped, the first hands the id over (a pod restarted under its name).
    const next = await createTestApp(env);
    try {
      await request(next.getHttpServer())
        .post('/v2/models/fixture-linear/infer')
        .set('Authorization', token)
        .send(LINEAR)
        .expect(200);
      const report = (
        await request(next.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200)
      ).body;
      assert.equal(report.valid, true, JSON.stringify(report.firstBroken));
    } finally {
      await next.close();
    }
  });

  it('a claim whose connection dropped is taken again before the next commit, and commits are refused while another gateway took the id meanwhile', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'claim-drop-test' }));
    const env = { DATABASE_URL: url, AUDIT_WRITER_ID: 'pod-dropped', AUDIT_LANES: '1' };
    const score = (app: NestFastifyApplication) =>
      request(app.getHttpServer()).post('/v2/models/fixture-linear/infer').set('Authorization', token).send(LINEAR);
    const a = await createTestApp(env);
    let b: NestFastifyApplication | undefined;
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      await score(a).expect(200);
      // The claim's session ends (a failover, an administrator, a network cut): the advisory lock goes with it.
      const { rows } = await admin.query<{ ended: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'inference-gateway-audit-claim'`,
      );
      assert.deepEqual(
        rows.map((r) => r.ended),
        [true],
        'one claim session',
      );
      // Meanwhile a second gateway with the id boots and writes: the first refuses to append to its chain.
      b = await createTestApp(env);
      await score(b).expect(200);
      const refused = await score(a).expect(503);
      assert.match(JSON.stringify(refused.body), /audit writer id in use by another running gateway/);
      await score(b).expect(200);
      await b.close();
      b = undefined;
      // Free again, the first takes the id back and carries on from the other's rows.
      await score(a).expect(200);
      await score(a).expect(200);
      const report = (await request(a.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200))
        .body;
      assert.equal(report.valid, true, JSON.stringify(report.firstBroken));
      const chain = (report.chains as Array<{ writerId: string; rows: number }>).find(
        (c) => c.writerId === 'pod-dropped/0',
      );
      assert.equal(chain?.rows, 5, 'a: 1, b: 2, a again: 2');
    } finally {
      await admin.end();
      await b?.close();
      await a.close();
    }
  });

  it('keeps its claim where the server ends sessions idle in a transaction (idle_in_transaction_session_timeout)', async () => {
    // The claim is an open transaction's lock: a DBA's timeout against forgotten transactions ended its session every
    // so often, and the claim lapsed until the next commit.
    const admin = new Client({ connectionString: url });
    await admin.connect();
    const database = (await admin.query<{ name: string }>('SELECT current_database() AS name')).rows[0].name;
    await admin.query(`ALTER DATABASE "${database}" SET idle_in_transaction_session_timeout = '300ms'`);
    let a: NestFastifyApplication | undefined;
    try {
      a = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'pod-idle-timeout' });
      const claims = async () =>
        (
          await admin.query<{ pid: number; state: string }>(
            `SELECT pid, state FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'inference-gateway-audit-claim'`,
          )
        ).rows;
      const first = await claims();
      assert.equal(first.length, 1, 'one claim session');
      assert.equal(first[0].state, 'idle in transaction');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.deepEqual(await claims(), first, 'the same claim session, still open, after five timeouts');
    } finally {
      await admin.query(`ALTER DATABASE "${database}" RESET idle_in_transaction_session_timeout`);
      await admin.end();
      await a?.close();
    }
  });

  it('each gateway holds the shared table to its own anchors: rows cut off a chain are named by its gateway, after a restart too', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'anchor-test' }));
    const quiet = { DATABASE_URL: url, AUDIT_ANCHOR_INTERVAL_MS: '3600000' };
    let a = await createTestApp({ ...quiet, AUDIT_WRITER_ID: 'anchored-a' });
    const b = await createTestApp({ ...quiet, AUDIT_WRITER_ID: 'anchored-b' });
    const dataDirA = a.get(AppConfig).DATA_DIR;
    try {
      for (const app of [a, b]) {
        for (let i = 0; i < 5; i++) {
          await request(app.getHttpServer())
            .post('/v2/models/fixture-linear/infer')
            .set('Authorization', token)
            .send(LINEAR)
            .expect(200);
        }
        await app.get(AuditAnchors).anchor();
      }
      const db = a.get(DataSource);
      await db.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      await db.query(`DELETE FROM audit_events WHERE writer_id = 'anchored-a/0' AND seq > 3`);
      await db.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');

      // Gateway b holds no anchor of a's chains: the shorter chain verifies for it.
      const byB = (await request(b.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200))
        .body;
      assert.equal(byB.valid, true, JSON.stringify(byB.anchorBreaks));
      assert.equal(byB.anchorsChecked, 1);

      // Gateway a, restarted on its DATA_DIR under a new writer id, still has its anchor file.
      await a.close();
      a = await createTestApp({ ...quiet, DATA_DIR: dataDirA });
      const byA = (await request(a.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200))
        .body;
      assert.equal(byA.valid, false);
      assert.equal(byA.firstBroken, null);
      assert.equal(byA.anchorsChecked, 1);
      assert.equal(byA.anchorBreaks.length, 1);
      assert.deepEqual([byA.anchorBreaks[0].writerId, byA.anchorBreaks[0].seq], ['anchored-a/0', 5]);
      assert.match(byA.anchorBreaks[0].reason, /^rows after seq 3 cut off: the chain was anchored at seq 5 on /);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('two gateways on one DATA_DIR anchor in files of their own, and a restarted one takes its file back', async () => {
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'shared-data-dir' }));
    const dataDir = emptyDataDir();
    const env = { DATABASE_URL: url, DATA_DIR: dataDir, AUDIT_ANCHOR_INTERVAL_MS: '3600000' };
    let a = await createTestApp({ ...env, AUDIT_WRITER_ID: 'shared-a' });
    const b = await createTestApp({ ...env, AUDIT_WRITER_ID: 'shared-b' });
    const writersIn = (name: string): string[] => [
      ...new Set(
        readFileSync(join(dataDir, name), 'utf8')
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { chain: string }).chain.split('/')[0]),
      ),
    ];
    try {
      for (const app of [a, b]) {
        await request(app.getHttpServer())
          .post('/v2/models/fixture-linear/infer')
          .set('Authorization', token)
          .send(LINEAR)
          .expect(200);
        await app.get(AuditAnchors).anchor();
      }
      assert.deepEqual(writersIn('audit-anchors.jsonl'), ['shared-a']);
      assert.deepEqual(writersIn('audit-anchors.2.jsonl'), ['shared-b']);
      // Cut a's chain: a gateway restarted on the DATA_DIR (b still running) holds it to a's anchor.
      const db = b.get(DataSource);
      await a.close();
      await db.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      await db.query(`DELETE FROM audit_events WHERE writer_id LIKE 'shared-a/%'`);
      await db.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
      a = await createTestApp({ ...env, AUDIT_WRITER_ID: 'shared-a2' });
      const byA = (await request(a.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200))
        .body;
      assert.equal(byA.valid, false);
      assert.deepEqual(
        byA.anchorBreaks.map((x: { writerId: string; reason: string }) => [
          x.writerId.split('/')[0],
          x.reason.split(':')[0],
        ]),
        [['shared-a', 'every row cut off']],
      );
      const byB = (await request(b.getHttpServer()).get('/v1/audit/verify').set('Authorization', token).expect(200))
        .body;
      assert.deepEqual(byB.anchorBreaks, []);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a database restart in the middle of traffic: every answered request has its row, none twice', async (t) => {
    const app: NestFastifyApplication = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'gateway-restart' });
    const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'restart-test' }));
    const http = request(app.getHttpServer());
    const answered: Array<{ status: number; id: string }> = [];
    let stop = false;
    const client = async (): Promise<void> => {
      while (!stop) {
        const res = await http.post('/v2/models/fixture-linear/infer').set('Authorization', token).send(LINEAR);
        answered.push({ status: res.status, id: res.headers['x-request-id'] });
      }
    };
    try {
      const clients = Array.from({ length: 8 }, client);
      while (answered.filter((r) => r.status === 200).length < 50) await new Promise((r) => setTimeout(r, 20));
      await restartPostgres(1500);
      const okBefore = answered.filter((r) => r.status === 200).length;
      // Traffic resumes by itself once the server is back.
      const deadline = Date.now() + 30_000;
      while (answered.filter((r) => r.status === 200).length < okBefore + 50 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      stop = true;
      await Promise.all(clients);

      t.diagnostic(
        `${answered.length} answers: ${answered.filter((r) => r.status === 200).length} x 200, ` +
          `${answered.filter((r) => r.status === 503).length} x 503 while the database restarted`,
      );
      const statuses = new Set(answered.map((r) => r.status));
      assert.ok(
        [...statuses].every((s) => s === 200 || s === 503),
        `unexpected statuses ${[...statuses].join(',')}`,
      );
      const ok = answered.filter((r) => r.status === 200).map((r) => r.id);
      assert.ok(ok.length >= okBefore + 50, `only ${ok.length - okBefore} answers after the restart`);

      const rows: Array<{ request_id: string; n: string }> = await app
        .get(DataSource)
        .query(
          `SELECT request_id, count(*) AS n FROM audit_events WHERE writer_id LIKE 'gateway-restart/%' GROUP BY request_id`,
        );
      const counts = new Map(rows.map((r) => [r.request_id, Number(r.n)]));
      const missing = ok.filter((id) => counts.get(id) !== 1);
      assert.deepEqual(missing, [], 'answered 200 without exactly one audit row');
      assert.ok(
        [...counts.values()].every((n) => n === 1),
        'a request id recorded twice',
      );

      const report = (await http.get('/v1/audit/verify').set('Authorization', token).expect(200)).body;
      assert.equal(report.valid, true, JSON.stringify(report.firstBroken));
    } finally {
      stop = true;
      await app.close();
    }
  });
  it('a full disk under the audit table (a tablespace on a small tmpfs): 503 "audit database out of disk space", then service resumes', async (t) => {
    // The server's own user must own the tablespace: this machine's PostgreSQL, run as `postgres`.
    let postgresUid: number;
    try {
      postgresUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    } catch {
      t.skip('no postgres user on this machine');
      return;
    }
    const disk = smallDisk('4m', postgresUid);
    if (!disk) {
      t.skip('needs to mount a tmpfs (root with CAP_SYS_ADMIN)');
      return;
    }
    const tablespace = `gateway_full_${process.pid}`;
    const app = await createTestApp({ DATABASE_URL: url, AUDIT_WRITER_ID: 'gateway-disk-full' });
    const db = app.get(DataSource);
    try {
      try {
        await db.query(`CREATE TABLESPACE ${tablespace} LOCATION '${disk.dir}'`);
      } catch (error) {
        t.skip(`the server cannot make a tablespace there (not on this machine?): ${String(error)}`);
        return;
      }
      await db.query(`ALTER TABLE audit_events SET TABLESPACE ${tablespace}`);
      const http = request(app.getHttpServer());
      const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'disk-full-test' }));
      const score = () => http.post('/v2/models/fixture-linear/infer').set('Authorization', token).send(LINEAR);
      await score().expect(200);
      const { refused, free } = await firstRefusalOnFullDisk(disk, score);
      assert.ok(refused, 'no commit failed on a full disk');
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.equal(refused.headers['retry-after'], '1');
      // The OIP error shape: the problem's detail.
      assert.deepEqual(refused.body, {
        error:
          'the audit trail cannot be written (audit database out of disk space); no answer leaves without its audit row: send the request again',
      });
      const ready = await http.get('/health/ready').set('Authorization', token).expect(503);
      assert.deepEqual(ready.body.checks.audit, { ready: false, detail: 'audit database out of disk space' });

      const whileFull = await auditReadinessFor(app, 3000);
      assert.deepEqual(
        whileFull.filter((check) => check.ready),
        [],
        'readiness turned ready while the tablespace was still full',
      );

      free();
      // No client traffic: readiness recovers through the probe alone.
      await until('readiness once space is freed', async () =>
        (await http.get('/health/ready')).status === 200 ? true : undefined,
      );
      await score().expect(200);
      // The probe wrote nothing that stays: the chain is whole.
      const report = (await http.get('/v1/audit/verify').set('Authorization', token).expect(200)).body;
      assert.equal(report.valid, true, JSON.stringify(report.firstBroken));
    } finally {
      await app.close();
      const admin = new Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query('ALTER TABLE audit_events SET TABLESPACE pg_default');
        await admin.query(`DROP TABLESPACE IF EXISTS ${tablespace}`);
      } finally {
        await admin.end();
      }
      disk.remove();
    }
  });
});
