import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import * as dicomParser from 'dicom-parser';
import { Client } from 'pg';
import request from 'supertest';
import { describeBootFailure } from '../../src/boot-failure';
import { alarmStream } from '../fixtures/alarm-stream';
import { DICOM_SKIP, dicomFile, multipartRelated } from '../fixtures/dicom-files';
import { tx } from '../fixtures/finance-data';
import { bundledModelsDir } from '../fixtures/paths';
import { type PgBouncer, PGBOUNCER_SKIP, type PoolMode, startPgBouncer } from '../fixtures/pgbouncer';
import { ai4iReadings, DATASETS_SKIP, millAsset } from '../fixtures/plant-data';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;
const SKIP = DATABASE_URL ? PGBOUNCER_SKIP : 'DATABASE_URL is not set';
const T0 = Date.parse('2026-11-23T00:00:00Z');

const admin = bearer(tokenFor(['ml-admin', 'auditor']));
const engine = bearer(tokenFor(['risk-engine'], { sub: 'risk-engine-1' }));
const scada = bearer(tokenFor(['scada']));
const operator = bearer(tokenFor(['plant-operator']));

/**
 * The gateways of one test: each through PgBouncer in `mode` (a process of the test's own in front of DATABASE_URL's
 * server), on a scratch database of their own, with the bundled finance, manufacturing and medical models.
 */
interface Gateway {
  app: NestFastifyApplication;
  port: number;
}

function behindPgBouncer(mode: PoolMode) {
  const setup = {
    scratch: undefined as ScratchDatabase | undefined,
    bouncer: undefined as PgBouncer | undefined,
    modelsDir: '',
    /** The scratch database through PgBouncer (DATABASE_URL for the gateways). */
    url: '',
    /** The scratch database directly: what the tests read behind the gateways' backs. */
    watch: undefined as Client | undefined,
    apps: [] as NestFastifyApplication[],
    pair: undefined as Promise<Gateway[]> | undefined,
  };
  before(async () => {
    setup.scratch = await createScratchDatabase(DATABASE_URL!, `gateway_pgbouncer_${mode}`);
    setup.bouncer = await startPgBouncer(DATABASE_URL!, mode);
    setup.url = setup.bouncer.urlOf(setup.scratch.url);
    setup.modelsDir = bundledModelsDir(['finance', 'manufacturing', 'medical']);
    setup.watch = new Client({ connectionString: setup.scratch.url });
    await setup.watch.connect();
  });
  after(async () => {
    for (const app of setup.apps) await app.close();
    await setup.watch?.end();
    await setup.bouncer?.stop();
    if (setup.modelsDir) rmSync(setup.modelsDir, { recursive: true, force: true });
    await setup.scratch?.drop();
  });
  /** A gateway through PgBouncer, listening on a port of its own, closed after the tests. */
  const gateway = async (writerId: string, env: Record<string, string> = {}) => {
    const app = await createTestApp({
      DATABASE_URL: setup.url,
      MODELS_DIR: setup.modelsDir,
      AUDIT_WRITER_ID: writerId,
      ...env,
    });
    setup.apps.push(app);
    await app.listen(0, '127.0.0.1');
    return { app, port: (app.getHttpServer().address() as AddressInfo).port };
  };
  /** Gateways A and B (writer ids gateway-a and gateway-b), started one after the other at the first call. */
  const pair = (): Promise<Gateway[]> =>
    (setup.pair ??= (async () => [await gateway('gateway-a'), await gateway('gateway-b')])());
  return { setup, gateway, pair };
}

/** `/health/ready`'s alarm-notifications detail (`notifications`, and why and what instead when not delivered). */
async function alarmNotifications(app: NestFastifyApplication): Promise<Record<string, unknown> | undefined> {
  const res = await request(app.getHttpServer()).get('/health/ready').set('Authorization', admin);
  return (res.body as { checks: Record<string, { detail?: Record<string, unknown> }> }).checks['alarm-notifications']
    ?.detail;
}

let t = T0;
/** Readings that raise the asset's alarm (failure predicted), through `app`. */
async function raiseAlarm(app: NestFastifyApplication, assetId: string): Promise<void> {
  await request(app.getHttpServer())
    .post(`/v1/manufacturing/assets/${assetId}/readings`)
    .set('Authorization', scada)
    .send({
      readings: ai4iReadings(true, 40).map((values) => ({ timestamp: new Date((t += 1000)).toISOString(), values })),
    })
    .expect(200);
}

