import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { MAX_OBJECT_MEMBERS } from '../../src/common/errors/validation';
import { NO_SUCH_TIME } from '../../src/common/iso-time';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { bundledModelsDir } from '../fixtures/paths';
import { APPLICANT, features, tx } from '../fixtures/finance-data';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

const PAN = '4111111111111111';
/** Requests a review found harmful: card numbers where the PAN guard did not look, broken keys, crashes. */
/** An answer's text less its minted request id, which holds any four hex digits (1111 too) now and then. */
const withoutRequestId = (res: { text: string; body: { requestId?: unknown } }): string =>
  res.text.replaceAll(String(res.body.requestId), '');

describe('finance: hostile requests', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let db: DataSource;
  let modelsDir: string;
  const engine = bearer(tokenFor(['risk-engine'], { sub: 'risk-engine-h' }));
  before(async () => {
    modelsDir = bundledModelsDir(['finance']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
    http = request(app.getHttpServer());
    db = app.get(DataSource);
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) => {
    let req = http.post(`/v1/finance/${path}`).set('Authorization', engine);
    for (const [name, value] of Object.entries(headers)) req = req.set(name, value);
    return req.send(body as object);
  };
  const stored = async (): Promise<string> =>
    JSON.stringify([
      await db.query('SELECT * FROM idempotency_keys'),
      await db.query('SELECT request_id, output_summary FROM audit_events'),
    ]);

  describe('card numbers', () => {
    it('an X-Request-Id that looks like a card number is replaced by a minted id, never stored', async () => {
      const res = await post('fraud-scores', tx(), { 'X-Request-Id': PAN }).expect(200);
      assert.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
      assert.equal(res.body.requestId, res.headers['x-request-id']);
      for (const written of ['4111-1111-1111-1111', '4111:1111:1111:1111', 'tx-4111111111111111-01']) {
        const grouped = await post('fraud-scores', tx(), { 'X-Request-Id': written }).expect(200);
        assert.match(grouped.headers['x-request-id'], /^[0-9a-f-]{36}$/, written);
      }
      // The digits as written, not '4111' alone, which a minted request id holds one time in about 2,000.
      assert.doesNotMatch(await stored(), /4111[-: ]?1111/);
    });

    it('an Idempotency-Key that looks like a card number is refused with 422 naming the header', async () => {
      for (const path of ['fraud-scores', 'fraud-scores/batch']) {
        const body = path === 'fraud-scores' ? tx() : { transactions: [tx()] };
        const res = await post(path, body, { 'Idempotency-Key': PAN }).expect(422);
        assert.equal(res.body.code, 'PAN_DETECTED');
        assert.deepEqual(
          res.body.errors.map((e: { field: string }) => e.field),
          ['Idempotency-Key'],
        );
      }
      assert.ok(!(await stored()).includes(PAN));
    });

    it('a card number as a key is refused like one as a value, and never repeated in an answer', async () => {
      const single = await post('fraud-scores', tx({ [PAN]: 1 })).expect(422);
      assert.equal(single.body.code, 'PAN_DETECTED');
      assert.ok(!single.text.includes(PAN), single.text);
      const credit = await post('credit-assessments', { ...APPLICANT, [PAN]: 'x' }).expect(422);
      assert.equal(credit.body.code, 'PAN_DETECTED');
      assert.ok(!credit.text.includes(PAN), credit.text);
      const batch = await post(
        'fraud-scores/batch',
        { transactions: [tx({ transactionId: 'a' }), tx({ transactionId: 'b', merchant: { [PAN]: 'x' } })] },
        { 'Idempotency-Key': 'pan-key-1' },
      ).expect(200);
      assert.equal(batch.body.items[0].result.transactionId, 'a');
      assert.equal(batch.body.items[1].error.code, 'PAN_DETECTED');
      assert.deepEqual(batch.body.items[1].error.errors[0].field, 'merchant.(card number)');
      assert.ok(!batch.text.includes(PAN), batch.text);
      assert.ok(!(await stored()).includes(PAN));
    });

    it('a card number split by tabs, line breaks, zero-width spaces or en dashes, or in Arabic-Indic digits, is refused', async () => {
      // As a client's JSON writer escapes them: "4111\t1111...", "4111\u200b1111...", "\u0664\u0661...".
      const written = [
        '4111\t1111\t1111\t1111',
        '4111\r\n1111\r\n1111\r\n1111',
        '4111\u200b1111\u200b1111\u200b1111',
        '4111\u20131111\u20131111\u20131111',
        '\u0664\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661',
      ];
      for (const cardToken of written) {
        const res = await post('fraud-scores', tx({ cardToken })).expect(422);
        assert.deepEqual(res.body.errors, [
          { field: 'cardToken', reason: 'looks like a card number (PAN); never send one' },
        ]);
      }
      const batch = await post('fraud-scores/batch', {
        transactions: written.map((name, i) => tx({ transactionId: `tab-${i}`, merchant: { name } })),
      }).expect(200);
      for (const item of batch.body.items) {
        assert.equal(item.error?.code, 'PAN_DETECTED', JSON.stringify(item));
        assert.equal(item.error.errors[0].field, 'merchant.name');
      }
      const credit = await post('credit-assessments', { ...APPLICANT, education: written[0] }).expect(422);
      assert.equal(credit.body.errors[0].field, 'education');
    });

    it('a card number sent as a JSON number is refused in any spelling, also past 2^53 where a double loses digits', async () => {
      // 19 digits (and 16 past 2^53): JSON.parse reads other last digits, which fail the Luhn check.
      const raw = (path: string, text: string) =>
        http
          .post(`/v1/finance/${path}`)
          .set('Authorization', engine)
          .set('Content-Type', 'application/json')
          .send(text);
      const fraud = JSON.stringify(tx());
      const credit = JSON.stringify(APPLICANT);
      for (const spelling of [
        '6011000990139000007',
        '6011000990139000007.0',
        '6.011000990139000007e18',
        '9111000000000007.00',
      ]) {
        const single = await raw('fraud-scores', fraud.replace('"amount":120.5', `"amount":${spelling}`)).expect(422);
        assert.deepEqual(single.body.errors, [
          { field: 'amount', reason: 'looks like a card number (PAN); never send one' },
        ]);
        const unknown = await raw('credit-assessments', credit.replace('{', `{"ref":[${spelling}],`)).expect(422);
        assert.equal(unknown.body.errors[0].field, 'ref[0]');
        const batch = await raw(
          'credit-assessments/batch',
          `{"applications":[${credit.replace('{', '{"applicationId":"a",')},${credit.replace('{"creditLimit":50000', `{"applicationId":"b","creditLimit":${spelling}`)}]}`,
        );
        assert.equal(batch.status, 200, batch.text);
        assert.ok(batch.body.items[0].result, JSON.stringify(batch.body.items[0]));
        assert.equal(batch.body.items[1].error.code, 'PAN_DETECTED');
        assert.equal(batch.body.items[1].error.errors[0].field, 'creditLimit');
        const envelope = await raw('fraud-scores/batch', `{"transactions":[${fraud}],"note":${spelling}}`).expect(422);
        assert.equal(envelope.body.errors[0].field, 'note');
        // A body that is the number itself has no holder: it was told `(body): must be object`.
        for (const path of ['fraud-scores', 'credit-assessments', 'fraud-scores/batch', 'credit-assessments/batch']) {
          const whole = await raw(path, ` ${spelling}\n`);
          assert.equal(whole.status, 422, `${path} ${spelling}: ${whole.text}`);
          assert.equal(whole.body.code, 'PAN_DETECTED');
          assert.deepEqual(
            whole.body.errors.map((e: { field: string }) => e.field),
            ['(body)'],
          );
        }
      }
      // A number past 2^53 that is no card number is still refused as no object.
      const other = await raw('fraud-scores', '6011000990139000008').expect(400);
      assert.deepEqual(other.body.errors, [{ field: '(body)', reason: 'must be object' }]);
    });

    it("a card number in a batch's envelope is refused with 422 naming the field, as on the single route", async () => {
      for (const [body, field] of [
        [{ transactions: [tx()], note: '4111.1111.1111.1111' }, 'note'],
        [{ transactions: [tx()], [PAN]: 1 }, '(card number)'],
        [{ transactions: PAN }, 'transactions'],
      ] as const) {
        const res = await post('fraud-scores/batch', body).expect(422);
        assert.equal(res.body.code, 'PAN_DETECTED');
        assert.deepEqual(
          res.body.errors.map((e: { field: string }) => e.field),
          [field],
        );
        assert.ok(!withoutRequestId(res).includes('1111'), res.text);
      }
    });

    it('a query parameter is refused naming it, one that looks like a card number as PAN_DETECTED, before anything is scored', async () => {
      const bodies: Record<string, unknown> = {
        'fraud-scores': tx(),
        'fraud-scores/batch': { transactions: [tx()] },
        'credit-assessments': APPLICANT,
      };
      for (const [route, body] of Object.entries(bodies)) {
        const key = `query-${route}`;
        // A version pin the caller assumed was scored by the default model as if it applied.
        const pinned = await post(`${route}?version=2`, body, { 'Idempotency-Key': key });
        assert.equal(pinned.status, 400, `${route}: ${pinned.text.slice(0, 300)}`);
        assert.deepEqual(pinned.body.errors, [{ field: 'version', reason: 'is not an accepted field' }]);
        for (const [query, field] of [
          [`note=${encodeURIComponent('4111 1111 1111 1111')}`, 'note'],
          [`${PAN}=1`, '(card number)'],
        ]) {
          const res = await post(`${route}?${query}`, body, { 'Idempotency-Key': key });
          assert.equal(res.status, 422, `${route}?${query}: ${res.text.slice(0, 300)}`);
          assert.equal(res.body.code, 'PAN_DETECTED');
          assert.deepEqual(
            res.body.errors.map((e: { field: string }) => e.field),
            [field],
          );
          assert.ok(!withoutRequestId(res).includes('1111'), res.text);
        }
        // Nothing was scored: the key was never claimed, and the same request without the parameter is a first one.
        assert.equal((await db.query('SELECT 1 FROM idempotency_keys WHERE idempotency_key = $1', [key])).length, 0);
        const plain = await post(route, body, { 'Idempotency-Key': key }).expect(200);
        assert.equal(plain.headers['idempotent-replayed'], undefined);
      }
    });

    it("a card number in a batch's envelope is refused before its Idempotency-Key, already answered or not", async () => {
      await post('fraud-scores/batch', { transactions: [tx()] }, { 'Idempotency-Key': 'envelope-pan-1' }).expect(200);
      for (const key of ['envelope-pan-1', 'envelope-pan-2']) {
        const res = await post(
          'fraud-scores/batch',
          { transactions: [tx()], note: '4111 1111 1111 1111' },
          { 'Idempotency-Key': key },
        );
        assert.equal(res.status, 422, res.text.slice(0, 300));
        assert.equal(res.body.code, 'PAN_DETECTED', key);
        assert.deepEqual(res.body.errors, [
          { field: 'note', reason: 'looks like a card number (PAN); never send one' },
        ]);
        const [row] = await db.query('SELECT output_summary FROM audit_events WHERE request_id = $1', [
          res.headers['x-request-id'],
        ]);
        assert.deepEqual(row.output_summary, { reason: 'PAN_DETECTED' });
      }
      // The key that was never answered was never claimed.
      assert.equal(
        (await db.query(`SELECT 1 FROM idempotency_keys WHERE idempotency_key = 'envelope-pan-2'`)).length,
        0,
      );
    });
  });

  describe('Idempotency-Key', () => {
    /** Leaves the key's row as a gateway that crashed mid-request leaves it: pending, no answer. */
    const crashed = async (key: string, pendingUntil: Date | null): Promise<void> => {
      await db.query(
        `UPDATE idempotency_keys SET state = 'pending', response_status = NULL, response_body = NULL, pending_until = $2
         WHERE idempotency_key = $1`,
        [key, pendingUntil],
      );
      const rows: unknown[] = await db.query(
        `SELECT 1 FROM idempotency_keys WHERE idempotency_key = $1 AND state = 'pending'`,
        [key],
      );
      assert.equal(rows.length, 1);
    };

    it('keys are per tenant: two tenants with the same subject do not share a key', async () => {
      const as = (tenant: string) => bearer(tokenFor(['risk-engine'], { sub: 'shared-sub', tenant }));
      const keyed = (auth: string, body: unknown) =>
        http
          .post('/v1/finance/fraud-scores')
          .set('Authorization', auth)
          .set('Idempotency-Key', 'tenant-key')
          .send(body as object);
      await keyed(as('bank-a'), tx({ transactionId: 'ta' })).expect(200);
      const other = await keyed(as('bank-b'), tx({ transactionId: 'tb' })).expect(200);
      assert.equal(other.headers['idempotent-replayed'], undefined);
      assert.equal(other.body.transactionId, 'tb');
      const scopes: Array<{ scope: string }> = await db.query(
        'SELECT scope FROM idempotency_keys WHERE idempotency_key = $1',
        ['tenant-key'],
      );
      assert.equal(scopes.length, 2);
      for (const { scope } of scopes) assert.match(scope, /^[0-9a-f]{64}$/);
    });

    it('the longest subject and tenant a token may carry are answered and replayed, not a 500', async () => {
      // Longer ones, or ones with NUL, are refused when the token is read (401, see the JWT tests).
      for (const claims of [{ sub: 's'.repeat(256) }, { sub: 'sub-\u00e9\u{1f600}', tenant: 't'.repeat(256) }]) {
        const auth = bearer(tokenFor(['risk-engine'], claims));
        const send = () =>
          http.post('/v1/finance/fraud-scores').set('Authorization', auth).set('Idempotency-Key', 'odd-sub').send(tx());
        const first = await send().expect(200);
        const again = await send().expect(200);
        assert.equal(again.headers['idempotent-replayed'], 'true');
        assert.deepEqual(again.body, first.body);
      }
    });

    it('a replay is audited with the kept answer: model, decision summary and the first request id', async () => {
      const body = tx({ transactionId: 'replay-audit' });
      const first = await post('fraud-scores', body, { 'Idempotency-Key': 'replay-audit' }).expect(200);
      const again = await post('fraud-scores', body, { 'Idempotency-Key': 'replay-audit' }).expect(200);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      const [row] = await db.query(
        'SELECT model_name, model_version, output_summary FROM audit_events WHERE request_id = $1',
        [again.headers['x-request-id']],
      );
      assert.equal(row.model_name, 'card-fraud');
      assert.equal(row.model_version, '1');
      assert.deepEqual(row.output_summary, {
        idempotentReplay: true,
        originalRequestId: first.body.requestId,
        fraudProbability: first.body.fraudProbability,
        decision: first.body.decision,
      });
      const batch = { transactions: [tx({ transactionId: 'r1' }), tx({ transactionId: 'r2', currency: 'ZZZ' })] };
      const firstBatch = await post('fraud-scores/batch', batch, { 'Idempotency-Key': 'replay-audit-b' }).expect(200);
      const batchAgain = await post('fraud-scores/batch', batch, { 'Idempotency-Key': 'replay-audit-b' }).expect(200);
      const [batchRow] = await db.query('SELECT output_summary FROM audit_events WHERE request_id = $1', [
        batchAgain.headers['x-request-id'],
      ]);
      const decision = firstBatch.body.items[0].result.decision as string;
      assert.deepEqual(batchRow.output_summary, {
        idempotentReplay: true,
        originalRequestId: firstBatch.body.requestId,
        transactions: 2,
        scored: 1,
        failed: 1,
        decisions: { approve: 0, review: 0, decline: 0, [decision]: 1 },
      });
    });

    it('a key left pending by a crash is taken over once its lease has run out, not refused for the TTL', async () => {
      const body = tx({ transactionId: 'lease-1' });
      const first = await post('fraud-scores', body, { 'Idempotency-Key': 'lease-1' }).expect(200);
      await crashed('lease-1', new Date(Date.now() + 60_000));
      const busy = await post('fraud-scores', body, { 'Idempotency-Key': 'lease-1' }).expect(409);
      assert.equal(busy.body.code, 'IDEMPOTENCY_IN_PROGRESS');
      assert.equal(busy.headers['retry-after'], '1');
      // A refusal about the key names it, as 422 IDEMPOTENCY_KEY_REUSED does.
      assert.deepEqual(busy.body.errors, [
        { field: 'Idempotency-Key', reason: 'a request with this key is still being answered; retry' },
      ]);
      await crashed('lease-1', new Date(Date.now() - 1));
      const retried = await post('fraud-scores', body, { 'Idempotency-Key': 'lease-1' }).expect(200);
      assert.equal(retried.headers['idempotent-replayed'], undefined);
      assert.notEqual(retried.body.requestId, first.body.requestId);
      const [row] = await db.query(
        'SELECT state, pending_until, response_body FROM idempotency_keys WHERE idempotency_key = $1',
        ['lease-1'],
      );
      assert.equal(row.state, 'done');
      assert.equal(row.pending_until, null);
      assert.equal(row.response_body.requestId, retried.body.requestId);
      const replay = await post('fraud-scores', body, { 'Idempotency-Key': 'lease-1' }).expect(200);
      assert.equal(replay.headers['idempotent-replayed'], 'true');
    });

    it('a key sent in two header lines is refused naming the header, whatever the lines hold', async () => {
      // Node joins them ("a, b"): the answer said the key must be visible ASCII, which each line was.
      for (const path of ['fraud-scores', 'fraud-scores/batch']) {
        const body = path === 'fraud-scores' ? tx({ transactionId: 'two-1' }) : { transactions: [tx()] };
        for (const lines of [
          ['two-a', 'two-b'],
          ['two-a', 'two-a'],
        ]) {
          // superagent sends an array as one header line each; its types allow that for Cookie alone.
          const res = await post(path, body)
            .set('Idempotency-Key', lines as unknown as string)
            .expect(400);
          assert.deepEqual(res.body.errors, [{ field: 'Idempotency-Key', reason: 'given 2 times; send one key' }]);
        }
      }
      const kept: unknown[] = await db.query(`SELECT 1 FROM idempotency_keys WHERE idempotency_key LIKE 'two-%'`);
      assert.equal(kept.length, 0);
    });

    it('a pending key written before leases existed (no pending_until) is taken over too', async () => {
      const body = tx({ transactionId: 'lease-2' });
      await post('fraud-scores', body, { 'Idempotency-Key': 'lease-2' }).expect(200);
      await crashed('lease-2', null);
      const retried = await post('fraud-scores', body, { 'Idempotency-Key': 'lease-2' }).expect(200);
      assert.equal(retried.headers['idempotent-replayed'], undefined);
    });
  });

  it('batch items with NUL or a lone surrogate in a key are answered, kept and replayed with U+FFFD', async () => {
    const body = {
      transactions: [
        tx({ transactionId: 'a' }),
        tx({ transactionId: 'b', 'x\u0000y': 1 }),
        tx({ transactionId: 'c', merchant: { '\ud800z': 'x' } }),
      ],
    };
    const send = () => post('fraud-scores/batch', body, { 'Idempotency-Key': 'broken-keys-1' }).expect(200);
    const first = await send();
    assert.equal(first.body.items[0].result.transactionId, 'a');
    assert.deepEqual(
      first.body.items.slice(1).map((i: { error: { errors: Array<{ field: string }> } }) => i.error.errors[0].field),
      ['x\uFFFDy', 'merchant.\uFFFDz'],
    );
    const again = await send();
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.deepEqual(again.body, first.body);
  });

  it('a field or key of millions of digit runs is refused for what it is, not a 500 from the card number scan', async () => {
    // The scan's regular expression overflowed the stack on 8 MB of `1 1 1 ...`: RangeError, 500 INTERNAL.
    const runs = '1 '.repeat(4_000_000);
    const value = await post('fraud-scores', tx({ cardToken: runs })).expect(400);
    assert.deepEqual(
      value.body.errors.map((e: { field: string }) => e.field),
      ['cardToken'],
    );
    const key = await post('credit-assessments', { ...APPLICANT, [runs]: 1 }).expect(400);
    assert.equal(key.body.errors[0].reason, 'is not an accepted field');
  });

  it('a body labelled application/octet-stream is the 415 naming Content-Type, not one error per byte', async () => {
    // The Open Inference Protocol's raw-bytes parser handed the Buffer on: each byte a field "is not accepted".
    for (const [path, body] of [
      ['fraud-scores', tx()],
      ['fraud-scores/batch', { transactions: [tx()] }],
      ['credit-assessments', APPLICANT],
      ['credit-assessments/batch', { applications: [{ ...APPLICANT, applicationId: 'a' }] }],
    ] as const) {
      const res = await http
        .post(`/v1/finance/${path}`)
        .set('Authorization', engine)
        .set('Content-Type', 'application/octet-stream')
        .send(Buffer.from(JSON.stringify(body)));
      assert.equal(res.status, 415, `${path}: ${res.text.slice(0, 300)}`);
      assert.deepEqual(res.body.errors, [
        { field: 'Content-Type', reason: '"application/octet-stream" is not a media type this route reads' },
      ]);
    }
  });

  it('a batch item that is not an object gets its own error; the others are scored', async () => {
    const res = await post('fraud-scores/batch', {
      transactions: [null, 1, 'a', [], tx({ transactionId: 'ok' }), '4111 1111 1111 1111', [PAN]],
    }).expect(200);
    assert.equal(res.body.scored, 1);
    assert.equal(res.body.failed, 6);
    const errors = res.body.items.map((i: { error?: { code: string; errors: Array<{ field: string }> } }) =>
      i.error ? `${i.error.code} ${i.error.errors.map((e) => e.field).join(',')}` : 'scored',
    );
    assert.deepEqual(errors, [
      'VALIDATION_FAILED (item)',
      'VALIDATION_FAILED (item)',
      'VALIDATION_FAILED (item)',
      'VALIDATION_FAILED (item)',
      'scored',
      'PAN_DETECTED (item)',
      'PAN_DETECTED [0]',
    ]);
    assert.ok(!withoutRequestId(res).includes('1111'), res.text);
  });

  it('a transaction, batch item or envelope of 50,000 unknown keys is refused naming the object, not each key', async () => {
    const wide = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`k${i}`, 1]));
    const reason = (members: number) => `has ${members} members, more than ${MAX_OBJECT_MEMBERS}`;
    const single = await post('fraud-scores', tx(wide)).expect(400);
    assert.equal(single.body.code, 'VALIDATION_FAILED');
    assert.deepEqual(single.body.errors, [{ field: '(body)', reason: reason(50_000 + Object.keys(tx()).length) }]);
    const batch = await post('fraud-scores/batch', { transactions: [tx(wide), tx({ transactionId: 'ok' })] }).expect(
      200,
    );
    assert.equal(batch.body.scored, 1);
    assert.deepEqual(batch.body.items[0].error.errors, [
      { field: '(item)', reason: reason(50_000 + Object.keys(tx()).length) },
    ]);
    const envelope = await post('fraud-scores/batch', { transactions: [tx()], ...wide }).expect(400);
    assert.deepEqual(envelope.body.errors, [{ field: '(body)', reason: reason(50_001) }]);
  });

  it('top features are only inputs that moved the probability; a saturated score lists no 0 as raising it', async () => {
    const features = { ...(tx().features as Record<string, number>), v4: 12, v10: -20, v12: -18, v14: -19 };
    const res = await post('fraud-scores', tx({ features })).expect(200);
    assert.equal(res.body.decision, 'decline');
    assert.ok(res.body.topFeatures.length <= 5);
    for (const f of res.body.topFeatures as Array<{ feature: string; contribution: number; direction: string }>) {
      assert.notEqual(f.contribution, 0, JSON.stringify(f));
      assert.equal(f.direction, f.contribution > 0 ? 'raises-risk' : 'lowers-risk', JSON.stringify(f));
    }
  });

  it('a merchant country ISO 3166-1 does not assign is refused 400 naming merchant.country, as an unknown currency', async () => {
    const currency = await post('fraud-scores', tx({ currency: 'ZZZ' })).expect(400);
    assert.deepEqual(currency.body.errors, [{ field: 'currency', reason: 'must be an ISO 4217 code' }]);
    const res = await post('fraud-scores', tx({ merchant: { country: 'ZZ' } })).expect(400);
    assert.equal(res.body.code, currency.body.code);
    // Each told the standard's list it takes, where a short enum's refusal lists the values.
    const reason = 'must be an ISO 3166-1 alpha-2 code';
    assert.deepEqual(res.body.errors, [{ field: 'merchant.country', reason }]);
    assert.equal(res.body.detail, `merchant.country: ${reason}`);
    const batch = await post('fraud-scores/batch', {
      transactions: [tx({ transactionId: 'zz', merchant: { country: 'ZZ' } }), tx({ transactionId: 'de' })],
    }).expect(200);
    assert.deepEqual(batch.body.items[0].error.errors, res.body.errors);
    assert.equal(batch.body.items[1].result.transactionId, 'de');
  });

  it('a credit-assessment body that is not an object is refused once, naming the body, as the fraud routes do', async () => {
    const raw = (path: string, body: string) =>
      http
        .post(`/v1/finance/${path}`)
        .set('Authorization', engine)
        .set('Content-Type', 'application/json')
        .send(body)
        .expect(400);
    for (const body of ['null', '"x"', '[1, 2]', '[]', '7', 'true']) {
      const fraud = await raw('fraud-scores', body);
      const res = await raw('credit-assessments', body);
      assert.equal(res.body.code, 'VALIDATION_FAILED', body);
      assert.deepEqual(res.body.errors, fraud.body.errors, body);
      assert.deepEqual(res.body.errors, [{ field: '(body)', reason: 'must be object' }], body);
      assert.equal(res.body.detail, fraud.body.detail, body);
    }
  });

  it('the fraud and credit routes word the same mistake in the same words, whatever the field', async () => {
    type Errors = { errors: Array<{ field: string; reason: string }> };
    /** A refusal's one error, its limits and allowed values left out: what is compared is the wording. */
    const words = ({ errors }: Errors, field: string): string => {
      assert.deepEqual(
        errors.map((e) => e.field),
        [field],
      );
      return errors[0].reason.replace(/\d+/g, '#').replace(/values: .*/, 'values: ...');
    };
    const single = async (fraud: unknown, credit: unknown): Promise<[Errors, Errors]> => [
      (await post('fraud-scores', fraud).expect(400)).body as Errors,
      (await post('credit-assessments', credit).expect(400)).body as Errors,
    ];
    /** The first item's error on each batch route. */
    const batch = async (fraud: unknown, credit: unknown): Promise<[Errors, Errors]> => [
      (await post('fraud-scores/batch', { transactions: [fraud] }).expect(200)).body.items[0].error as Errors,
      (await post('credit-assessments/batch', { applications: [credit] }).expect(200)).body.items[0].error as Errors,
    ];
    const application = { ...APPLICANT, applicationId: 'app-1' };
    const cases: Array<[string, Promise<[Errors, Errors]>, string, string, string]> = [
      [
        'left out',
        single(tx({ amount: undefined }), { ...APPLICANT, creditLimit: undefined }),
        'amount',
        'creditLimit',
        'is required',
      ],
      [
        'a number as text',
        single(tx({ amount: '12' }), { ...APPLICANT, creditLimit: '12' }),
        'amount',
        'creditLimit',
        'must be a number',
      ],
      [
        'null for a number',
        single(tx({ amount: null }), { ...APPLICANT, creditLimit: null }),
        'amount',
        'creditLimit',
        'must be a number',
      ],
      [
        'a number for a string',
        batch(tx({ transactionId: 5 }), { ...application, applicationId: 5 }),
        'transactionId',
        'applicationId',
        'must be text',
      ],
      [
        'no list where a list goes',
        Promise.all([
          post('fraud-scores/batch', { transactions: 'x' })
            .expect(400)
            .then((res) => res.body as Errors),
          post('credit-assessments', { ...APPLICANT, paymentAmounts: 'x' })
            .expect(400)
            .then((res) => res.body as Errors),
        ]),
        'transactions',
        'paymentAmounts',
        'must be a list',
      ],
      [
        'below the minimum',
        single(tx({ amount: -1 }), { ...APPLICANT, creditLimit: 0 }),
        'amount',
        'creditLimit',
        'must not be less than #',
      ],
      [
        'above the maximum',
        single(tx({ amount: 2e9 }), { ...APPLICANT, creditLimit: 2e7 }),
        'amount',
        'creditLimit',
        'must not be greater than #',
      ],
      [
        'a member below the minimum',
        single(tx({ features: { ...features(), v1: -5000 } }), { ...APPLICANT, billAmounts: [-2e7, 0, 0, 0, 0, 0] }),
        'features.v1',
        'billAmounts[0]',
        'must not be less than -#',
      ],
      [
        'not one of the values',
        single(tx({ channel: 'pigeon' }), { ...APPLICANT, education: 'phd' }),
        'channel',
        'education',
        'must be one of the following values: ...',
      ],
      ['an unknown field', single(tx({ sex: 1 }), { ...APPLICANT, sex: 1 }), 'sex', 'sex', 'is not an accepted field'],
      [
        'a pattern',
        batch(tx({ transactionId: 'a b' }), { ...application, applicationId: 'a b' }),
        'transactionId',
        'applicationId',
        'must be #-# letters, digits or ._:-',
      ],
      ['a body that is no object', single([], []), '(body)', '(body)', 'must be object'],
    ];
    for (const [kind, answers, fraudField, creditField, expected] of cases) {
      const [fraud, credit] = await answers;
      assert.equal(words(fraud, fraudField), expected, `fraud: ${kind}`);
      assert.equal(words(credit, creditField), expected, `credit: ${kind}`);
    }
    // The batches' own size, checked by one schema on both routes, in the words of credit's six-month arrays
    // (PLAIN_REASONS: `1 item`, `6 items`, where class-validator said `1 elements`).
    const empty = [
      (await post('fraud-scores/batch', { transactions: [] }).expect(400)).body as Errors,
      (await post('credit-assessments/batch', { applications: [] }).expect(400)).body as Errors,
      (await post('credit-assessments', { ...APPLICANT, billAmounts: [] }).expect(400)).body as Errors,
    ];
    assert.deepEqual(
      [words(empty[0], 'transactions'), words(empty[1], 'applications'), words(empty[2], 'billAmounts')],
      ['must contain at least # item', 'must contain at least # item', 'must contain at least # items'],
    );
  });

  it('a credit refusal names each field once: the reason does not repeat it', async () => {
    const res = await post('credit-assessments', {
      ...APPLICANT,
      creditLimit: 0,
      education: 'phd',
      repaymentStatus: [1, 0, 0, 0, 0, 99],
      sex: 2,
    }).expect(400);
    const errors = res.body.errors as Array<{ field: string; reason: string }>;
    assert.deepEqual(errors.map((e) => e.field).sort(), ['creditLimit', 'education', 'repaymentStatus[5]', 'sex']);
    for (const { field, reason } of errors) assert.ok(!reason.includes(field), `${field}: ${reason}`);
    assert.deepEqual(
      errors.filter((e) => e.field !== 'education'),
      [
        { field: 'sex', reason: 'is not an accepted field' },
        { field: 'creditLimit', reason: 'must not be less than 1' },
        { field: 'repaymentStatus[5]', reason: 'must not be greater than 9' },
      ],
    );
    assert.match(res.body.detail, /(^|; )education: must be one of the following values: graduate-school, /);
    // A field class-transformer would drop (named after Object.prototype) is refused in the same words.
    const proto = await post('credit-assessments', { ...APPLICANT, toString: 1 }).expect(400);
    assert.deepEqual(proto.body.errors, [{ field: 'toString', reason: 'is not an accepted field' }]);
  });

  it('an occurredAt that is not on the calendar or the clock, or whose offset is past 23:59, is refused naming the field', async () => {
    for (const occurredAt of [
      '2026-02-30T10:00:00Z',
      '2026-02-29T10:00:00Z',
      '2026-04-31T10:00:00+02:00',
      '2026-02-30t10:00:00z',
      '2026-12-31T24:00:00Z',
      '2016-12-31T23:59:60Z',
      '2026-11-23T10:00:00+25:00',
      '2026-11-23T10:00:00-2400',
      '2026-11-23T10:00+00:60',
    ]) {
      const res = await post('fraud-scores', tx({ occurredAt })).expect(400);
      // In the words of every other time the gateway refuses (common/iso-time).
      assert.deepEqual(res.body.errors, [{ field: 'occurredAt', reason: NO_SUCH_TIME }], occurredAt);
      assert.equal(res.body.detail, `occurredAt: ${NO_SUCH_TIME}`);
      const batch = await post('fraud-scores/batch', { transactions: [tx({ occurredAt })] }).expect(200);
      assert.deepEqual(batch.body.items[0].error.errors, res.body.errors);
    }
    for (const occurredAt of ['2024-02-29T23:59:59Z', '2026-11-23T10:00:00+23:59', '2026-11-23T10:00-2359']) {
      await post('fraud-scores', tx({ occurredAt })).expect(200);
    }
  });

  // A placeholder for "no date" is a time that exists, and was scored by its hour of day.
  it('an occurredAt before FINANCE_EARLIEST_TIME (a placeholder date) is a 422 TIME_OUT_OF_RANGE naming the field', async () => {
    const reason =
      'must not be before 2000-01-01T00:00:00Z (FINANCE_EARLIEST_TIME): a placeholder date such as 0001-01-01 or 1970-01-01 is not a real time';
    for (const occurredAt of ['0001-01-01T00:00:00Z', '1900-01-01T00:00:00Z', '1970-01-01T00:00:00Z']) {
      const res = await post('fraud-scores', tx({ occurredAt })).expect(422);
      assert.equal(res.body.code, 'TIME_OUT_OF_RANGE', occurredAt);
      assert.deepEqual(res.body.errors, [{ field: 'occurredAt', reason }], occurredAt);
      assert.equal(res.body.detail, `occurredAt: ${reason}`);
    }
    const batch = await post('fraud-scores/batch', {
      transactions: [
        tx({ transactionId: 'b-0' }),
        tx({ transactionId: 'b-1', occurredAt: '0001-01-01T00:00:00Z' }),
        tx({ transactionId: 'b-2', occurredAt: '1970-01-01T00:00:00Z' }),
      ],
    }).expect(200);
    assert.equal(batch.body.scored, 1);
    assert.deepEqual(
      (batch.body.items as Array<{ index: number; error?: unknown }>).filter((i) => i.error),
      [1, 2].map((index) => ({
        index,
        error: {
          code: 'TIME_OUT_OF_RANGE',
          detail: `occurredAt: ${reason}`,
          errors: [{ field: 'occurredAt', reason }],
        },
      })),
    );
    // A bad form is still told first, as a 400.
    await post('fraud-scores', tx({ occurredAt: '0001-02-30T00:00:00Z' })).expect(400);
    await post('fraud-scores', tx({ occurredAt: '2000-01-01T00:00:00Z' })).expect(200);
  });

  // A time that has not come yet (an acquirer's local time sent as UTC, a scheduled payment) was scored by its hour.
  it('an occurredAt further ahead of the clock than FINANCE_FUTURE_TOLERANCE_MS is a 422 TIME_OUT_OF_RANGE', async () => {
    const reason =
      "must not be more than 300000 ms ahead of the gateway's clock (FINANCE_FUTURE_TOLERANCE_MS): a time that has not come yet";
    const ahead = (ms: number): string => new Date(Date.now() + ms).toISOString();
    for (const occurredAt of [ahead(3_600_000), '2099-12-31T23:59:59Z', ahead(3_600_000).replace('Z', '+00:00')]) {
      const res = await post('fraud-scores', tx({ occurredAt })).expect(422);
      assert.equal(res.body.code, 'TIME_OUT_OF_RANGE', occurredAt);
      assert.deepEqual(res.body.errors, [{ field: 'occurredAt', reason }], occurredAt);
    }
    // Within the allowance (clocks that differ), and an offset that puts a local time ahead into the past, are scored.
    await post('fraud-scores', tx({ occurredAt: ahead(60_000) })).expect(200);
    const local = ahead(3_600_000).slice(0, 19);
    await post('fraud-scores', tx({ occurredAt: `${local}+01:00` })).expect(200);
    const batch = await post('fraud-scores/batch', {
      transactions: [tx({ transactionId: 'f-0' }), tx({ transactionId: 'f-1', occurredAt: '2099-12-31T23:59:59Z' })],
    }).expect(200);
    assert.equal(batch.body.scored, 1);
    assert.deepEqual(batch.body.items[1], {
      index: 1,
      error: { code: 'TIME_OUT_OF_RANGE', detail: `occurredAt: ${reason}`, errors: [{ field: 'occurredAt', reason }] },
    });
  });

  it('an occurredAt with a lower-case t and z (RFC 3339 5.6) is scored as the upper-case one', async () => {
    const upper = await post('fraud-scores', tx({ occurredAt: '2026-11-23T03:05:10Z' })).expect(200);
    const lower = await post('fraud-scores', tx({ occurredAt: '2026-11-23t03:05:10z' })).expect(200);
    assert.equal(lower.body.fraudProbability, upper.body.fraudProbability);
    const batch = await post('fraud-scores/batch', { transactions: [tx({ occurredAt: '2026-11-23t03:05:10+01:00' })] });
    assert.equal(batch.status, 200);
    assert.equal(batch.body.items[0].error, undefined, JSON.stringify(batch.body.items[0]));
  });
});

