import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import type { AuditEventDto } from '../../src/audit/audit.dto';
import { AuditAnchors } from '../../src/audit/audit-anchor.service';
import { KEYED_HASH_MISMATCH, keyedHashOf } from '../../src/audit/audit-chain';
import { AuditEventEntity } from '../../src/audit/audit-event.entity';
import { AppConfig } from '../../src/config/app-config';
import { rowKeyOf, verifyNamesSubMillisecondMove, verifyNamesUnreadableTime } from '../fixtures/audit-tamper';
import { createTestApp } from '../fixtures/test-app';
import { bearer, TEST_AUTH_ENV, tokenFor } from '../fixtures/test-auth';

const X = [1, 2, 3, 4];
const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: X }] };

/** The digest the gateway should record for input x of shape [1,4] (see canonicalTensorParts). */
function expectedDigest(values: number[]): string {
  const hmac = createHmac('sha256', TEST_AUTH_ENV.AUDIT_HMAC_SECRET);
  for (const part of [Buffer.from('x\0float32\x001,4'), Buffer.from(new Float32Array(values).buffer)]) {
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(part.byteLength));
    hmac.update(length).update(part);
  }
  return hmac.digest('hex');
}

/**
 * Sends `count` inferences at once; checks that every one is answered 200 and has exactly one audit
 * row, and returns the gateway's metrics as they stand afterwards.
 */
async function inferAtOnce(
  http: ReturnType<typeof request>,
  db: DataSource,
  auth: string,
  count: number,
): Promise<string> {
  const answers = await Promise.all(
    Array.from({ length: count }, () =>
      http.post('/v2/models/fixture-linear/infer').set('Authorization', auth).send(LINEAR),
    ),
  );
  assert.ok(answers.every((a) => a.status === 200));
  const ids = answers.map((a) => a.headers['x-request-id']);
  const rows: Array<{ request_id: string }> = await db.query(
    'SELECT request_id FROM audit_events WHERE request_id = ANY($1)',
    [ids],
  );
  assert.equal(rows.length, count);
  assert.equal(new Set(rows.map((r) => r.request_id)).size, count);
  return (
    await http
      .get('/metrics')
      .set('Authorization', bearer(tokenFor(['monitoring'])))
      .expect(200)
  ).text;
}

/** A series' value in Prometheus text (`name` with its labels as written there), NaN when absent. */
function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.slice(name.length + 1));
}

