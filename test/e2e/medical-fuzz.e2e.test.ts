import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DicomRejected } from '../../src/domains/medical/dicom/dicom-rejected';
import { MedicalIntakeService } from '../../src/domains/medical/medical-intake.service';
import { DICOM_SKIP, dicomFile, medicalModelsDir } from '../fixtures/dicom-files';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { seededRandom } from '../fixtures/random';

/** One random mutation of a valid file: flipped bytes, a cut, a removed or repeated chunk, a huge length. */
export function mutate(source: Buffer, seed: number): Buffer {
  const rnd = seededRandom(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  // Most structure (file meta, the image pixel module, fragment headers) sits before the pixels.
  const hot = () => (rnd() < 0.7 ? int(Math.min(source.length, 2048)) : int(source.length));
  const out = Buffer.from(source);
  switch (int(5)) {
    case 0: {
      for (let i = 0, n = 1 + int(16); i < n; i++) out[hot()] = int(256);
      return out;
    }
    case 1:
      return out.subarray(0, int(source.length));
    case 2: {
      const at = hot();
      return Buffer.concat([out.subarray(0, at), out.subarray(Math.min(source.length, at + 1 + int(64)))]);
    }
    case 3: {
      const at = hot();
      const chunk = out.subarray(at, at + 1 + int(64));
      return Buffer.concat([out.subarray(0, at), chunk, chunk, out.subarray(at + chunk.length)]);
    }
    default: {
      const at = Math.min(hot(), source.length - 4);
      out.writeUInt32LE([0xffffffff, 0x7fffffff, 0x10000, int(2 ** 32)][int(4)], Math.max(0, at));
      return out;
    }
  }
}

const SOURCES = [
  'MR_small.dcm',
  'MR_small_implicit.dcm',
  'MR_small_bigendian.dcm',
  'MR_small_RLE.dcm',
  'MR_small_jpeg_ls_lossless.dcm',
  'MR_small_jp2klossless.dcm',
  'SC_rgb_jpeg_dcmtk.dcm',
  'JPEG-lossy.dcm',
];
const MUTATIONS = 4000;

describe('medical: fuzzed DICOM never crashes the gateway', { skip: DICOM_SKIP }, () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  before(async () => {
    // A model that accepts every modality, so mutated files go all the way through decode and inference.
    modelsDir = medicalModelsDir(['US', 'CT', 'MR', 'NM', 'OT']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it(`${MUTATIONS} mutations through parse, decode and inference: findings or a DicomRejected, nothing else`, async () => {
    const intake = app.get(MedicalIntakeService);
    const outcomes = new Map<string, number>();
    for (let seed = 1; seed <= MUTATIONS; seed++) {
      const name = SOURCES[seed % SOURCES.length];
      const body = mutate(dicomFile(name), seed);
      let outcome: string;
      try {
        await intake.analyseAndKeep(intake.parse(body), '');
        outcome = 'analysed';
      } catch (error) {
        if (!(error instanceof DicomRejected)) {
          assert.fail(`seed ${seed} (${name}) threw ${error instanceof Error ? error.stack : String(error)}`);
        }
        outcome = error.reason;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    // The mutations must reach both sides: some files still analysable, many refused for several reasons.
    assert.ok((outcomes.get('analysed') ?? 0) > 100, JSON.stringify([...outcomes]));
    assert.ok(outcomes.size >= 4, JSON.stringify([...outcomes]));
  });

  it('mutations over HTTP: always a 200 or a 4xx problem, never a 5xx', async () => {
    const http = request(app.getHttpServer());
    const auth = bearer(tokenFor(['pacs-integration']));
    for (let seed = 10_001; seed <= 10_200; seed++) {
      const name = SOURCES[seed % SOURCES.length];
      const res = await http
        .post('/v1/medical/lesion-detections')
        .set('Authorization', auth)
        .set('Content-Type', 'application/dicom')
        .send(mutate(dicomFile(name), seed));
      assert.ok(res.status === 200 || (res.status >= 400 && res.status < 500), `seed ${seed} (${name}): ${res.status}`);
      if (res.status !== 200) assert.match(String(res.headers['content-type']), /application\/problem\+json/);
    }
  });
});
