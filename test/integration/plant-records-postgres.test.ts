import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { PlantRecordsRepository } from '../../src/domains/manufacturing/records/plant-records.repository';
import { PlantRetention } from '../../src/domains/manufacturing/records/plant-retention.service';
import { pressDeadLetter, storedPrediction } from '../fixtures/plant-data';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { createTestApp } from '../fixtures/test-app';

const DATABASE_URL = process.env.DATABASE_URL;
const DAY = 24 * 60 * 60 * 1000;

describe(
  'manufacturing records on a PostgreSQL server: retention and the dead-letter budget',
  { skip: DATABASE_URL ? false : 'DATABASE_URL is not set' },
  () => {
    let scratch: ScratchDatabase;
    before(async () => {
      scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_plant');
    });
    after(() => scratch?.drop());

    it('deletes old predictions and dead letters in chunks, and writes the summary of refused input at shutdown', async () => {
      const now = Date.now();
      const app = await createTestApp({
        DATABASE_URL: scratch.url,
        MANUFACTURING_RETENTION_DAYS: '2',
        MANUFACTURING_DEAD_LETTER_LIMIT: '2',
      });
      try {
        const records = app.get(PlantRecordsRepository);
        await records.addPredictions([
          ...Array.from({ length: 4500 }, (_, i) => storedPrediction('press-1', now - 3 * DAY - i * 1000)),
          storedPrediction('press-2', now, 0.9),
        ]);
        await records.addDeadLetters([
          pressDeadLetter(now - 3 * DAY, 'held-too-long'),
          ...[1, 2, 3, 4, 5].map((i) => pressDeadLetter(now + i, 'malformed')),
        ]);
        assert.deepEqual(await app.get(PlantRetention).purge(new Date(now)), { predictions: 4500, deadLetters: 1 });
      } finally {
        await app.close();
      }
      const reopened = await createTestApp({ DATABASE_URL: scratch.url });
      try {
        const db = reopened.get(DataSource);
        assert.deepEqual(
          await db.query('SELECT asset_id, count(*)::int AS n FROM manufacturing_predictions GROUP BY asset_id'),
          [{ asset_id: 'press-2', n: 1 }],
        );
        const letters = await db.query<Array<{ reason: string; detail: string }>>(
          'SELECT reason, detail FROM manufacturing_dead_letters ORDER BY id',
        );
        assert.deepEqual(
          letters.map((l) => l.reason),
          ['malformed', 'malformed', 'malformed'],
        );
        assert.match(letters[2].detail, /^3 more dead letters like this from /);
      } finally {
        await reopened.close();
      }
    });
  },
);