describe("finance: an Idempotency-Key's lease lasts as long as its model may take", () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  const TIMEOUT_MS = 120_000;
  before(async () => {
    // A manifest that lets a run wait two minutes in its queue (INFERENCE_TIMEOUT_MS unset).
    modelsDir = bundledModelsDir(['finance']);
    const path = join(modelsDir, 'finance', 'card-fraud', '1', 'model.json');
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as { batching: Record<string, unknown> };
    writeFileSync(path, JSON.stringify({ ...manifest, batching: { ...manifest.batching, timeoutMs: TIMEOUT_MS } }));
    app = await createTestApp({ MODELS_DIR: modelsDir });
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it("a pending key is held past the manifest's batching.timeoutMs, so a retry cannot take it over and score again", async () => {
    const engine = app.get(InferenceEngine);
    const infer = engine.infer.bind(engine);
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let started = () => undefined as void;
    const running = new Promise<void>((resolve) => (started = resolve));
    // The first request's run waits (as in a long queue) until the key's row has been read.
    engine.infer = (name, version, inputs, options) => {
      started();
      return held.then(() => infer(name, version, inputs, options));
    };
    try {
      const first = request(app.getHttpServer())
        .post('/v1/finance/fraud-scores')
        .set('Authorization', bearer(tokenFor(['risk-engine'])))
        .set('Idempotency-Key', 'slow-queue-1')
        .send(tx())
        .then((res) => res);
      await running;
      const [row] = await app
        .get(DataSource)
        .query<Array<{ state: string; created_at: Date; pending_until: Date }>>(
          `SELECT state, created_at, pending_until FROM idempotency_keys WHERE idempotency_key = 'slow-queue-1'`,
        );
      assert.equal(row.state, 'pending');
      const leaseMs = new Date(row.pending_until).getTime() - new Date(row.created_at).getTime();
      assert.ok(leaseMs > TIMEOUT_MS, `the key is held ${leaseMs} ms, the run may wait ${TIMEOUT_MS} ms`);
      release();
      assert.equal((await first).status, 200);
    } finally {
      release();
      engine.infer = infer;
    }
  });
});
