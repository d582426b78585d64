import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AuditInputDigester } from '../../src/common/access';
import { canonicalBytes } from '../../src/domains/finance/canonical-input.util';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { bundledModelsDir, REPO_ROOT } from '../fixtures/paths';
import { APPLICANT, features, tx } from '../fixtures/finance-data';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

/** The served model's review and decline thresholds, as its manifest states them. */
const CREDIT_THRESHOLDS = (() => {
  const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'models/finance/credit-default/1/model.json'), 'utf8')) as {
    thresholds: { review: { value: number }; decline: { value: number } };
  };
  return { review: manifest.thresholds.review.value, decline: manifest.thresholds.decline.value };
})();

/** The same value with every object's keys in reverse order (the same input to its canonical form). */
const reversed = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(reversed)
    : typeof v === 'object' && v !== null
      ? Object.fromEntries(
          Object.entries(v)
            .reverse()
            .map(([k, x]) => [k, reversed(x)]),
        )
      : v;

describe('finance: fraud scoring and credit assessment', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let modelsDir: string;
  const engine = bearer(tokenFor(['risk-engine'], { sub: 'risk-engine-1' }));
  before(async () => {
    modelsDir = bundledModelsDir(['finance']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
    http = request(app.getHttpServer());
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });
  const post = (path: string, body: unknown, auth = engine) =>
    http
      .post(`/v1/finance/${path}`)
      .set('Authorization', auth)
      .send(body as object);

  it('scores a transaction: probability, decision from the thresholds, top features, model, request id', async () => {
    const res = await post('fraud-scores', tx()).expect(200);
    assert.equal(res.body.transactionId, 'tx-0001');
    assert.ok(res.body.fraudProbability >= 0 && res.body.fraudProbability <= 1);
    const expected =
      res.body.fraudProbability >= 0.46 ? 'decline' : res.body.fraudProbability >= 0.08 ? 'review' : 'approve';
    assert.equal(res.body.decision, expected);
    assert.deepEqual(res.body.model, { name: 'card-fraud', version: '1' });
    assert.equal(res.body.requestId, res.headers['x-request-id']);
    assert.equal(res.body.topFeatures.length, 5);
    for (const f of res.body.topFeatures) {
      assert.match(f.feature, /^(features\.v\d+|amount|occurredAt)$/);
      assert.equal(f.direction, f.contribution >= 0 ? 'raises-risk' : 'lowers-risk');
    }
    const magnitudes = res.body.topFeatures.map((f: { contribution: number }) => Math.abs(f.contribution));
    assert.deepEqual(
      magnitudes,
      [...magnitudes].sort((a, b) => b - a),
    );
  });

  it('a suspicious transaction scores higher than a typical one', async () => {
    // V14 and V17 strongly negative are the classic fraud signature in this data set.
    const typical = (await post('fraud-scores', tx()).expect(200)).body.fraudProbability;
    const suspicious = (
      await post('fraud-scores', tx({ features: { ...features(), v14: -12, v17: -10, v12: -10, v10: -8 } })).expect(200)
    ).body;
    assert.ok(suspicious.fraudProbability > typical, `${suspicious.fraudProbability} <= ${typical}`);
    assert.notEqual(suspicious.decision, 'approve');
  });

  it('refuses a card number in any field with 422 naming it, before validation', async () => {
    const inToken = await post('fraud-scores', tx({ cardToken: '4111 1111 1111 1111' })).expect(422);
    assert.equal(inToken.body.code, 'PAN_DETECTED');
    assert.deepEqual(
      inToken.body.errors.map((e: { field: string }) => e.field),
      ['cardToken'],
    );
    const unknownField = await post('fraud-scores', tx({ note: 'card 5500000000000004' })).expect(422);
    assert.deepEqual(
      unknownField.body.errors.map((e: { field: string }) => e.field),
      ['note'],
    );
    const inCredit = await post('credit-assessments', { ...APPLICANT, reference: '4111111111111111' }).expect(422);
    assert.equal(inCredit.body.code, 'PAN_DETECTED');
  });

  it('refuses bad values with 400 naming each field', async () => {
    const res = await post(
      'fraud-scores',
      tx({ amount: -5, currency: 'XYZ', occurredAt: '2026-11-23', features: { ...features(), v3: 'NaN', v29: 1 } }),
    ).expect(400);
    const fields = res.body.errors.map((e: { field: string }) => e.field);
    for (const f of ['amount', 'currency', 'occurredAt', 'features.v3', 'features.v29'])
      assert.ok(fields.includes(f), `${f} in ${fields}`);
    const infinite = await http
      .post('/v1/finance/fraud-scores')
      .set('Authorization', engine)
      .set('content-type', 'application/json')
      .send(JSON.stringify(tx()).replace('"amount":120.5', '"amount":1e999'))
      .expect(400);
    assert.ok(infinite.body.errors.some((e: { field: string }) => e.field === 'amount'));
  });

  it('batch: each transaction scored on its own, a bad one gets its own error', async () => {
    const res = await post('fraud-scores/batch', {
      transactions: [
        tx({ transactionId: 'a' }),
        tx({ transactionId: 'b', currency: 'ZZZ' }),
        tx({ transactionId: 'c', cardToken: '4111111111111111' }),
        tx({ transactionId: 'd', features: features(0.5) }),
      ],
    }).expect(200);
    assert.equal(res.body.scored, 2);
    assert.equal(res.body.failed, 2);
    const [a, b, c, d] = res.body.items;
    assert.equal(a.result.transactionId, 'a');
    assert.equal(b.error.code, 'VALIDATION_FAILED');
    assert.deepEqual(
      b.error.errors.map((e: { field: string }) => e.field),
      ['currency'],
    );
    assert.equal(c.error.code, 'PAN_DETECTED');
    assert.equal(d.result.transactionId, 'd');
    // The same transaction scores the same alone and in a batch.
    const single = (await post('fraud-scores', tx({ transactionId: 'a' })).expect(200)).body;
    assert.equal(a.result.fraudProbability, single.fraudProbability);
    assert.deepEqual(a.result.topFeatures, single.topFeatures);
  });

  it('batch: a repeated transactionId is scored once; each later item with it gets its own error naming the first', async () => {
    const res = await post('fraud-scores/batch', {
      transactions: [
        tx({ transactionId: 'dup-a' }),
        tx({ transactionId: 'dup-b' }),
        tx({ transactionId: 'dup-a' }), // the same transaction again
        tx({ transactionId: 'dup-b', amount: 9_999, features: features(0.5) }), // another one under the same id
        tx({ transactionId: 'dup-c' }),
        tx({ transactionId: 'dup-a', amount: 1 }), // names the scored item, not the repeat before it
      ],
    }).expect(200);
    assert.equal(res.body.scored, 3);
    assert.equal(res.body.failed, 3);
    const items = res.body.items as Array<{ index: number; result?: { transactionId: string }; error?: unknown }>;
    assert.deepEqual(
      items.map((i) => [i.index, i.result?.transactionId]),
      [
        [0, 'dup-a'],
        [1, 'dup-b'],
        [2, undefined],
        [3, undefined],
        [4, 'dup-c'],
        [5, undefined],
      ],
    );
    const duplicate = (first: number) => ({
      code: 'DUPLICATE_TRANSACTION_ID',
      detail: `transactionId: already sent as item ${first} of this batch`,
      errors: [{ field: 'transactionId', reason: `already sent as item ${first} of this batch` }],
    });
    assert.deepEqual([items[2].error, items[3].error, items[5].error], [duplicate(0), duplicate(1), duplicate(0)]);
    // The scored ones score as they would alone.
    const single = (await post('fraud-scores', tx({ transactionId: 'dup-b' })).expect(200)).body;
    assert.equal(res.body.items[1].result.fraudProbability, single.fraudProbability);
    const [row] = await app
      .get(DataSource)
      .query('SELECT output_summary FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
    assert.deepEqual(
      [row.output_summary.transactions, row.output_summary.scored, row.output_summary.failed],
      [6, 3, 3],
    );
    const decisions = Object.values(row.output_summary.decisions as Record<string, number>);
    assert.equal(
      decisions.reduce((a, b) => a + b, 0),
      3,
    );
  });

  it('batch: an invalid item holds no transactionId; the first valid item with it is the one scored', async () => {
    const res = await post('fraud-scores/batch', {
      transactions: [
        tx({ transactionId: 'inv-a', currency: 'ZZZ' }),
        tx({ transactionId: 'inv-a' }),
        tx({ transactionId: 'inv-a', cardToken: '4111111111111111' }),
        tx({ transactionId: 'inv-a' }),
      ],
    }).expect(200);
    const outcomes = res.body.items.map(
      (i: { result?: unknown; error?: { code: string } }) => i.error?.code ?? 'scored',
    );
    assert.deepEqual(outcomes, ['VALIDATION_FAILED', 'scored', 'PAN_DETECTED', 'DUPLICATE_TRANSACTION_ID']);
    assert.deepEqual(res.body.items[3].error.errors, [
      { field: 'transactionId', reason: 'already sent as item 1 of this batch' },
    ]);
    assert.deepEqual([res.body.scored, res.body.failed], [1, 3]);
  });

  it('batch: its audit row holds the keyed digest of the whole body (in canonical form) and the counts', async () => {
    const body = { transactions: [tx({ transactionId: 'x' }), tx({ transactionId: 'y', currency: 'ZZZ' })] };
    const res = await post('fraud-scores/batch', body).expect(200);
    const [row] = await app
      .get(DataSource)
      .query('SELECT * FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
    assert.equal(row.action, 'fraud.score-batch');
    assert.equal(row.outcome, 'ok');
    // The same input with its keys in another order has the same digest.
    const reordered = reversed(body);
    assert.notEqual(JSON.stringify(reordered), JSON.stringify(body));
    assert.equal(row.input_digest, app.get(AuditInputDigester).digest([canonicalBytes(reordered)]));
    assert.equal(row.output_summary.transactions, 2);
    assert.equal(row.output_summary.scored, 1);
    assert.equal(row.output_summary.failed, 1);
  });

  it('batch: a large body (its digest worked out on the digest thread from the text sent) has the same digest, and replays by it', async () => {
    // Keys in another order, whitespace, escapes and numbers written otherwise than JSON writes them: the row
    // holds the keyed digest of the canonical form, as for a small body.
    const items = Array.from({ length: 300 }, (_, i) => tx({ transactionId: `large-${i}` }));
    items.push({ ...tx({ transactionId: 'odd' }), amount: 1e21, note: 'caf\u00e9 \ud83d\ude00 "quoted"\n' });
    const body = { transactions: items };
    const text = JSON.stringify(reversed(body), null, 1).replace(
      '"amount": 1e+21',
      '"amount": 1000000000000000000000.0',
    );
    assert.ok(text.length > 100_000, 'large enough for the digest thread');
    const send = (key?: string) => {
      const req = http
        .post('/v1/finance/fraud-scores/batch')
        .set('Authorization', engine)
        .set('Content-Type', 'application/json');
      if (key) void req.set('Idempotency-Key', key);
      return req.send(text);
    };
    const expected = app.get(AuditInputDigester).digest([canonicalBytes(body)]);
    const first = await send().expect(200);
    assert.equal(first.body.items.length, 301);
    // An answer of 301 items is written in pieces (piecewiseJson): the same JSON, type and length as a whole one.
    assert.equal(first.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(first.text, JSON.stringify(first.body));
    assert.equal(Number(first.headers['content-length']), Buffer.byteLength(first.text));
    const keyed = await send('large-batch-1').expect(200);
    const replay = await send('large-batch-1').expect(200);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.deepEqual(replay.body, keyed.body);
    const rows = await app
      .get(DataSource)
      .query<Array<{ input_digest: string }>>('SELECT input_digest FROM audit_events WHERE request_id = ANY($1)', [
        [first, keyed, replay].map((r) => r.headers['x-request-id']),
      ]);
    assert.deepEqual(
      rows.map((r) => r.input_digest),
      [expected, expected, expected],
    );
  });

  it('batch: a body over 256 KiB (parsed in pieces) is scored, audited with the same digest, and refuses a prototype key', async () => {
    const items = Array.from({ length: 1200 }, (_, i) => tx({ transactionId: `pieces-${i}` }));
    const body = { transactions: items };
    const text = JSON.stringify(reversed(body));
    assert.ok(text.length > 256 * 1024, 'large enough to be parsed in pieces');
    const send = (payload: string) =>
      http
        .post('/v1/finance/fraud-scores/batch')
        .set('Authorization', engine)
        .set('Content-Type', 'application/json')
        .send(payload);
    const res = await send(text).expect(200);
    assert.equal(res.body.items.length, 1200);
    assert.deepEqual(
      res.body.items.map((i: { result?: { transactionId: string } }) => i.result?.transactionId),
      items.map((_, i) => `pieces-${i}`),
    );
    const [row] = await app
      .get(DataSource)
      .query<Array<{ input_digest: string }>>('SELECT input_digest FROM audit_events WHERE request_id = $1', [
        res.headers['x-request-id'],
      ]);
    assert.equal(row.input_digest, app.get(AuditInputDigester).digest([canonicalBytes(body)]));
    // A prototype key in an item in the middle of the body: refused as the whole body's parse refuses it.
    const at = text.lastIndexOf('{', text.indexOf('"pieces-600"'));
    assert.ok(at > 100_000 && at < text.length - 100_000, 'in the middle');
    const poisoned = `${text.slice(0, at)}{"__proto__":{"x":1},${text.slice(at + 1)}`;
    const refused = await send(poisoned).expect(400);
    assert.equal(refused.body.code, 'MALFORMED_JSON');
  });

  it('batch: more than 10,000 transactions is refused naming the field', async () => {
    const res = await post('fraud-scores/batch', { transactions: Array.from({ length: 10_001 }, () => ({})) }).expect(
      400,
    );
    assert.ok(res.body.errors.some((e: { field: string }) => e.field === 'transactions'));
  });

  it('credit: probability, grade, decision and at most four adverse-action reasons', async () => {
    const res = await post('credit-assessments', APPLICANT).expect(200);
    const { probabilityOfDefault: p, grade, decision, reasons } = res.body;
    assert.ok(p > 0 && p < 1);
    assert.match(grade, /^[A-E]$/);
    const { review, decline } = CREDIT_THRESHOLDS;
    assert.equal(decision, p >= decline ? 'decline' : p >= review ? 'refer' : 'approve');
    assert.ok(reasons.length >= 1 && reasons.length <= 4);
    assert.equal(reasons[0].code, 'RC01'); // two months late on the last two statements
    assert.equal(reasons[0].text, 'Recent payments delayed or missed');
    const good = await post('credit-assessments', {
      ...APPLICANT,
      creditLimit: 300000,
      repaymentStatus: [-1, -1, -1, -1, -1, -1],
      paymentAmounts: [48000, 47000, 46000, 45000, 44000, 43000],
    }).expect(200);
    assert.ok(good.body.probabilityOfDefault < p);
    assert.equal(good.body.decision, 'approve');
  });

  it('credit: a reason is given only where its text is true of the applicant', async () => {
    // Nothing owed, every month paid in full, nothing paid: the model finds this risky (idle accounts default
    // more often in its data), but the balances are not high and no payment was late.
    const idle = {
      creditLimit: 100000,
      education: 'university',
      repaymentStatus: [-1, -1, -1, -1, -1, -1],
      billAmounts: [0, 0, 0, 0, 0, 0],
      paymentAmounts: [0, 0, 0, 0, 0, 0],
    };
    const res = await post('credit-assessments', idle).expect(200);
    const codes = (res.body.reasons as Array<{ code: string }>).map((r) => r.code);
    assert.ok(codes.length >= 1, JSON.stringify(res.body));
    for (const untrue of ['RC01', 'RC02', 'RC03']) assert.ok(!codes.includes(untrue), `${untrue} in ${codes.join()}`);
    assert.ok(codes.includes('RC07'), codes.join()); // low or no recent use of the credit line
    // A credit balance (a negative bill) is no high outstanding balance either.
    const credit = await post('credit-assessments', {
      ...idle,
      billAmounts: [-10000, -10000, -10000, -10000, -10000, -10000],
    });
    assert.ok(!(credit.body.reasons as Array<{ code: string }>).some((r) => r.code === 'RC03'));
  });

  it('credit: sex, marital status and age are refused, so they cannot influence a decision', async () => {
    const res = await post('credit-assessments', { ...APPLICANT, sex: 2, marriage: 1, age: 35 }).expect(400);
    assert.deepEqual(res.body.errors.map((e: { field: string }) => e.field).sort(), ['age', 'marriage', 'sex']);
    const ranges = await post('credit-assessments', {
      ...APPLICANT,
      repaymentStatus: [10, 0, 0, 0, 0],
      education: 'phd',
    }).expect(400);
    const fields = ranges.body.errors.map((e: { field: string }) => e.field);
    assert.ok(fields.includes('repaymentStatus') && fields.includes('education'), String(fields));
    assert.ok(fields.includes('repaymentStatus[0]'), String(fields));
  });

  it('credit batch: each application assessed on its own, as the single route assesses it; a bad one gets its own error', async () => {
    const idle = {
      ...APPLICANT,
      creditLimit: 300000,
      repaymentStatus: [-1, -1, -1, -1, -1, -1],
      paymentAmounts: [48000, 47000, 46000, 45000, 44000, 43000],
    };
    const res = await post('credit-assessments/batch', {
      applications: [
        { ...APPLICANT, applicationId: 'app-1' },
        { ...APPLICANT, applicationId: 'app-2', creditLimit: -5 },
        { ...idle, applicationId: 'app-3' },
        { ...idle, applicationId: 'app-1' },
        7,
        { ...APPLICANT, applicationId: 'app-6', reference: '4111 1111 1111 1111' },
        { ...APPLICANT, applicationId: 'app-7', age: 35 },
        { ...APPLICANT },
      ],
    }).expect(200);
    const outcome = (item: { result?: unknown; error?: { code: string; errors: Array<{ field: string }> } }) =>
      item.result ? 'assessed' : `${item.error!.code} ${item.error!.errors.map((e) => e.field).join(',')}`;
    assert.deepEqual(res.body.items.map(outcome), [
      'assessed',
      'VALIDATION_FAILED creditLimit',
      'assessed',
      'DUPLICATE_APPLICATION_ID applicationId',
      'VALIDATION_FAILED (item)',
      'PAN_DETECTED reference',
      'VALIDATION_FAILED age',
      'VALIDATION_FAILED applicationId',
    ]);
    assert.deepEqual(
      res.body.items.map((i: { index: number }) => i.index),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    assert.deepEqual(res.body.items[3].error.errors, [
      { field: 'applicationId', reason: 'already sent as item 0 of this batch' },
    ]);
    assert.deepEqual([res.body.assessed, res.body.failed], [2, 6]);
    assert.deepEqual(res.body.model, { name: 'credit-default', version: '1' });
    assert.match(res.body.requestId, /^[0-9a-f-]{36}$/);
    // The same application is assessed the same alone and in a batch: probability, grade, decision and reasons.
    for (const [item, applicant] of [
      [res.body.items[0], APPLICANT],
      [res.body.items[2], idle],
    ] as const) {
      const { requestId, ...single } = (await post('credit-assessments', applicant).expect(200)).body;
      assert.ok(requestId);
      assert.deepEqual(item.result, { applicationId: item.result.applicationId, ...single });
    }
    assert.notEqual(res.body.items[0].result.decision, res.body.items[2].result.decision);
  });

  it('credit batch: audited with the keyed digest of the whole body and the counts, never an application', async () => {
    const body = {
      applications: [
        { ...APPLICANT, applicationId: 'audit-app-1' },
        { ...APPLICANT, applicationId: 'audit-app-2', education: 'kindergarten' },
      ],
    };
    const res = await post('credit-assessments/batch', body).expect(200);
    const [row] = await app
      .get(DataSource)
      .query('SELECT * FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
    assert.equal(row.action, 'credit.assess-batch');
    assert.equal(row.outcome, 'ok');
    assert.equal(row.model_name, 'credit-default');
    assert.equal(row.input_digest, app.get(AuditInputDigester).digest([canonicalBytes(reversed(body))]));
    const decision = res.body.items[0].result.decision as string;
    assert.deepEqual(row.output_summary, {
      applications: 2,
      assessed: 1,
      failed: 1,
      decisions: { approve: 0, refer: 0, decline: 0, [decision]: 1 },
    });
    assert.ok(!JSON.stringify(row).includes('audit-app-'), 'an application id in the audit row');
  });

  it('credit batch: more than 1,000 applications, an empty list or another envelope field is refused naming the field; a card number in the envelope is 422', async () => {
    const tooMany = await post('credit-assessments/batch', {
      applications: Array.from({ length: 1001 }, () => ({})),
    }).expect(400);
    assert.deepEqual(tooMany.body.errors, [{ field: 'applications', reason: 'must contain at most 1000 items' }]);
    const empty = await post('credit-assessments/batch', { applications: [] }).expect(400);
    assert.deepEqual(empty.body.errors, [{ field: 'applications', reason: 'must contain at least 1 item' }]);
    const extra = await post('credit-assessments/batch', { applications: [APPLICANT], campaign: 'x' }).expect(400);
    assert.deepEqual(extra.body.errors, [{ field: 'campaign', reason: 'is not an accepted field' }]);
    const pan = await post('credit-assessments/batch', {
      applications: [APPLICANT],
      note: '4111111111111111',
    }).expect(422);
    assert.equal(pan.body.code, 'PAN_DETECTED');
    assert.deepEqual(
      pan.body.errors.map((e: { field: string }) => e.field),
      ['note'],
    );
    await post('credit-assessments/batch', { applications: [APPLICANT] }, bearer(tokenFor(['plant-operator']))).expect(
      403,
    );
  });

  it('needs finance:score; every score is audited with a digest, never the raw features', async () => {
    await post('fraud-scores', tx(), bearer(tokenFor(['plant-operator']))).expect(403);
    const res = await post('fraud-scores', tx({ transactionId: 'audited-1' })).expect(200);
    const [row] = await app
      .get(DataSource)
      .query('SELECT * FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
    assert.equal(row.action, 'fraud.score');
    assert.equal(row.actor, 'risk-engine-1');
    assert.equal(row.model_name, 'card-fraud');
    assert.match(row.input_digest, /^[0-9a-f]{64}$/);
    assert.deepEqual(row.output_summary, { fraudProbability: res.body.fraudProbability, decision: res.body.decision });
    // Less the hex the row holds by design (ids, digest, hashes), where any four digits turn up now and then.
    const { request_id, writer_id, input_digest, prev_hash, hash, ...rest } = row as Record<string, unknown>;
    assert.ok([request_id, writer_id, input_digest, prev_hash, hash].every((v) => typeof v === 'string'));
    const stored = JSON.stringify(rest);
    assert.ok(!stored.includes('tok_7f3a9c2e') && !stored.includes('5411'), 'raw request content in the audit row');
  });

  describe('Idempotency-Key', () => {
    const inferences = async (model = 'card-fraud'): Promise<number> => {
      const text = (
        await http
          .get('/metrics')
          .set('Authorization', bearer(tokenFor(['monitoring'])))
          .expect(200)
      ).text;
      const line = new RegExp(`gateway_inference_requests_total\\{model="${model}",version="1",outcome="ok"\\} (\\d+)`);
      return Number(line.exec(text)?.[1] ?? 0);
    };
    const keyed = (key: string, body: unknown, auth = engine) =>
      http
        .post('/v1/finance/fraud-scores')
        .set('Authorization', auth)
        .set('Idempotency-Key', key)
        .send(body as object);

    it('a retry with the same key and body gets the stored answer and is not scored again', async () => {
      const before = await inferences();
      const first = await keyed('retry-1', tx({ transactionId: 'idem-1' })).expect(200);
      assert.equal(first.headers['idempotent-replayed'], undefined);
      const again = await keyed('retry-1', tx({ transactionId: 'idem-1' })).expect(200);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      // The answer as first sent, byte for byte (its keys in the same order).
      assert.equal(again.text, first.text);
      assert.equal((await inferences()) - before, 1);
    });

    it('the same key with a different body is refused with 422', async () => {
      await keyed('retry-2', tx({ transactionId: 'idem-2' })).expect(200);
      const res = await keyed('retry-2', tx({ transactionId: 'idem-2', amount: 999 })).expect(422);
      assert.equal(res.body.code, 'IDEMPOTENCY_KEY_REUSED');
      assert.equal(res.body.errors[0].field, 'Idempotency-Key');
      // Its audit row names the body refused, for an auditor to tell it from the key's first body.
      const [row] = await app
        .get(DataSource)
        .query('SELECT input_digest FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
      const refused = tx({ transactionId: 'idem-2', amount: 999 });
      assert.equal(row.input_digest, app.get(AuditInputDigester).digest([canonicalBytes(refused)]));
    });

    it('two identical requests at once are scored once', async () => {
      const before = await inferences();
      const [a, b] = await Promise.all([
        keyed('concurrent-1', tx({ transactionId: 'idem-3' })),
        keyed('concurrent-1', tx({ transactionId: 'idem-3' })),
      ]);
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      assert.deepEqual(a.body, b.body);
      assert.equal([a, b].filter((r) => r.headers['idempotent-replayed'] === 'true').length, 1);
      assert.equal((await inferences()) - before, 1);
    });

    it("a request waiting on another with its key never gets the other's error: it is answered on its own", async () => {
      // Sent together: the invalid one claims the key first, fails and frees it; the valid one is then scored.
      for (let round = 0; round < 3; round++) {
        const [invalid, valid] = await Promise.all([
          keyed(`waits-${round}`, tx({ transactionId: `idem-w${round}`, amount: -1 })),
          keyed(`waits-${round}`, tx({ transactionId: `idem-w${round}` })),
        ]);
        assert.equal(invalid.status, 400);
        assert.equal(valid.status, 200, JSON.stringify(valid.body));
        assert.equal(valid.body.transactionId, `idem-w${round}`);
      }
    });

    it('keys are per caller; a failed first request frees its key; a malformed key is refused', async () => {
      const other = bearer(tokenFor(['risk-engine'], { sub: 'risk-engine-2' }));
      const mine = await keyed('shared-key', tx({ transactionId: 'idem-4' })).expect(200);
      const theirs = await keyed('shared-key', tx({ transactionId: 'idem-4', amount: 5 }), other).expect(200);
      assert.equal(theirs.headers['idempotent-replayed'], undefined);
      assert.notEqual(theirs.body.requestId, mine.body.requestId);

      await keyed('after-failure', tx({ transactionId: 'idem-5', currency: 'ZZZ' })).expect(400);
      await keyed('after-failure', tx({ transactionId: 'idem-5' })).expect(200);

      const bad = await keyed('has spaces', tx()).expect(400);
      assert.equal(bad.body.errors[0].field, 'Idempotency-Key');
      // `field: reason`, as every other refusal's detail reads.
      assert.equal(bad.body.detail, 'Idempotency-Key: must be 1-200 visible ASCII characters');
    });

    it('works on the batch route too', async () => {
      const body = { transactions: [tx({ transactionId: 'b1' }), tx({ transactionId: 'b2' })] };
      const send = () =>
        http
          .post('/v1/finance/fraud-scores/batch')
          .set('Authorization', engine)
          .set('Idempotency-Key', 'batch-1')
          .send(body);
      const first = await send().expect(200);
      const again = await send().expect(200);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      // The answer as first sent, byte for byte (its keys in the same order).
      assert.equal(again.text, first.text);
    });

    it('a credit batch retried with the same key gets the stored answer, assessed once, its replay audited with the counts', async () => {
      const before = await inferences('credit-default');
      const body = {
        applications: [
          { ...APPLICANT, applicationId: 'k-1' },
          { ...APPLICANT, applicationId: 'k-1' },
        ],
      };
      const send = () =>
        http
          .post('/v1/finance/credit-assessments/batch')
          .set('Authorization', engine)
          .set('Idempotency-Key', 'credit-batch-retry-1')
          .send(body);
      const first = await send().expect(200);
      const again = await send().expect(200);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal(again.text, first.text);
      assert.equal((await inferences('credit-default')) - before, 1);
      const [row] = await app
        .get(DataSource)
        .query('SELECT output_summary FROM audit_events WHERE request_id = $1', [again.headers['x-request-id']]);
      const decision = first.body.items[0].result.decision as string;
      assert.deepEqual(row.output_summary, {
        idempotentReplay: true,
        originalRequestId: first.body.requestId,
        assessed: 1,
        failed: 1,
        applications: 2,
        decisions: { approve: 0, refer: 0, decline: 0, [decision]: 1 },
      });
      // Another body with the key is refused, as on every finance route.
      await http
        .post('/v1/finance/credit-assessments/batch')
        .set('Authorization', engine)
        .set('Idempotency-Key', 'credit-batch-retry-1')
        .send({ applications: [{ ...APPLICANT, applicationId: 'k-2' }] })
        .expect(422);
    });

    describe('on credit assessments', () => {
      const assess = (key: string, body: unknown, auth = engine) =>
        http
          .post('/v1/finance/credit-assessments')
          .set('Authorization', auth)
          .set('Idempotency-Key', key)
          .send(body as object);
      const auditRow = async (requestId: string) =>
        (
          await app
            .get(DataSource)
            .query<Array<{ input_digest: string; output_summary: Record<string, unknown> }>>(
              'SELECT input_digest, output_summary FROM audit_events WHERE request_id = $1',
              [requestId],
            )
        )[0];

      it('a retry with the same key and body gets the stored answer, is not assessed again nor audited as a decision', async () => {
        const before = await inferences('credit-default');
        const first = await assess('credit-retry-1', APPLICANT).expect(200);
        assert.equal(first.headers['idempotent-replayed'], undefined);
        // The same application with its members in another order is the same request.
        const again = await assess('credit-retry-1', reversed(APPLICANT)).expect(200);
        assert.equal(again.headers['idempotent-replayed'], 'true');
        assert.equal(again.text, first.text);
        assert.equal((await inferences('credit-default')) - before, 1);
        const firstRow = await auditRow(first.headers['x-request-id']);
        const replayRow = await auditRow(again.headers['x-request-id']);
        assert.equal(firstRow.output_summary.idempotentReplay, undefined);
        assert.deepEqual(replayRow.output_summary, {
          idempotentReplay: true,
          originalRequestId: first.body.requestId,
          probabilityOfDefault: first.body.probabilityOfDefault,
          grade: first.body.grade,
          decision: first.body.decision,
          reasons: (first.body.reasons as Array<{ code: string }>).map((r) => r.code),
        });
        // The replay's row names the same input as the first's.
        assert.equal(replayRow.input_digest, firstRow.input_digest);
      });

      it('the same key with a different body is 422; two at once are assessed once', async () => {
        await assess('credit-retry-2', APPLICANT).expect(200);
        const res = await assess('credit-retry-2', { ...APPLICANT, creditLimit: 60000 }).expect(422);
        assert.equal(res.body.code, 'IDEMPOTENCY_KEY_REUSED');
        assert.equal(res.body.errors[0].field, 'Idempotency-Key');

        const before = await inferences('credit-default');
        const [a, b] = await Promise.all([
          assess('credit-concurrent-1', APPLICANT),
          assess('credit-concurrent-1', APPLICANT),
        ]);
        assert.deepEqual([a.status, b.status], [200, 200]);
        assert.deepEqual(a.body, b.body);
        assert.equal([a, b].filter((r) => r.headers['idempotent-replayed'] === 'true').length, 1);
        assert.equal((await inferences('credit-default')) - before, 1);
      });

      it("a key is its route's: the same key on fraud scores and on credit assessments are two requests", async () => {
        const fraud = await keyed('shared-across-routes', tx({ transactionId: 'idem-routes' })).expect(200);
        const credit = await assess('shared-across-routes', APPLICANT).expect(200);
        assert.equal(credit.headers['idempotent-replayed'], undefined);
        assert.equal(typeof credit.body.probabilityOfDefault, 'number');
        assert.notEqual(credit.body.requestId, fraud.body.requestId);
        // And each route's retry still gets its own answer back.
        const fraudAgain = await keyed('shared-across-routes', tx({ transactionId: 'idem-routes' })).expect(200);
        assert.equal(fraudAgain.text, fraud.text);
        const creditAgain = await assess('shared-across-routes', APPLICANT).expect(200);
        assert.equal(creditAgain.text, credit.text);
      });

      it('the header is checked as on the fraud routes; a failed first request frees its key', async () => {
        const bad = await assess('has spaces', APPLICANT).expect(400);
        assert.equal(bad.body.detail, 'Idempotency-Key: must be 1-200 visible ASCII characters');
        const pan = await assess('4111111111111111', APPLICANT).expect(422);
        assert.equal(pan.body.code, 'PAN_DETECTED');
        assert.equal(pan.body.errors[0].field, 'Idempotency-Key');
        const twice = await http
          .post('/v1/finance/credit-assessments')
          .set('Authorization', engine)
          .set('Idempotency-Key', ['credit-twice-1', 'credit-twice-2'] as unknown as string)
          .send(APPLICANT)
          .expect(400);
        assert.equal(twice.body.errors[0].field, 'Idempotency-Key');
        assert.equal(twice.body.errors[0].reason, 'given 2 times; send one key');

        await assess('credit-after-failure', { ...APPLICANT, creditLimit: -1 }).expect(400);
        const ok = await assess('credit-after-failure', APPLICANT).expect(200);
        assert.equal(ok.headers['idempotent-replayed'], undefined);
      });
    });

    it('every finance route reads the key before the body: a bad key is named first, a used key answers before the body is checked', async () => {
      const routes = [
        {
          path: 'fraud-scores',
          valid: tx({ transactionId: 'idem-order' }),
          invalid: tx({ amount: -1 }),
          field: 'amount',
        },
        {
          path: 'credit-assessments',
          valid: APPLICANT,
          invalid: { ...APPLICANT, creditLimit: -1 },
          field: 'creditLimit',
        },
      ];
      for (const { path, valid, invalid, field } of routes) {
        const send = (key: string, body: unknown) =>
          http
            .post(`/v1/finance/${path}`)
            .set('Authorization', engine)
            .set('Idempotency-Key', key)
            .send(body as object);
        // A malformed key with a bad body: the key is what is named (the body alone, with a good key, names its field).
        const both = await send('has spaces', invalid).expect(400);
        assert.deepEqual(
          both.body.errors.map((e: { field: string }) => e.field),
          ['Idempotency-Key'],
          path,
        );
        const bodyOnly = await send(`order-fresh-${path}`, invalid).expect(400);
        assert.equal(bodyOnly.body.errors[0].field, field, path);
        // A key already answered, sent with another body that is invalid: the key's 422, not the body's 400 ...
        const first = await send(`order-used-${path}`, valid).expect(200);
        const reused = await send(`order-used-${path}`, invalid).expect(422);
        assert.equal(reused.body.code, 'IDEMPOTENCY_KEY_REUSED', path);
        assert.equal(reused.body.errors[0].field, 'Idempotency-Key', path);
        // ... and the retry with the first body still gets the kept answer.
        const again = await send(`order-used-${path}`, valid).expect(200);
        assert.equal(again.headers['idempotent-replayed'], 'true', path);
        assert.equal(again.text, first.text, path);
      }
    });

    it('a batch with a repeated transactionId replays as first answered, its replay audited with the counts', async () => {
      const body = { transactions: [tx({ transactionId: 'rb-1' }), tx({ transactionId: 'rb-1', amount: 3 })] };
      const send = () =>
        http
          .post('/v1/finance/fraud-scores/batch')
          .set('Authorization', engine)
          .set('Idempotency-Key', 'batch-duplicate-1')
          .send(body);
      const first = await send().expect(200);
      assert.equal(first.body.items[1].error.code, 'DUPLICATE_TRANSACTION_ID');
      const again = await send().expect(200);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal(again.text, first.text);
      const [row] = await app
        .get(DataSource)
        .query('SELECT output_summary, input_digest FROM audit_events WHERE request_id = $1', [
          again.headers['x-request-id'],
        ]);
      assert.deepEqual(
        [row.output_summary.transactions, row.output_summary.scored, row.output_summary.failed],
        [2, 1, 1],
      );
      // The replay's row names the body it answered, as the first request's does.
      assert.equal(row.input_digest, app.get(AuditInputDigester).digest([canonicalBytes(body)]));
    });
  });
});

describe('finance: champion/challenger in shadow', () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  before(async () => {
    // The challengers: the same networks published as card-fraud and credit-default version 2, not the default.
    modelsDir = bundledModelsDir(['finance']);
    for (const name of ['card-fraud', 'credit-default']) {
      const v2 = join(modelsDir, 'finance', name, '2');
      cpSync(join(modelsDir, 'finance', name, '1'), v2, { recursive: true });
      const manifest = JSON.parse(readFileSync(join(v2, 'model.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(join(v2, 'model.json'), JSON.stringify({ ...manifest, version: '2', default: false }));
    }
    app = await createTestApp({ MODELS_DIR: modelsDir, FINANCE_SHADOW_MODELS: 'card-fraud=2,credit-default=2' });
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('the challenger is scored and audited beside the champion, never returned', async () => {
    const res = await request(app.getHttpServer())
      .post('/v1/finance/fraud-scores')
      .set('Authorization', bearer(tokenFor(['risk-engine'])))
      .send(tx())
      .expect(200);
    assert.deepEqual(res.body.model, { name: 'card-fraud', version: '1' });
    assert.ok(!JSON.stringify(res.body).includes('shadow'));
    const [row] = await app
      .get(DataSource)
      .query('SELECT output_summary FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
    assert.deepEqual(row.output_summary.shadow, {
      version: '2',
      probability: res.body.fraudProbability, // same network: the two agree
      decision: res.body.decision,
    });
  });

  it('credit: the challenger is audited beside the champion, per application and over a batch, never returned', async () => {
    const post = (path: string, body: object) =>
      request(app.getHttpServer())
        .post(`/v1/finance/${path}`)
        .set('Authorization', bearer(tokenFor(['risk-engine'])))
        .send(body)
        .expect(200);
    const summary = async (requestId: string): Promise<Record<string, unknown>> => {
      const rows = await app
        .get(DataSource)
        .query<Array<{ output_summary: Record<string, unknown> }>>(
          'SELECT output_summary FROM audit_events WHERE request_id = $1',
          [requestId],
        );
      return rows[0].output_summary;
    };
    const single = await post('credit-assessments', APPLICANT);
    assert.deepEqual(single.body.model, { name: 'credit-default', version: '1' });
    assert.ok(!JSON.stringify(single.body).includes('shadow'));
    assert.deepEqual((await summary(single.headers['x-request-id'])).shadow, {
      version: '2',
      probabilityOfDefault: single.body.probabilityOfDefault, // same network: the two agree
      decision: single.body.decision,
    });
    const batch = await post('credit-assessments/batch', {
      applications: [
        { ...APPLICANT, applicationId: 'a' },
        { ...APPLICANT, applicationId: 'b', creditLimit: 0 },
        { ...APPLICANT, applicationId: 'c', repaymentStatus: [-1, -1, -1, -1, -1, -1], creditLimit: 300000 },
      ],
    });
    assert.ok(!JSON.stringify(batch.body).includes('shadow'));
    const decisions = { approve: 0, refer: 0, decline: 0 };
    for (const item of batch.body.items) if (item.result) decisions[item.result.decision as keyof typeof decisions]++;
    assert.deepEqual((await summary(batch.headers['x-request-id'])).shadow, { version: '2', decisions, agreed: 2 });
  });

  it('a stuck challenger does not hold the answer: it goes out, audited without the verdict', async () => {
    // The challenger's run is held until the answer is in: the answer cannot have waited for it.
    const engine = app.get(InferenceEngine);
    const infer = engine.infer.bind(engine);
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => (release = resolve));
    engine.infer = (name, version, inputs, options) =>
      version === '2' ? held.then(() => infer(name, version, inputs, options)) : infer(name, version, inputs, options);
    try {
      for (const [path, body] of [
        ['fraud-scores', tx()],
        ['fraud-scores/batch', { transactions: [tx(), tx({ transactionId: 'tx-0002' })] }],
        ['credit-assessments', APPLICANT],
        ['credit-assessments/batch', { applications: [{ ...APPLICANT, applicationId: 'held-1' }] }],
      ] as const) {
        const res = await request(app.getHttpServer())
          .post(`/v1/finance/${path}`)
          .set('Authorization', bearer(tokenFor(['risk-engine'])))
          .send(body)
          .expect(200);
        const [row] = await app
          .get(DataSource)
          .query('SELECT output_summary FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
        assert.equal(row.output_summary.shadow, undefined, path);
      }
    } finally {
      engine.infer = infer;
      release();
    }
  });

  it('a probability that is not a number decides nothing: a challenger gives no verdict, a champion a 500, never approve', async () => {
    const engine = app.get(InferenceEngine);
    const infer = engine.infer.bind(engine);
    // The version `broken` answers NaN for every row, as a broken export would.
    const answeringNaN =
      (broken: string): typeof engine.infer =>
      async (name, version, inputs, options) => {
        const result = await infer(name, version, inputs, options);
        if (version === broken) (result.outputs.probability.data as Float32Array).fill(NaN);
        return result;
      };
    const post = (path: string, body: object) =>
      request(app.getHttpServer())
        .post(`/v1/finance/${path}`)
        .set('Authorization', bearer(tokenFor(['risk-engine'])))
        .send(body);
    try {
      engine.infer = answeringNaN('2');
      for (const [path, body] of [
        ['fraud-scores', tx()],
        ['fraud-scores/batch', { transactions: [tx(), tx({ transactionId: 'tx-0002' })] }],
      ] as const) {
        const res = await post(path, body).expect(200);
        const [row] = await app
          .get(DataSource)
          .query('SELECT output_summary FROM audit_events WHERE request_id = $1', [res.headers['x-request-id']]);
        assert.equal(row.output_summary.shadow, undefined, `${path}: ${JSON.stringify(row.output_summary)}`);
      }
      engine.infer = answeringNaN('1');
      for (const [path, body] of [
        ['fraud-scores', tx()],
        ['fraud-scores/batch', { transactions: [tx()] }],
        ['credit-assessments', APPLICANT],
      ] as const) {
        const res = await post(path, body);
        assert.equal(res.status, 500, `${path}: ${res.text}`);
        assert.equal(res.body.code, 'INFERENCE_FAILED');
      }
    } finally {
      engine.infer = infer;
    }
  });

  it('a challenger that is not live stops the boot', async () => {
    await assert.rejects(
      createTestApp({ MODELS_DIR: modelsDir, FINANCE_SHADOW_MODELS: 'card-fraud=7' }),
      /FINANCE_SHADOW_MODELS: card-fraud has no live version 7/,
    );
  });
});

describe('finance: a challenger with its own preprocessing', () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  const SHIFT = 5;
  before(async () => {
    // Version 3: the same network, retrained (as it were) on data whose V14 mean was SHIFT higher.
    modelsDir = bundledModelsDir(['finance']);
    const v3 = join(modelsDir, 'finance', 'card-fraud', '3');
    cpSync(join(modelsDir, 'finance', 'card-fraud', '1'), v3, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(v3, 'model.json'), 'utf8')) as {
      preprocessing: { features: Array<{ source: string; mean: number }> };
    };
    for (const f of manifest.preprocessing.features) if (f.source === 'V14') f.mean += SHIFT;
    writeFileSync(join(v3, 'model.json'), JSON.stringify({ ...manifest, version: '3', default: false }));
    app = await createTestApp({ MODELS_DIR: modelsDir, FINANCE_SHADOW_MODELS: 'card-fraud=3' });
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('the challenger standardises the request with its own means, not the champion rows', async () => {
    const score = (body: unknown) =>
      request(app.getHttpServer())
        .post('/v1/finance/fraud-scores')
        .set('Authorization', bearer(tokenFor(['risk-engine'])))
        .send(body as object)
        .expect(200);
    const asSent = await score(tx({ features: { ...features(), v14: -3 } }));
    // With V14's mean SHIFT higher, the challenger reads v14 as the champion reads v14 - SHIFT.
    const shifted = await score(tx({ features: { ...features(), v14: -3 - SHIFT } }));
    assert.ok(Math.abs(asSent.body.fraudProbability - shifted.body.fraudProbability) > 1e-3);
    const [row] = await app
      .get(DataSource)
      .query('SELECT output_summary FROM audit_events WHERE request_id = $1', [asSent.headers['x-request-id']]);
    assert.equal(row.output_summary.shadow.version, '3');
    assert.ok(
      Math.abs(row.output_summary.shadow.probability - shifted.body.fraudProbability) < 1e-5,
      `${row.output_summary.shadow.probability} vs ${shifted.body.fraudProbability}`,
    );
  });
});

describe('finance: a credit model the API cannot feed', () => {
  it('a challenger reading an input no application carries (AGE) stops the boot, as a fraud one does', async () => {
    const modelsDir = bundledModelsDir(['finance']);
    try {
      // Version 2: the same network, one column read from AGE, a protected attribute the API refuses as a field.
      const v2 = join(modelsDir, 'finance', 'credit-default', '2');
      cpSync(join(modelsDir, 'finance', 'credit-default', '1'), v2, { recursive: true });
      const manifest = JSON.parse(readFileSync(join(v2, 'model.json'), 'utf8')) as {
        preprocessing: { features: Array<{ source: string }> };
      };
      const education = manifest.preprocessing.features.filter((f) => f.source === 'EDUCATION');
      education[education.length - 1].source = 'AGE';
      writeFileSync(join(v2, 'model.json'), JSON.stringify({ ...manifest, version: '2', default: false }));
      await assert.rejects(
        createTestApp({ MODELS_DIR: modelsDir, FINANCE_SHADOW_MODELS: 'credit-default=2' }),
        /credit-default@2: the credit API has no field for the model's raw source "AGE"/,
      );
    } finally {
      rmSync(modelsDir, { recursive: true, force: true });
    }
  });
});