describe('audit trail', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let db: DataSource;
  const admin = bearer(tokenFor(['ml-admin'], { sub: 'ml-engineer-1', tenant: 'bank-a' }));
  const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-1' }));
  const events = async (query: string): Promise<AuditEventDto[]> =>
    (await http.get(`/v1/audit/events?${query}`).set('Authorization', auditor).expect(200)).body
      .events as AuditEventDto[];

  before(async () => {
    app = await createTestApp();
    http = request(app.getHttpServer());
    db = app.get(DataSource);
  });
  after(() => app.close());

  it('records an inference: who, which model version, input digest, output summary', async () => {
    const res = await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR).expect(200);
    const requestId = res.headers['x-request-id'];
    const [row] = await events(`actor=ml-engineer-1&action=model.infer&limit=1`);
    assert.equal(row.requestId, requestId);
    assert.deepEqual(row.roles, ['ml-admin']);
    assert.equal(row.tenant, 'bank-a');
    assert.equal(row.modelName, 'fixture-linear');
    assert.equal(row.modelVersion, '2');
    assert.equal(row.outcome, 'ok');
    assert.equal(row.statusCode, 200);
    assert.equal(row.inputDigest, expectedDigest(X));
    assert.deepEqual(row.outputSummary, { y: { dtype: 'float32', dims: [1, 2], values: res.body.outputs[0].data } });
    assert.ok(row.latencyMs > 0);
    assert.match(row.hash ?? '', /^[0-9a-f]{64}$/);
    // Nothing of the raw input is stored anywhere in the row.
    assert.ok(!JSON.stringify(row).includes('"data"'));
  });

  it('records refusals and invalid requests, with the reason', async () => {
    await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(401);
    await http.post('/v2/models/fixture-linear/infer').set('Authorization', auditor).send(LINEAR).expect(403);
    await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send({ inputs: [] }).expect(400);
    const [invalid, forbidden, anonymous] = await events('limit=3&action=model.infer');
    assert.deepEqual([anonymous.outcome, anonymous.actor, anonymous.statusCode], ['denied', null, 401]);
    assert.deepEqual(anonymous.outputSummary, { reason: 'missing bearer token' });
    assert.deepEqual([forbidden.outcome, forbidden.actor, forbidden.statusCode], ['denied', 'auditor-1', 403]);
    assert.deepEqual(forbidden.outputSummary, { reason: 'requires permission models:admin' });
    assert.deepEqual([invalid.outcome, invalid.statusCode, invalid.inputDigest], ['invalid', 400, null]);
    assert.deepEqual(invalid.outputSummary, { reason: 'VALIDATION_FAILED' });
  });

  it('a row names the roles that granted the request, however many other roles the token lists before them', async () => {
    // An identity provider that puts every group of the user in the roles claim: the row keeps 32 roles.
    const groups = Array.from({ length: 40 }, (_, i) => `group-${i}`);
    const token = bearer(tokenFor([...groups, 'group-3', 'auditor'], { sub: 'auditor-many-groups' }));
    const res = await http.get('/v1/audit/events?limit=1').set('Authorization', token).expect(200);
    const [row] = await events(`limit=1&actor=auditor-many-groups&action=audit.events`);
    assert.equal(row.requestId, res.headers['x-request-id']);
    assert.equal(row.roles.length, 32);
    assert.deepEqual(row.roles.slice(0, 2), ['auditor', 'group-0']);
    assert.equal(new Set(row.roles).size, 32);
  });

  it('a card number in the model path (a 404 like any unknown model) is not written to the trail', async () => {
    const pan = '4111111111111111';
    const ids: string[] = [];
    for (const path of [`/v2/models/${pan}/infer`, `/v2/models/fixture-linear/versions/${pan}/infer`]) {
      const res = await http.post(path).set('Authorization', admin).send(LINEAR).expect(404);
      ids.push(String(res.headers['x-request-id']));
    }
    const rows: Array<Record<string, unknown>> = await db.query(
      'SELECT model_name, model_version, output_summary FROM audit_events WHERE request_id = ANY($1) ORDER BY occurred_at',
      [ids],
    );
    assert.equal(rows.length, 2);
    assert.equal(rows[0].model_name, '(card number removed)');
    assert.deepEqual([rows[1].model_name, rows[1].model_version], ['fixture-linear', '(card number removed)']);
    assert.ok(!JSON.stringify(rows).includes('4111'), JSON.stringify(rows));
  });

  it('checks the caller before reading the body; a body refused by its parser is audited as invalid with the reason', async () => {
    // Without a token, 401 whatever the body: it is never parsed.
    const routes: Array<['post' | 'put', string]> = [
      ['post', '/v2/models/fixture-linear/infer'],
      ['put', '/v1/manufacturing/assets/pump-1'],
    ];
    for (const [method, path] of routes) {
      for (const [type, body] of [
        ['application/json', '{bad'],
        ['application/xml', '<a/>'],
      ]) {
        await http[method](path).set('Content-Type', type).send(body).expect(401);
      }
    }
    const deep = '['.repeat(100) + ']'.repeat(100);
    const refusals: Array<[string, string, number, string]> = [
      // Fastify's refusals of a JSON body answered and audited with the gateway's code, not FST_ERR_*.
      ['application/json', '{bad', 400, 'MALFORMED_JSON'],
      ['application/json', '', 400, 'MALFORMED_JSON'],
      // Fastify's own 415 answered and audited with the gateway's code, as the gateway's own 415s are.
      ['application/xml', '<a/>', 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['text/plain', '{"assetId":"pump-1"}', 415, 'UNSUPPORTED_MEDIA_TYPE'],
      // A body with no Content-Type at all (sent as bytes: superagent would label a string a form).
      ['', '{"assetId":"pump-1"}', 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['application/json', deep, 400, 'VALIDATION_FAILED'],
    ];
    for (const [type, body, status, reason] of refusals) {
      const put = http.put('/v1/manufacturing/assets/pump-1').set('Authorization', admin);
      const res = await (type ? put.set('Content-Type', type).send(body) : put.send(Buffer.from(body))).expect(status);
      assert.equal(res.body.code, reason);
      assert.equal(res.body.errors[0].field, status === 415 ? 'Content-Type' : '(body)', res.text);
      assert.equal(res.body.errors.length, 1, res.text);
      const rows = await events(`action=manufacturing.asset-put&actor=ml-engineer-1&limit=5`);
      const row = rows.find((r) => r.requestId === res.headers['x-request-id']);
      assert.ok(row, `no audit row for ${type} ${body.slice(0, 10)}`);
      assert.deepEqual([row.outcome, row.statusCode, row.outputSummary], ['invalid', status, { reason }]);
    }
  });

  it('an alarm stream (Server-Sent Events, written past onSend) has its audit row committed before it starts', async () => {
    const operator = bearer(tokenFor(['plant-operator'], { sub: 'operator-1', tenant: 'plant-a' }));
    const res = await http
      .get('/v1/manufacturing/alarms/stream')
      .set('Authorization', operator)
      .set('Accept', 'text/event-stream')
      .set('X-Request-Id', 'sse-audit-1')
      .buffer(false)
      .parse((stream, done) => {
        (stream as unknown as { destroy(): void }).destroy();
        done(null, undefined);
      });
    assert.equal(res.status, 200);
    // The headers came after the commit: the row is there already.
    const rows: Array<{ actor: string; tenant: string; action: string; outcome: string; status_code: number }> =
      await db.query('SELECT actor, tenant, action, outcome, status_code FROM audit_events WHERE request_id = $1', [
        'sse-audit-1',
      ]);
    assert.deepEqual(rows, [
      {
        actor: 'operator-1',
        tenant: 'plant-a',
        action: 'manufacturing.alarms-stream',
        outcome: 'ok',
        status_code: 200,
      },
    ]);
  });

  it('pages with a cursor, newest first, without overlap', async () => {
    for (let i = 0; i < 5; i++) await http.get('/v2/models').set('Authorization', admin).expect(200);
    const first = await http
      .get('/v1/audit/events?action=model.list&limit=3')
      .set('Authorization', auditor)
      .expect(200);
    assert.equal(first.body.events.length, 3);
    const second = await http
      .get(`/v1/audit/events?action=model.list&limit=3&cursor=${first.body.nextCursor}`)
      .set('Authorization', auditor)
      .expect(200);
    const ids = [...first.body.events, ...second.body.events].map((e: { id: string }) => Number(e.id));
    assert.equal(ids.length, 5);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => b - a),
    );
    assert.equal(second.body.nextCursor, null);
    const bad = await http.get('/v1/audit/events?cursor=abc&outcome=maybe').set('Authorization', auditor).expect(400);
    assert.deepEqual(bad.body.errors.map((e: { field: string }) => e.field).sort(), ['cursor', 'outcome']);
  });

  it('a token with a tenant sees only its tenant', async () => {
    const bankB = bearer(tokenFor(['auditor'], { sub: 'auditor-b', tenant: 'bank-b' }));
    const bankA = bearer(tokenFor(['auditor'], { sub: 'auditor-a', tenant: 'bank-a' }));
    const seenByB = (await http.get('/v1/audit/events?actor=ml-engineer-1').set('Authorization', bankB).expect(200))
      .body;
    assert.equal(seenByB.events.length, 0);
    const seenByA = (await http.get('/v1/audit/events?actor=ml-engineer-1').set('Authorization', bankA).expect(200))
      .body;
    assert.ok(seenByA.events.length > 0);
    assert.ok(seenByA.events.every((e: { tenant: string }) => e.tenant === 'bank-a'));
    // The chains span every tenant: their counts and ids are not for one tenant's auditor.
    const verify = await http.get('/v1/audit/verify').set('Authorization', bankA).expect(403);
    assert.match(verify.body.detail, /names no tenant/);
    // Named as the field of every other refusal of a token, as README's Access says a 403 is.
    assert.deepEqual(verify.body.errors, [{ field: 'Authorization', reason: verify.body.detail }]);
    // Its row carries the reason the caller was given, as the guard's 403s do, not the code.
    const [row] = await events('action=audit.verify&outcome=denied&limit=1');
    assert.deepEqual(
      [row.actor, row.statusCode, row.outputSummary],
      ['auditor-a', 403, { reason: verify.body.detail }],
    );
  });

  it('a token with a tenant sees its events without their place in the chains, and pages with a sealed cursor', async () => {
    const pagerA = bearer(tokenFor(['ml-admin'], { sub: 'pager-a', tenant: 'bank-a' }));
    const pagerB = bearer(tokenFor(['ml-admin'], { sub: 'pager-b', tenant: 'bank-b' }));
    const auditorA = bearer(tokenFor(['auditor'], { sub: 'auditor-a', tenant: 'bank-a' }));
    const auditorB = bearer(tokenFor(['auditor'], { sub: 'auditor-b', tenant: 'bank-b' }));
    // bank-a's rows with bank-b's between them, in one chain: seq and id gaps, prevHash another tenant's hash.
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      sent.push((await http.get('/v2/models').set('Authorization', pagerA).expect(200)).headers['x-request-id']);
      await http.get('/v2/models').set('Authorization', pagerB).expect(200);
    }
    const page = (auth: string, cursor?: string): request.Test =>
      http.get(`/v1/audit/events?actor=pager-a&limit=2${cursor ? `&cursor=${cursor}` : ''}`).set('Authorization', auth);

    const seen: Array<Record<string, unknown>> = [];
    const cursors: string[] = [];
    let cursor: string | undefined;
    do {
      const body = (await page(auditorA, cursor).expect(200)).body as { events: []; nextCursor: string | null };
      seen.push(...body.events);
      cursor = body.nextCursor ?? undefined;
      if (cursor) cursors.push(cursor);
    } while (cursor);
    // Newest first, each once, none missing; pages of 2, 2 and 1.
    assert.deepEqual(
      seen.map((e) => e.requestId),
      [...sent].reverse(),
    );
    assert.equal(cursors.length, 2);
    for (const c of cursors) assert.match(c, /^[A-Za-z0-9_-]{48}$/);
    const chainFields = ['id', 'writerId', 'seq', 'prevHash', 'hash'];
    for (const event of seen) {
      assert.deepEqual(
        chainFields.filter((f) => f in event),
        [],
      );
      assert.equal(event.tenant, 'bank-a');
    }

    // An altered cursor, another tenant's, a row id, and a tenant's cursor without a tenant: 400 naming cursor.
    const [first] = cursors;
    const altered = first.slice(0, 20) + (first[20] === 'A' ? 'B' : 'A') + first.slice(21);
    const rowId = (await events('actor=pager-a&limit=1'))[0].id ?? '';
    for (const [auth, text] of [
      [auditorA, altered],
      [auditorB, first],
      [auditorA, rowId],
      [auditor, first],
    ]) {
      const res = await page(auth, text).expect(400);
      assert.deepEqual(res.body.errors, [
        { field: 'cursor', reason: 'must be a nextCursor returned by this endpoint' },
      ]);
    }

    // Without a tenant, the answer is as it was: the rows' chain fields, and a row id to page on.
    const full = (await page(auditor).expect(200)).body as { events: AuditEventDto[]; nextCursor: string };
    assert.deepEqual(
      full.events.map((e) => e.requestId),
      [...sent].reverse().slice(0, 2),
    );
    for (const event of full.events) {
      assert.match(event.id ?? '', /^[1-9]\d*$/);
      assert.match(event.writerId ?? '', /\/\d+$/);
      assert.ok(Number.isInteger(event.seq));
      assert.match(event.prevHash ?? '', /^[0-9a-f]{64}$/);
      assert.match(event.hash ?? '', /^[0-9a-f]{64}$/);
    }
    assert.equal(full.nextCursor, full.events[1].id);
    const second = (await page(auditor, full.nextCursor).expect(200)).body as { events: AuditEventDto[] };
    assert.deepEqual(
      second.events.map((e) => e.requestId),
      [...sent].reverse().slice(2, 4),
    );
  });

  it('refuses an empty actor, action or model filter, which listed every row as if it were left out', async () => {
    for (const field of ['actor', 'action', 'model']) {
      const res = await http.get(`/v1/audit/events?${field}=&limit=1`).set('Authorization', auditor);
      assert.equal(res.status, 400, `${field}: ${res.text.slice(0, 200)}`);
      assert.deepEqual(res.body.errors, [{ field, reason: `must not be empty: leave it out to list every ${field}` }]);
    }
  });

  it('takes only ISO 8601 times, and refuses from after to', async () => {
    for (const [query, field] of [
      ['from=1', 'from'],
      ['to=March%207', 'to'],
      ['from=abc', 'from'],
      ['from=2026-12-05T10:00:00', 'from'],
    ]) {
      const res = await http.get(`/v1/audit/events?${query}`).set('Authorization', auditor);
      assert.equal(res.status, 400, `${query}: ${res.text.slice(0, 200)}`);
      assert.deepEqual(
        res.body.errors.map((e: { field: string }) => e.field),
        [field],
      );
      assert.match(res.body.errors[0].reason, /ISO 8601/);
    }
    const reversed = await http
      .get('/v1/audit/events?from=2026-12-05T10:00:00Z&to=2026-12-04T10:00:00Z')
      .set('Authorization', auditor)
      .expect(400);
    assert.deepEqual(reversed.body.errors, [{ field: 'from', reason: 'after to' }]);
    await http
      .get('/v1/audit/events?from=2026-12-04&to=2026-12-05T10:00:00.123%2B01:00')
      .set('Authorization', auditor)
      .expect(200);
  });

  it('says so when the + of an offset came as a space (a query reads + as one), rather than asking for an offset', async () => {
    const res = await http
      .get('/v1/audit/events?to=2026-12-05T10:00:00+01:00')
      .set('Authorization', auditor)
      .expect(400);
    assert.deepEqual(res.body.errors, [
      {
        field: 'to',
        reason:
          'must be an ISO 8601 time with Z or an offset, e.g. 2026-12-05T10:00:00Z; it has a space where a + sign goes (in a URL query, send + as %2B)',
      },
    ]);
  });

  it('a token whose tenant claim is present but unusable is refused, not read as every tenant', async () => {
    for (const tenant of [42, ['bank-b'], '', 'bank\u0000b', 'b'.repeat(257)]) {
      const odd = bearer(tokenFor(['auditor'], { sub: 'auditor-odd', claims: { tenant } }));
      const res = await http.get('/v1/audit/events?actor=ml-engineer-1').set('Authorization', odd).expect(401);
      assert.equal(res.body.detail, 'token tenant claim malformed');
      assert.equal(res.body.events, undefined);
    }
    const [row] = await events('action=audit.events&outcome=denied&limit=1');
    assert.deepEqual(
      [row.actor, row.tenant, row.outputSummary],
      [null, null, { reason: 'token tenant claim malformed' }],
    );
  });

  it('a tenant claim with a lone surrogate is refused: stored as U+FFFD, it would read the rows of another tenant', async () => {
    // 'bank-\udc00' and 'bank-\ufffd' would have seen the rows of 'bank-\ud800' (the database stores each as U+FFFD).
    const writer = bearer(tokenFor(['ml-admin'], { sub: 'engineer-lone', claims: { tenant: 'bank-\ud800' } }));
    const written = await http.post('/v2/models/fixture-linear/infer').set('Authorization', writer).send(LINEAR);
    assert.equal(written.status, 401, written.text.slice(0, 200));
    assert.equal(written.body.error, 'Authorization: token tenant claim malformed');
    for (const tenant of ['bank-\udc00', 'bank-\ufffd']) {
      const reader = bearer(tokenFor(['auditor'], { sub: 'auditor-lone', claims: { tenant } }));
      const res = await http.get('/v1/audit/events?actor=engineer-lone').set('Authorization', reader);
      if (tenant === 'bank-\udc00') {
        assert.equal(res.status, 401);
        assert.equal(res.body.detail, 'token tenant claim malformed');
      } else {
        assert.equal(res.status, 200);
        assert.deepEqual(res.body.events, []);
      }
    }
  });

  it('group commit: concurrent requests share commits, and each has its row once', async () => {
    const before = Number((await db.query('SELECT count(*) AS n FROM audit_events'))[0].n);
    const metrics = await inferAtOnce(http, db, admin, 40);
    const commits = metric(metrics, 'gateway_audit_commit_rows_count');
    const committed = metric(metrics, 'gateway_audit_commit_rows_sum');
    assert.ok(committed >= before + 40, `${committed} rows committed`);
    assert.ok(commits < committed, `${commits} commits for ${committed} rows: no grouping`);
  });

  it('stores a caller string with no UTF-8 form (a lone surrogate) as it was hashed, so the chain still verifies', async () => {
    // A signed token's sub may hold "\ud800"; its UTF-8 form would be U+FFFD while the hash saw U+D800.
    const odd = bearer(tokenFor(['ml-admin'], { sub: 'engineer-\ud800-2' }));
    await http.post('/v2/models/fixture-linear/infer').set('Authorization', odd).send(LINEAR).expect(200);
    const [row] = await events(`actor=${encodeURIComponent('engineer-\uFFFD-2')}&limit=1`);
    assert.equal(row.actor, 'engineer-\uFFFD-2');
    // The verify test below checks every chain, this row's included.
  });

  it('the table is append-only', async () => {
    await assert.rejects(db.query(`UPDATE audit_events SET outcome = 'ok'`), /append-only/);
    await assert.rejects(db.query('DELETE FROM audit_events'), /append-only/);
  });

  it('verify names a row whose occurred_at was moved by less than a millisecond', async () => {
    // The hash covers occurred_at to the millisecond (toISOString); the column keeps microseconds.
    const [victim] = await events('action=model.infer&outcome=ok&limit=1&actor=ml-engineer-1');
    await verifyNamesSubMillisecondMove(http, db, auditor, victim);
  });

  it('verify names a row whose occurred_at was set to infinity or past a Date, and events still lists it', async () => {
    // Read as a number or an invalid Date, the time failed its hash's toISOString: both routes answered 500.
    const [victim] = await events('action=model.infer&outcome=ok&limit=1&actor=ml-engineer-1');
    await verifyNamesUnreadableTime(http, db, auditor, victim);
    // A tenant's auditor is given its rows field by field: listed too.
    const [tenantRow] = await db.query<Array<{ id: string; seq: number; requestId: string }>>(
      `SELECT id::text AS id, seq::int AS seq, request_id AS "requestId" FROM audit_events
       WHERE tenant = 'bank-a' ORDER BY id DESC LIMIT 1`,
    );
    const bankA = bearer(tokenFor(['auditor'], { sub: 'auditor-a', tenant: 'bank-a' }));
    await verifyNamesUnreadableTime(http, db, auditor, tenantRow, bankA);
  });

  it('verify finds every chain intact, then names a row changed with SQL', async () => {
    const intact = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
    assert.equal(intact.valid, true);
    assert.ok(intact.rowsChecked > 40);
    assert.equal(intact.firstBroken, null);
    // No anchor file yet (the first anchor is a minute away): no fault, and said so.
    assert.deepEqual([intact.anchorsChecked, intact.anchorBreaks], [0, []]);
    assert.equal(intact.unanchoredChains, intact.chains.length);

    const [victim] = await events('action=model.infer&outcome=ok&limit=1&actor=ml-engineer-1');
    // Someone with database rights bypasses the trigger and softens a recorded score.
    await db.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
    await db.query(`UPDATE audit_events SET output_summary = '{"y": {"values": [0, 0]}}' WHERE id = $1`, [victim.id]);
    await db.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');

    const report = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
    assert.equal(report.valid, false);
    assert.equal(report.firstBroken.id, victim.id);
    assert.equal(report.firstBroken.seq, victim.seq);
    assert.equal(report.firstBroken.reason, KEYED_HASH_MISMATCH);
  });

  it('when the trail cannot be written the decision is refused with 503, and service resumes by itself', async () => {
    await db.query('ALTER TABLE audit_events RENAME TO audit_events_away');
    try {
      const refused = await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '1');
      assert.match(refused.body.error, /audit trail cannot be written/);
      assert.equal(refused.body.outputs, undefined); // the computed answer never leaves
      const publicProbe = await http.get('/health/ready');
      assert.equal(publicProbe.status, 503);
      // Anyone learns which check fails; only a caller with models:read learns why.
      assert.deepEqual(publicProbe.body.checks.audit, { ready: false });
      assert.equal(publicProbe.body.status, 'not-ready');
      const detailed = await http.get('/health/ready').set('Authorization', bearer(tokenFor(['auditor'])));
      assert.equal(detailed.status, 503);
      assert.equal(detailed.body.checks.audit.ready, false);
      assert.ok(detailed.body.checks.audit.detail, JSON.stringify(detailed.body.checks.audit));
    } finally {
      await db.query('ALTER TABLE audit_events_away RENAME TO audit_events');
    }
    await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR).expect(200);
    assert.equal((await http.get('/health/ready')).status, 200);
  });
});

