import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { bundledModelsDir } from '../fixtures/paths';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

describe('medical: MEDICAL_MODEL at boot', () => {
  let financeOnly: string;
  before(() => {
    financeOnly = bundledModelsDir(['finance']);
  });
  after(() => rmSync(financeOnly, { recursive: true, force: true }));

  it('left unset, a gateway without the lesion model boots and answers the medical route 404', async () => {
    const app = await createTestApp({ MODELS_DIR: financeOnly });
    try {
      const res = await request(app.getHttpServer())
        .post('/v1/medical/lesion-detections')
        .set('Authorization', bearer(tokenFor(['pacs-integration'])))
        .set('Content-Type', 'application/dicom')
        .send(Buffer.alloc(200));
      assert.equal(res.status, 404, res.text);
      assert.match(res.body.detail, /breast-us-lesion/);
    } finally {
      await app.close();
    }
  });

  it('named but not in MODELS_DIR, it stops the boot naming the variable (a misspelt name is not a silent 404)', async () => {
    await assert.rejects(
      createTestApp({ MODELS_DIR: financeOnly, MEDICAL_MODEL: 'breast-us-lesoin' }),
      /MEDICAL_MODEL: no model named breast-us-lesoin in MODELS_DIR/,
    );
    // The default's name, given explicitly, is a promise too.
    await assert.rejects(
      createTestApp({ MODELS_DIR: financeOnly, MEDICAL_MODEL: 'breast-us-lesion' }),
      /MEDICAL_MODEL: no model named breast-us-lesion in MODELS_DIR/,
    );
  });
});
