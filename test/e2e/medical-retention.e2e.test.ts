import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { MedicalFindingEntity } from '../../src/domains/medical/findings/medical-finding.entity';
import { MedicalFindingsRepository } from '../../src/domains/medical/findings/medical-findings.repository';
import { MedicalFindingsRetention } from '../../src/domains/medical/findings/medical-findings-retention.service';
import { authedHttp, createTestApp } from '../fixtures/test-app';

const DAY = 24 * 60 * 60 * 1000;

function finding(instance: string, analysedAt: number, tenant = ''): MedicalFindingEntity {
  return Object.assign(new MedicalFindingEntity(), {
    instanceKey: instance,
    modelName: 'breast-us-lesion',
    modelVersion: '1',
    tenant,
    studyKey: 'study-key',
    seriesKey: 'series-key',
    sealedRefs: Buffer.from('sealed'),
    findings: [{ frame: 0, lesions: [] }],
    analysedAt: new Date(analysedAt),
  });
}

describe('medical: stored findings kept for MEDICAL_FINDINGS_RETENTION_DAYS', () => {
  let app: NestFastifyApplication;
  before(async () => {
    app = await createTestApp({ MEDICAL_FINDINGS_RETENTION_DAYS: '2' });
  });
  after(() => app.close());

  it('deletes the findings analysed before the retention, in chunks, and keeps the rest', async () => {
    const repository = app.get(MedicalFindingsRepository);
    const now = Date.now();
    // More than two DELETEs' worth of old rows, of two tenants, and the recent ones beside them.
    await repository.save([
      ...Array.from({ length: 4500 }, (_, i) =>
        finding(`old-${i}`, now - 3 * DAY - i * 1000, i % 2 ? 'hospital-a' : ''),
      ),
      finding('recent', now - DAY),
      finding('recent', now - 60_000, 'hospital-a'),
    ]);

    const retention = app.get(MedicalFindingsRetention);
    assert.equal(await retention.purge(new Date(now)), 4500);
    const left = await app
      .get(DataSource)
      .query<Array<{ instance_key: string; tenant: string }>>(
        'SELECT instance_key, tenant FROM medical_findings ORDER BY tenant',
      );
    assert.deepEqual(left, [
      { instance_key: 'recent', tenant: '' },
      { instance_key: 'recent', tenant: 'hospital-a' },
    ]);
    // Nothing more to delete; the metric counts what went.
    assert.equal(await retention.purge(new Date(now)), 0);
    const metrics = await authedHttp(app).get('/metrics').expect(200);
    assert.match(metrics.text, /gateway_medical_findings_purged_total 4500/);
  });
});