describe('audit trail, a burst larger than AUDIT_MAX_BATCH', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  const admin = bearer(tokenFor(['ml-admin'], { sub: 'ml-engineer-2' }));

  before(async () => {
    // A long linger lets the rows of the burst gather, so that without the cap they would go in
    // commits of more than 8 (with the default 2 ms the burst sometimes arrives spread out enough not to).
    app = await createTestApp({ AUDIT_MAX_BATCH: '8', AUDIT_MAX_DELAY_MS: '50' });
    http = request(app.getHttpServer());
  });
  after(() => app.close());

  it('goes out as several commits of at most AUDIT_MAX_BATCH rows, each request with its row once', async () => {
    const metrics = await inferAtOnce(http, app.get(DataSource), admin, 40);
    const commits = metric(metrics, 'gateway_audit_commit_rows_count');
    const upTo8 = metric(metrics, 'gateway_audit_commit_rows_bucket{le="8"}');
    const committed = metric(metrics, 'gateway_audit_commit_rows_sum');
    assert.equal(upTo8, commits, 'a commit carried more than 8 rows');
    assert.ok(commits >= 5 && committed >= 40, `${commits} commits for ${committed} rows`);
    const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-2' }));
    const report = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
    assert.equal(report.valid, true);
  });
});

describe('audit trail, tenant and roles in claims named by URI (RFC 7519 4.2, as Auth0 requires)', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  const TENANT = 'https://bank.example/tenant';
  const ROLES = 'https://bank.example/roles';
  // The plain `roles` claim grants nothing here: only the configured claim is read.
  const token = (roles: string[], sub: string, tenant?: string): string =>
    bearer(tokenFor([], { sub, claims: { [ROLES]: roles, ...(tenant ? { [TENANT]: tenant } : {}) } }));

  before(async () => {
    app = await createTestApp({ AUTH_TENANT_CLAIM: TENANT, AUTH_ROLES_CLAIM: ROLES });
    http = request(app.getHttpServer());
  });
  after(() => app.close());

  it("a tenant's auditor sees its own tenant's rows only, and may not verify the chains", async () => {
    for (const tenant of ['bank-a', 'bank-b', 'bank-a']) {
      await http
        .post('/v2/models/fixture-linear/infer')
        .set('Authorization', token(['ml-admin'], `engineer-${tenant}`, tenant))
        .send(LINEAR)
        .expect(200);
    }
    const auditorA = token(['auditor'], 'auditor-a', 'bank-a');
    const seen = (await http.get('/v1/audit/events?action=model.infer').set('Authorization', auditorA).expect(200)).body
      .events as AuditEventDto[];
    assert.deepEqual(
      seen.map((e) => [e.actor, e.tenant]),
      [
        ['engineer-bank-a', 'bank-a'],
        ['engineer-bank-a', 'bank-a'],
      ],
    );
    await http.get('/v1/audit/verify').set('Authorization', auditorA).expect(403);
    // Without a tenant claim, the auditor sees every tenant's rows.
    const everyone = (
      await http
        .get('/v1/audit/events?action=model.infer')
        .set('Authorization', token(['auditor'], 'auditor-all'))
        .expect(200)
    ).body.events as AuditEventDto[];
    assert.deepEqual(everyone.map((e) => e.tenant).sort(), ['bank-a', 'bank-a', 'bank-b']);
  });
});

