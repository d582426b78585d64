import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, it } from 'node:test';
import request from 'supertest';
import { bundledModelsDir } from '../fixtures/paths';
import { ai4iReadings, millAsset } from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';

interface DeadLetter {
  reason: string;
  detail: string;
  channel: string;
}

describe('manufacturing: refused input kept up to MANUFACTURING_DEAD_LETTER_LIMIT a minute', () => {
  it('keeps the first of a kind, answers every refusal, and writes one summary of the rest', async () => {
    const modelsDir = bundledModelsDir(['manufacturing']);
    const dataDir = await freshDataDir();
    const admin = bearer(tokenFor(['ml-admin']));
    const scada = bearer(tokenFor(['scada'], { sub: 'scada-1' }));
    const operator = bearer(tokenFor(['plant-operator']));
    const good = ai4iReadings(false, 1)[0];
    const app = await createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: dataDir, MANUFACTURING_DEAD_LETTER_LIMIT: '2' });
    try {
      const http = request(app.getHttpServer());
      await http
        .put('/v1/manufacturing/assets/mill-1')
        .set('Authorization', admin)
        .send(millAsset('mill-1'))
        .expect(200);
      const t0 = Date.parse('2026-12-01T00:00:00Z');
      const res = await http
        .post('/v1/manufacturing/assets/mill-1/readings')
        .set('Authorization', scada)
        .send({
          readings: Array.from({ length: 10 }, (_, i) => ({
            timestamp: new Date(t0 + i * 1000).toISOString(),
            values: { ...good, air_temp: -400 - i },
          })),
        })
        .expect(200);
      // The caller is told of every refused reading, whatever is kept.
      assert.equal((res.body as { invalid: unknown[] }).invalid.length, 10);
      const dead = await http.get('/v1/manufacturing/dead-letters').set('Authorization', operator).expect(200);
      assert.equal((dead.body as { deadLetters: DeadLetter[] }).deadLetters.length, 2);
    } finally {
      await app.close();
    }
    // The summary of the eight counted is written at shutdown (else when the minute ends).
    const reopened = await createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: dataDir });
    try {
      const http = request(reopened.getHttpServer());
      const dead = await http.get('/v1/manufacturing/dead-letters').set('Authorization', operator).expect(200);
      const letters = (dead.body as { deadLetters: DeadLetter[] }).deadLetters;
      assert.equal(letters.length, 3);
      assert.ok(letters.every((l) => l.reason === 'invalid-value'));
      const summary = letters.find((l) => l.detail.startsWith('8 more dead letters like this'));
      assert.ok(summary, JSON.stringify(letters));
      assert.match(summary.detail, /not kept \(more than 2 a minute\); the last one's detail: .*-409 degC/);
    } finally {
      await reopened.close();
      rmSync(modelsDir, { recursive: true, force: true });
    }
  });
});
