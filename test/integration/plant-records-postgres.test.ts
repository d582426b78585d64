import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { FIRST_INCARNATION } from '../../src/domains/manufacturing/assets/asset.entity';
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
        assert.deepEqual(await app.get(PlantRetention).purge(new Date(now)), {
          predictions: 4500,
          openingRows: 0,
          deadLetters: 1,
        });
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

    it('replaces a prediction kept at the same asset, time and model version (an asset made again), in one statement or two', async () => {
      const app = await createTestApp({ DATABASE_URL: scratch.url });
      try {
        const records = app.get(PlantRecordsRepository);
        const at = Date.parse('2026-12-03T00:00:00Z');
        await records.addPredictions([
          storedPrediction('press-9', at, 0.9),
          storedPrediction('press-9', at + 1000, 0.8),
        ]);
        await records.addPredictions([storedPrediction('press-9', at, 0.1)]);
        // Two of one key in one group: written apart, the later last.
        await records.addPredictions([
          storedPrediction('press-9', at + 1000, 0.3),
          storedPrediction('press-9', at + 1000, 0.2),
        ]);
        const rows = await app
          .get(DataSource)
          .query<Array<{ value: number }>>(
            "SELECT value FROM manufacturing_predictions WHERE asset_id = 'press-9' ORDER BY at",
          );
        assert.deepEqual(
          rows.map((r) => r.value),
          [0.1, 0.2],
        );
        // Not for the next test's purge to count.
        await app.get(DataSource).query("DELETE FROM manufacturing_predictions WHERE asset_id = 'press-9'");
      } finally {
        await app.close();
      }
    });

    it('keeps the rows that gave no prediction, NaN for a tag not seen, a window at most, and purges them with the predictions', async () => {
      const now = Date.now();
      const app = await createTestApp({ DATABASE_URL: scratch.url, MANUFACTURING_RETENTION_DAYS: '2' });
      try {
        const records = app.get(PlantRecordsRepository);
        const db = app.get(DataSource);
        for (const id of ['eng-1', 'eng-2']) {
          await db.query(
            'INSERT INTO manufacturing_assets (asset_id, kind, site, area, line, sensors, constants, alarm, updated_at) ' +
              "VALUES ($1, 'turbofan-rul', 's', 'a', 'l', '[]', '{}', '{}', now())",
            [id],
          );
        }
        const at = (ms: number) => ({ timestamp: ms, first: false });
        const old = now - 3 * DAY;
        await records.keepOpening('eng-1', FIRST_INCARNATION, '1', [
          { ...at(old), row: Float32Array.of(1.5, NaN), first: true },
        ]);
        await records.keepOpening('eng-1', FIRST_INCARNATION, '1', [
          { ...at(old + 1000), row: Float32Array.of(1.5, 2) },
          { ...at(old + 2000), row: Float32Array.of(3, 4) },
        ]);
        await records.keepOpening('eng-2', FIRST_INCARNATION, '1', [
          { ...at(old), row: Float32Array.of(7, 8), first: true },
        ]);
        let kept = await records.recentOpening(10);
        assert.deepEqual(kept.get('eng-1'), [
          { at: old + 2000, modelVersion: '1', inputs: [3, 4], first: false },
          { at: old + 1000, modelVersion: '1', inputs: [1.5, 2], first: false },
          { at: old, modelVersion: '1', inputs: [1.5, NaN], first: true },
        ]);
        // A window that starts over: its first row makes the rows before it needless.
        await records.keepOpening('eng-1', FIRST_INCARNATION, '1', [
          { ...at(now), row: Float32Array.of(5, 6), first: true },
        ]);
        kept = await records.recentOpening(10);
        assert.deepEqual(kept.get('eng-1'), [{ at: now, modelVersion: '1', inputs: [5, 6], first: true }]);
        assert.deepEqual(await app.get(PlantRetention).purge(new Date(now)), {
          predictions: 0,
          openingRows: 1,
          deadLetters: 0,
        });
        assert.equal((await records.recentOpening(10)).get('eng-2'), undefined);
        // Removed: its rows forgotten.
        await db.transaction((manager) => records.forgetRemoved(manager, 'eng-1'));
        assert.equal((await records.recentOpening(10)).size, 0);
        // Made again (another incarnation): what the removed asset kept is not read back, whatever its time, and its held
        // readings are deleted; a prediction of the new one at the time of one of the old one's replaces it.
        const made = randomUUID();
        await db.query("UPDATE manufacturing_assets SET incarnation = $1 WHERE asset_id = 'eng-2'", [made]);
        await records.keepOpening('eng-2', FIRST_INCARNATION, '1', [
          { ...at(now), row: Float32Array.of(7, 8), first: true },
        ]);
        await records.holdReadings('eng-2', FIRST_INCARNATION, [{ timestamp: now + 1000, values: { s2: 1 } }]);
        await records.addPredictions([{ ...storedPrediction('eng-2', now), inputs: [7, 8] }]);
        assert.equal((await records.recentOpening(10)).get('eng-2'), undefined);
        assert.equal((await records.recentInputs(10)).get('eng-2'), undefined);
        assert.equal((await records.heldReadings()).get('eng-2'), undefined);
        assert.deepEqual(await db.query("SELECT * FROM manufacturing_held_readings WHERE asset_id = 'eng-2'"), []);
        await records.addPredictions([{ ...storedPrediction('eng-2', now), inputs: [9, 10], incarnation: made }]);
        await records.holdReadings('eng-2', made, [{ timestamp: now + 1000, values: { s2: 2 } }]);
        assert.deepEqual((await records.recentInputs(10)).get('eng-2'), [
          { at: now, modelVersion: '1', inputs: [9, 10], value: 0.5 },
        ]);
        assert.deepEqual((await records.heldReadings()).get('eng-2'), [{ timestamp: now + 1000, values: { s2: 2 } }]);
      } finally {
        await app.close();
      }
    });
  },
);