describe('audit trail, chain heads anchored outside the database', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let db: DataSource;
  let anchorFile: string;
  const admin = bearer(tokenFor(['ml-admin'], { sub: 'ml-engineer-3' }));
  const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-3' }));
  /** Each chain's last row in the database. */
  const dbHeads = async (): Promise<Map<string, { seq: number; hash: string }>> => {
    const rows: Array<{ writer_id: string; seq: string; hash: string }> = await db.query(
      'SELECT DISTINCT ON (writer_id) writer_id, seq, hash FROM audit_events ORDER BY writer_id, seq DESC',
    );
    return new Map(rows.map((r) => [r.writer_id, { seq: Number(r.seq), hash: r.hash }]));
  };
  /** The anchor file's lines, parsed. */
  const anchorLines = (): Array<{ chain: string; seq: number; hash: string; at: string; mac: string }> => {
    const text = existsSync(anchorFile) ? readFileSync(anchorFile, 'utf8') : '';
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { chain: string; seq: number; hash: string; at: string; mac: string });
  };

  before(async () => {
    // Anchored when the test says (AuditAnchors.anchor), not by the clock, so that it can edit the file.
    app = await createTestApp({ AUDIT_ANCHOR_INTERVAL_MS: '3600000' });
    http = request(app.getHttpServer());
    db = app.get(DataSource);
    anchorFile = app.get(AppConfig).auditAnchorFile;
  });
  after(() => app.close());

  it('anchors the head of each chain (seq and hash of its last committed row) in the anchor file', async () => {
    for (let i = 0; i < 6; i++) {
      await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR).expect(200);
    }
    const heads = await dbHeads();
    const [chain, head] = [...heads].find(([, h]) => h.seq >= 6)!;
    await app.get(AuditAnchors).anchor();
    const anchor = anchorLines().find((a) => a.chain === chain && a.seq === head.seq);
    assert.equal(anchor?.hash, head.hash);
    assert.match(anchor.mac, /^[0-9a-f]{64}$/);
  });

  it('verify holds each chain to its anchor, and names a chain whose newest rows were deleted with SQL', async () => {
    const intact = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
    assert.deepEqual([intact.valid, intact.anchorBreaks], [true, []]);
    assert.ok(intact.anchorsChecked >= 1);
    // The verify request's own row moved the head: anchor it, then cut the chain's newest 3 rows.
    await app.get(AuditAnchors).anchor();
    const [chain, head] = [...(await dbHeads())].find(([, h]) => h.seq >= 7)!;
    const anchor = anchorLines().findLast((a) => a.chain === chain)!;
    assert.deepEqual([anchor.seq, anchor.hash], [head.seq, head.hash]);
    await db.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
    await db.query('DELETE FROM audit_events WHERE writer_id = $1 AND seq > $2', [chain, head.seq - 3]);
    await db.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');

    const report = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
    assert.equal(report.valid, false);
    // The chain itself still verifies: only the anchor shows the cut.
    assert.equal(report.firstBroken, null);
    assert.deepEqual(report.anchorBreaks, [
      {
        writerId: chain,
        seq: head.seq,
        anchoredAt: anchor.at,
        line: null,
        reason: `rows after seq ${head.seq - 3} cut off: the chain was anchored at seq ${head.seq} on ${anchor.at}`,
      },
    ]);
    assert.deepEqual(
      report.chains.find((c: { writerId: string }) => c.writerId === chain),
      {
        writerId: chain,
        rows: head.seq - 3,
        valid: false,
        anchoredSeq: head.seq,
        firstBroken: null,
        unkeyedRows: 0,
        rowsUnderRetiredSecrets: 0,
      },
    );
  });

  it('verify reports an anchor line edited to hide the cut, and still holds the chain to the anchor this process wrote', async () => {
    const lines = readFileSync(anchorFile, 'utf8').split('\n');
    const at = lines.findLastIndex((l) => l.includes('"seq"'));
    const edited = JSON.parse(lines[at]) as { chain: string; seq: number };
    const anchoredSeq = edited.seq;
    lines[at] = JSON.stringify({ ...edited, seq: anchoredSeq - 3 });
    writeFileSync(anchorFile, lines.join('\n'));

    const report = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
    assert.equal(report.valid, false);
    const breaks = report.anchorBreaks as Array<{ writerId: string; seq: number; line: number; reason: string }>;
    const bad = breaks.find((b) => b.line === at + 1);
    assert.ok(bad, JSON.stringify(breaks));
    assert.deepEqual([bad.writerId, bad.seq], [edited.chain, anchoredSeq - 3]);
    assert.match(bad.reason, /does not verify \(HMAC or form\): the anchor file was altered/);
    const lost = breaks.find((b) => b.line === null && b.writerId === edited.chain);
    assert.match(lost?.reason ?? '', new RegExp(`lacks this process's anchor of seq ${anchoredSeq}`));
  });

  it('anchors the last heads at shutdown, after the last commit, as closed: a row forged after one is named', async () => {
    const quiet = await createTestApp({ AUDIT_ANCHOR_INTERVAL_MS: '3600000' });
    const dataDir = quiet.get(AppConfig).DATA_DIR;
    const file = quiet.get(AppConfig).auditAnchorFile;
    const quietHttp = request(quiet.getHttpServer());
    for (let i = 0; i < 3; i++) {
      await quietHttp.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR).expect(200);
    }
    const rows: Array<{ writer_id: string; seq: string; hash: string }> = await quiet
      .get(DataSource)
      .query('SELECT DISTINCT ON (writer_id) writer_id, seq, hash FROM audit_events ORDER BY writer_id, seq DESC');
    assert.equal(existsSync(file), false, 'anchored before its interval');
    await quiet.close();
    const anchored = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { chain: string; seq: number; hash: string; at: string; closed?: boolean });
    assert.deepEqual(
      anchored.map((a) => [a.chain, a.seq, a.hash, a.closed]).sort(),
      rows.map((r) => [r.writer_id, Number(r.seq), r.hash, true]).sort(),
    );

    // The next gateway on the data directory (a writer id of its own) holds the stopped one's chains to those
    // anchors. Someone who holds the audit secret as well as the database appends a row to one, hashed (keyed) and
    // linked as the gateway would have: the chain verifies, but it was closed.
    const next = await createTestApp({ AUDIT_ANCHOR_INTERVAL_MS: '3600000', DATA_DIR: dataDir });
    try {
      const nextHttp = request(next.getHttpServer());
      const events = next.get(DataSource).getRepository(AuditEventEntity);
      const [chain, seq, lastHash] = [rows[0].writer_id, Number(rows[0].seq), rows[0].hash];
      const last = await events.findOneByOrFail({ writerId: chain, seq: String(seq) });
      const { id: _id, ...copy } = last;
      const forged = {
        ...copy,
        seq: String(seq + 1),
        requestId: 'forged-after-shutdown',
        occurredAt: new Date(last.occurredAt.getTime() + 1),
        prevHash: lastHash,
      };
      const row = { ...forged, seq: seq + 1 };
      await events.save(events.create({ ...forged, hash: keyedHashOf(rowKeyOf(next.get(AppConfig)), row) }));

      const report = (await nextHttp.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
      assert.equal(report.valid, false);
      assert.equal(report.firstBroken, null, 'the forged row is hashed and linked as a real one');
      const { at } = anchored.find((a) => a.chain === chain)!;
      assert.deepEqual(report.anchorBreaks, [
        {
          writerId: chain,
          seq,
          anchoredAt: at,
          line: null,
          reason:
            `rows after seq ${seq} added to a closed chain: its gateway anchored seq ${seq} as the chain's last row ` +
            `when it stopped on ${at}`,
        },
      ]);
    } finally {
      await next.close();
    }
  });
});