async function newestAlarmId(app: NestFastifyApplication): Promise<string> {
  const res = await request(app.getHttpServer()).get('/v1/manufacturing/alarms').set('Authorization', operator);
  assert.equal(res.status, 200);
  const alarms = (res.body as { alarms: Array<{ id: string }> }).alarms;
  assert.ok(alarms.length > 0, 'an alarm stored');
  return alarms[0].id;
}

/** Another gateway's alarm (raised through `from`) reaches the alarm stream of the gateway at `port`. */
async function alarmReachesStream(from: NestFastifyApplication, to: NestFastifyApplication, port: number) {
  const stream = alarmStream(port, operator);
  try {
    await stream.ready;
    const assetId = `mill-${Math.random().toString(36).slice(2, 8)}`;
    await request(from.getHttpServer())
      .put(`/v1/manufacturing/assets/${assetId}`)
      .set('Authorization', admin)
      .send(millAsset(assetId))
      .expect(200);
    const detail = await until(
      'the listener checked',
      async () => {
        const d = await alarmNotifications(to);
        return d?.notifications === 'delivered' || d?.notifications === 'not-delivered' ? d : undefined;
      },
      20_000,
    );
    await raiseAlarm(from, assetId);
    const id = await newestAlarmId(from);
    await until('the alarm on the stream', () => (stream.received.some((e) => e.id === id) ? true : undefined), 15_000);
    const sent = stream.received.filter((e) => e.type === 'alarm').map((e) => e.id);
    assert.deepEqual(sent, [...new Set(sent)], 'each alarm sent once');
    return { detail, sent };
  } finally {
    stream.close();
    await stream.ended;
  }
}

