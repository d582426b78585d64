import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { FIRST_INCARNATION } from '../../src/domains/manufacturing/assets/asset.entity';
import { PlantRecordsRepository } from '../../src/domains/manufacturing/records/plant-records.repository';
import { PlantRetention } from '../../src/domains/manufacturing/records/plant-retention.service';
import { pressDeadLetter, storedPrediction } from '../fixtures/plant-data';
import { authedHttp, createTestApp } from '../fixtures/test-app';

const DAY = 24 * 60 * 60 * 1000;

describe('manufacturing: predictions and dead letters kept for MANUFACTURING_RETENTION_DAYS', () => {
  let app: NestFastifyApplication;
  before(async () => {
    app = await createTestApp({ MANUFACTURING_RETENTION_DAYS: '2' });
  });
  after(() => app.close());

  it('deletes what is older, in chunks, asset by asset, and keeps the rest', async () => {
    const records = app.get(PlantRecordsRepository);
    const now = Date.now();
    // 4,500 old predictions of one asset (more than two DELETEs' worth), a few of two others (one no longer
    // in the registry: its rows go all the same), and each asset's recent ones.
    await records.addPredictions([
      ...Array.from({ length: 4500 }, (_, i) => storedPrediction('press-1', now - 3 * DAY - i * 1000)),
      storedPrediction('press-1', now - DAY),
      storedPrediction('press-2', now - 5 * DAY),
      storedPrediction('press-2', now - 60_000),
      storedPrediction('gone-asset', now - 10 * DAY),
    ]);
    await records.addDeadLetters([pressDeadLetter(now - 3 * DAY, 'malformed'), pressDeadLetter(now - 1000, 'late')]);
    // Rows that gave no prediction (a young asset's opening window), kept for a restart: an old asset's go too.
    const opening = (at: number, first: boolean) => ({ timestamp: at, row: Float32Array.of(1, 2), first });
    await records.keepOpening('eng-old', FIRST_INCARNATION, '1', [
      opening(now - 4 * DAY, true),
      opening(now - 4 * DAY + 1000, false),
    ]);
    await records.keepOpening('eng-young', FIRST_INCARNATION, '1', [opening(now - 60_000, true)]);

    const gone = await app.get(PlantRetention).purge(new Date(now));
    assert.deepEqual(gone, { predictions: 4502, openingRows: 2, deadLetters: 1 });

    const db = app.get(DataSource);
    const left = await db.query<Array<{ asset_id: string; n: number }>>(
      'SELECT asset_id, count(*)::int AS n FROM manufacturing_predictions GROUP BY asset_id ORDER BY asset_id',
    );
    assert.deepEqual(left, [
      { asset_id: 'press-1', n: 1 },
      { asset_id: 'press-2', n: 1 },
    ]);
    const letters = await db.query<Array<{ reason: string }>>('SELECT reason FROM manufacturing_dead_letters');
    assert.deepEqual(letters, [{ reason: 'late' }]);
    const openingLeft = await db.query<Array<{ asset_id: string }>>('SELECT asset_id FROM manufacturing_opening_rows');
    assert.deepEqual(openingLeft, [{ asset_id: 'eng-young' }]);
    // Nothing more to delete; the metric counts what went.
    assert.deepEqual(await app.get(PlantRetention).purge(new Date(now)), {
      predictions: 0,
      openingRows: 0,
      deadLetters: 0,
    });
    const metrics = await authedHttp(app).get('/metrics').expect(200);
    assert.match(metrics.text, /gateway_manufacturing_rows_purged_total\{table="predictions"\} 4502/);
    assert.match(metrics.text, /gateway_manufacturing_rows_purged_total\{table="dead_letters"\} 1/);
    assert.match(metrics.text, /gateway_manufacturing_rows_purged_total\{table="opening_rows"\} 2/);
  });
});