describe('audit trail, two gateways given one anchor file', () => {
  it('each anchors its chains in a file of its own (the second numbered beside it), and each verifies clean', async () => {
    const admin = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'two-gateways' }));
    const dir = mkdtempSync(join(tmpdir(), 'gateway-test-anchors-'));
    const shared = join(dir, 'audit-anchors.jsonl');
    const env = { AUDIT_ANCHOR_FILE: shared, AUDIT_ANCHOR_INTERVAL_MS: '3600000' };
    const a = await createTestApp({ ...env, AUDIT_WRITER_ID: 'anchor-a' });
    const b = await createTestApp({ ...env, AUDIT_WRITER_ID: 'anchor-b' });
    try {
      for (const app of [a, b]) {
        await request(app.getHttpServer())
          .post('/v2/models/fixture-linear/infer')
          .set('Authorization', admin)
          .send(LINEAR)
          .expect(200);
      }
      await Promise.all([a, b].map((app) => app.get(AuditAnchors).anchor()));
      const writersIn = (file: string): string[] =>
        existsSync(file)
          ? [
              ...new Set(
                readFileSync(file, 'utf8')
                  .trim()
                  .split('\n')
                  .map((l) => (JSON.parse(l) as { chain: string }).chain.split('/')[0]),
              ),
            ]
          : [];
      assert.deepEqual(writersIn(shared), ['anchor-a']);
      assert.deepEqual(writersIn(shared.replace(/\.jsonl$/, '.2.jsonl')), ['anchor-b']);
      for (const app of [a, b]) {
        const report = (
          await request(app.getHttpServer()).get('/v1/audit/verify').set('Authorization', admin).expect(200)
        ).body;
        assert.deepEqual([report.valid, report.anchorBreaks], [true, []]);
      }
    } finally {
      await a.close();
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('audit trail, a commit the database does not answer', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  const admin = bearer(tokenFor(['ml-admin'], { sub: 'ml-engineer-5' }));

  before(async () => {
    app = await createTestApp({ AUDIT_COMMIT_TIMEOUT_MS: '300' });
    http = request(app.getHttpServer());
  });
  after(() => app.close());

  it('is refused 503 once AUDIT_COMMIT_TIMEOUT_MS has passed, not held while the database is stuck', async () => {
    await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR).expect(200);
    // Embedded PGlite runs one statement at a time in its thread: a long one holds the audit commit behind it.
    // On a connection already open, and given a head start: the commit goes to the database's thread by a port
    // of its own, and under load it overtook a statement still on its way through the pool and the socket (200).
    const runner = app.get(DataSource).createQueryRunner();
    await runner.connect();
    const stuck = runner.query('SELECT pg_sleep(3)').finally(() => runner.release());
    await new Promise((later) => setTimeout(later, 250));
    const started = Date.now();
    const refused = await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR);
    const waited = Date.now() - started;
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    // The Open Inference Protocol's error body: { error }.
    assert.match(refused.body.error, /audit trail cannot be written/);
    assert.equal(refused.headers['retry-after'], '1');
    assert.ok(waited < 2500, `answered after ${waited} ms, while the database was stuck for 3 s`);
    await stuck;
  });
});