// PgBouncer in transaction mode hands each transaction to any of its server connections. Before, the audit commit
// thread's prepared INSERT was gone from the next transaction's session (SQLSTATE 26000): decisions were answered 503
// "the audit trail cannot be written"; and the writer-id claim's session-level lock went back to the pool with its
// session, so a second gateway with the same AUDIT_WRITER_ID was handed it and booted; and LISTEN never hears a
// notification there, with no setting to give the listener the server itself.
describe('the gateway behind PgBouncer in transaction mode', { skip: SKIP }, () => {
  const { setup, gateway, pair } = behindPgBouncer('transaction');

  // First, while the pooler is quiet: it hands the twin's claim the server session that took gateway-a's (the one it
  // used last), where a session-level lock was taken again.
  it('a second gateway given the same AUDIT_WRITER_ID refuses to boot', async () => {
    await pair();
    const refused = await createTestApp({
      DATABASE_URL: setup.url,
      MODELS_DIR: setup.modelsDir,
      AUDIT_WRITER_ID: 'gateway-a',
    }).then(
      async (twin) => {
        await twin.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    assert.ok(refused, 'a second gateway with the same writer id booted');
    assert.match(
      describeBootFailure(refused).error,
      /audit writer id "gateway-a" is in use by another running gateway/,
    );
  });

  it('two gateways answer concurrent decisions, identical Idempotency-Keys at once too, each with its audit row, and verify passes', async () => {
    const [a, b] = await pair();
    const score = (app: NestFastifyApplication, i: number, key?: string) => {
      const req = request(app.getHttpServer())
        .post('/v1/finance/fraud-scores')
        .set('Authorization', engine)
        .set('X-Request-Id', `pgb-${i}`)
        .send(tx({ transactionId: key ? 'pgb-same' : `pgb-${i}` }));
      return key ? req.set('Idempotency-Key', key) : req;
    };
    const decisions = await Promise.all(Array.from({ length: 40 }, (_, i) => score(i % 2 ? a.app : b.app, i)));
    assert.deepEqual(
      decisions.map((r) => r.status),
      decisions.map(() => 200),
      JSON.stringify(decisions.find((r) => r.status !== 200)?.body),
    );
    // One key and body twice at once to one gateway (the second waits for the first) and once to the other (the
    // database row decides: a replay, or 409 while the first is answered): scored once.
    const keyed = await Promise.all([
      score(a.app, 100, 'pgb-key'),
      score(a.app, 101, 'pgb-key'),
      score(b.app, 102, 'pgb-key'),
    ]);
    const fresh = keyed.filter((r) => r.status === 200 && r.headers['idempotent-replayed'] === undefined);
    assert.equal(fresh.length, 1, JSON.stringify(keyed.map((r) => [r.status, r.text])));
    for (const other of keyed.filter((r) => r !== fresh[0])) {
      if (other.status === 200) assert.equal(other.text, fresh[0].text);
      else assert.equal((other.body as { code: string }).code, 'IDEMPOTENCY_IN_PROGRESS', other.text);
    }
    const retried = await score(b.app, 103, 'pgb-key').expect(200);
    assert.equal(retried.headers['idempotent-replayed'], 'true');
    assert.equal(retried.text, fresh[0].text);
    const answers = [...decisions, ...keyed, retried];

    const { rows } = await setup.watch!.query<{ request_id: string; n: number }>(
      `SELECT request_id, count(*)::int AS n FROM audit_events WHERE request_id LIKE 'pgb-%' GROUP BY request_id`,
    );
    assert.equal(rows.length, answers.length, 'every answer has its audit row');
    assert.ok(
      rows.every((r) => r.n === 1),
      'once',
    );
    const report = (
      await request(a.app.getHttpServer()).get('/v1/audit/verify').set('Authorization', admin).expect(200)
    ).body as { valid: boolean; chains: Array<{ writerId: string }> };
    assert.equal(report.valid, true);
    assert.deepEqual(new Set(report.chains.map((c) => c.writerId.split('/')[0])), new Set(['gateway-a', 'gateway-b']));
    const events = await request(b.app.getHttpServer())
      .get('/v1/audit/events?action=fraud.score&limit=5')
      .set('Authorization', admin);
    assert.equal(events.status, 200, events.text);
    assert.equal((events.body as { events: unknown[] }).events.length, 5);
  });

  it('medical STOW-RS stores findings that are read back', { skip: DICOM_SKIP }, async () => {
    const [{ app }] = await pair();
    const file = dicomFile('US1_UNCR.dcm');
    const stow = multipartRelated([file]);
    const stored = await request(app.getHttpServer())
      .post('/dicomweb/studies')
      .set('Authorization', bearer(tokenFor(['pacs-integration'], { sub: 'pacs-1' })))
      .set('Content-Type', stow.contentType)
      .send(stow.body);
    assert.equal(stored.status, 200, stored.text.slice(0, 300));
    const study = dicomParser.parseDicom(new Uint8Array(file)).string('x0020000d')!;
    const kept = await request(app.getHttpServer())
      .get(`/v1/medical/studies/${study}/findings`)
      .set('Authorization', bearer(tokenFor(['radiologist'])));
    assert.equal(kept.status, 200, kept.text.slice(0, 300));
    assert.equal((kept.body as { instances: unknown[] }).instances.length, 1);
  });

  it(
    "another gateway's alarm reaches the stream by the periodic read, and /health/ready says not-delivered",
    { skip: DATASETS_SKIP },
    async () => {
      const [a, b] = await pair();
      const { detail } = await alarmReachesStream(b.app, a.app, a.port);
      assert.equal(detail.notifications, 'not-delivered');
      assert.match(String(detail.why), /pooler in transaction mode/);
      assert.match(String(detail.why), /DATABASE_LISTEN_URL/);
    },
  );

  it(
    'with DATABASE_LISTEN_URL at the server itself, notifications are delivered while the pool goes through PgBouncer',
    { skip: DATASETS_SKIP },
    async () => {
      const [, b] = await pair();
      const c = await gateway('gateway-c', { DATABASE_LISTEN_URL: setup.scratch!.url });
      const { detail } = await alarmReachesStream(b.app, c.app, c.port);
      assert.equal(detail.notifications, 'delivered');
    },
  );
});

describe('the gateway behind PgBouncer in session mode', { skip: SKIP }, () => {
  const { setup, pair } = behindPgBouncer('session');

  it('decisions are audited and verify passes; notifications are delivered', { skip: DATASETS_SKIP }, async () => {
    const [a, b] = await pair();
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request((i % 2 ? a : b).app.getHttpServer())
          .post('/v1/finance/fraud-scores')
          .set('Authorization', engine)
          .set('X-Request-Id', `pgs-${i}`)
          .send(tx({ transactionId: `pgs-${i}` })),
      ),
    );
    assert.deepEqual(
      answers.map((r) => r.status),
      answers.map(() => 200),
    );
    const { rows } = await setup.watch!.query(`SELECT 1 FROM audit_events WHERE request_id LIKE 'pgs-%'`);
    assert.equal(rows.length, answers.length);
    const report = (
      await request(a.app.getHttpServer()).get('/v1/audit/verify').set('Authorization', admin).expect(200)
    ).body as { valid: boolean };
    assert.equal(report.valid, true);
    const { detail } = await alarmReachesStream(b.app, a.app, a.port);
    assert.equal(detail.notifications, 'delivered');
  });
});
