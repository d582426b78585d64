import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { APPLICANT, tx } from '../fixtures/finance-data';
import { bundledModelsDir } from '../fixtures/paths';
import { turbofanAsset } from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { zeroRowOf } from '../fixtures/oip-tensors';
import { bearer, tokenFor } from '../fixtures/test-auth';

interface Probe {
  method: 'post' | 'put';
  path: string;
  roles: string[];
  body: unknown;
  /** Where the unknown property sits, as the answer names it. */
  field: RegExp;
  /** A batch item's schema: the batch is answered 200 and the item's own error names the property. */
  item?: true;
}

/**
 * The OpenAPI document says `additionalProperties: false` on each object a JSON request body reaches;
 * here every such schema is checked against the route that reads it: a body with one unknown property
 * at that level is refused, naming it.
 */
describe('OpenAPI: request schemas are closed, and the routes refuse what they do not list', () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  let probes: Record<string, Probe>;
  before(async () => {
    modelsDir = bundledModelsDir(['finance', 'manufacturing']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
    const meta = await request(app.getHttpServer())
      .get('/v2/models/card-fraud')
      .set('Authorization', bearer(tokenFor(['ml-admin'])))
      .expect(200);
    const tensor = zeroRowOf(meta.body);
    const oip = (body: unknown, field: RegExp): Probe => ({
      method: 'post',
      path: '/v2/models/card-fraud/infer',
      roles: ['ml-admin'],
      body,
      field,
    });
    const fraud = (body: unknown, field: RegExp): Probe => ({
      method: 'post',
      path: '/v1/finance/fraud-scores',
      roles: ['risk-engine'],
      body,
      field,
    });
    const asset = turbofanAsset('engine-x');
    const assetWith = (patch: Record<string, unknown>, field: RegExp): Probe => ({
      method: 'put',
      path: '/v1/manufacturing/assets/engine-x',
      roles: ['ml-admin'],
      body: { ...asset, ...patch },
      field,
    });
    const sensors = asset.sensors as Array<Record<string, string>>;
    probes = {
      OipInferRequestDto: oip({ inputs: [tensor], extra: 1 }, /extra/),
      OipInputTensorDto: oip({ inputs: [{ ...tensor, extra: 1 }] }, /extra/),
      OipRequestedOutputDto: oip({ inputs: [tensor], outputs: [{ name: 'x', extra: 1 }] }, /extra/),
      FraudScoreRequestDto: fraud(tx({ extra: 1 }), /^extra$/),
      MerchantDto: fraud(tx({ merchant: { id: 'm-1', extra: 1 } }), /^merchant\.extra$/),
      FraudFeaturesDto: fraud(tx({ features: { ...(tx().features as object), v29: 1 } }), /^features\.v29$/),
      FraudBatchRequestDto: {
        method: 'post',
        path: '/v1/finance/fraud-scores/batch',
        roles: ['risk-engine'],
        body: { transactions: [tx()], extra: 1 },
        field: /^extra$/,
      },
      CreditBatchRequestDto: {
        method: 'post',
        path: '/v1/finance/credit-assessments/batch',
        roles: ['risk-engine'],
        body: { applications: [{ ...APPLICANT, applicationId: 'a-1' }], extra: 1 },
        field: /^extra$/,
      },
      CreditBatchApplicationDto: {
        method: 'post',
        path: '/v1/finance/credit-assessments/batch',
        roles: ['risk-engine'],
        body: { applications: [{ ...APPLICANT, applicationId: 'a-1', extra: 1 }] },
        field: /^extra$/,
        item: true,
      },
      CreditAssessmentRequestDto: {
        method: 'post',
        path: '/v1/finance/credit-assessments',
        roles: ['risk-engine'],
        body: {
          creditLimit: 50000,
          education: 'university',
          repaymentStatus: [0, 0, 0, 0, 0, 0],
          billAmounts: [1, 1, 1, 1, 1, 1],
          paymentAmounts: [1, 1, 1, 1, 1, 1],
          extra: 1,
        },
        field: /^extra$/,
      },
      AssetDto: assetWith({ extra: 1 }, /^extra$/),
      SensorMappingDto: assetWith(
        { sensors: [{ ...sensors[0], extra: 1 }, ...sensors.slice(1)] },
        /^sensors\[0\]\.extra$/,
      ),
      AlarmThresholdsDto: assetWith(
        { alarm: { raiseAt: 40, clearAt: 60, consecutive: 3, extra: 1 } },
        /^alarm\.extra$/,
      ),
      ReadingBatchDto: {
        method: 'post',
        path: '/v1/manufacturing/assets/engine-x/readings',
        roles: ['scada'],
        body: { readings: [{ timestamp: '2026-11-23T00:00:00Z', values: { s2: 642 } }], extra: 1 },
        field: /^extra$/,
      },
      ReadingDto: {
        method: 'post',
        path: '/v1/manufacturing/assets/engine-x/readings',
        roles: ['scada'],
        body: { readings: [{ timestamp: '2026-11-23T00:00:00Z', values: { s2: 642 }, extra: 1 }] },
        field: /^readings\[0\]\.extra$/,
      },
    };
    await request(app.getHttpServer())
      .put('/v1/manufacturing/assets/engine-x')
      .set('Authorization', bearer(tokenFor(['ml-admin'])))
      .send(asset)
      .expect(200);
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('every closed schema in the document has its probe, and each probe is refused naming the property', async () => {
    const doc = await request(app.getHttpServer()).get('/docs/openapi.json').expect(200);
    const schemas = (doc.body as { components: { schemas: Record<string, { additionalProperties?: unknown }> } })
      .components.schemas;
    const closed = Object.keys(schemas).filter((name) => schemas[name].additionalProperties === false);
    assert.deepEqual(closed.sort(), Object.keys(probes).sort());
    for (const [name, probe] of Object.entries(probes)) {
      const res = await request(app.getHttpServer())
        [probe.method](probe.path)
        .set('Authorization', bearer(tokenFor(probe.roles)))
        .send(probe.body as object);
      if (probe.item) assert.equal(res.status, 200, `${name}: ${res.text}`);
      else assert.ok(res.status === 400 || res.status === 422, `${name}: ${res.status} ${res.text}`);
      const body = (probe.item ? res.body.items[0].error : res.body) as {
        error?: string;
        errors?: Array<{ field: string }>;
      };
      const named = body.errors
        ? body.errors.some((e) => probe.field.test(e.field))
        : probe.field.test(body.error ?? '');
      assert.ok(named, `${name}: ${res.text}`);
    }
  });
});
