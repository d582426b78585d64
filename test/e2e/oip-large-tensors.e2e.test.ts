import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import * as ort from 'onnxruntime-node';
import { DataSource } from 'typeorm';
import { AuditInputDigester } from '../../src/common/access';
import { canonicalTensorParts } from '../../src/runtime/tensor';
import { bundledModelsDir } from '../fixtures/paths';
import { authedHttp, createTestApp } from '../fixtures/test-app';

const PLANE = 256 * 256;

/** A deterministic image batch in the model's input range, different for each `seed`. */
function images(frames: number, seed: number): Float32Array {
  return Float32Array.from({ length: frames * PLANE }, (_, i) => (((i * 7919 + seed * 104729) % 1000) / 1000) * 4 - 2);
}

/**
 * Large OIP inputs (an image batch of 256 KB a frame) are decoded into the runtime's pooled buffers and
 * moved to the worker: each answer must be the model's answer to its own request, however the buffer was
 * used before, and its audit row must digest exactly the tensor sent (not the rest of a larger buffer).
 */
describe('OIP with large tensors (buffers from the runtime pool)', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof authedHttp>;
  let direct: ort.InferenceSession;
  const modelsDir = bundledModelsDir(['medical']);
  before(async () => {
    app = await createTestApp({ MODELS_DIR: modelsDir });
    http = authedHttp(app);
    // As the test app runs it (one intra-op thread), so that only a wrong input could change an answer.
    direct = await ort.InferenceSession.create(join(modelsDir, 'medical', 'breast-us-lesion', '1', 'model.onnx'), {
      intraOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
  });
  after(async () => {
    await direct.release();
    await app.close();
  });

  const binaryInfer = (x: Float32Array, frames: number) => {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'image',
            shape: [frames, 1, 256, 256],
            datatype: 'FP32',
            parameters: { binary_data_size: x.byteLength },
          },
        ],
        outputs: [{ name: 'malignancy_probability' }],
      }),
    );
    return http
      .post('/v2/models/breast-us-lesion/infer')
      .set('Content-Type', 'application/octet-stream')
      .set('Inference-Header-Content-Length', String(header.length))
      .send(Buffer.concat([header, Buffer.from(x.buffer, x.byteOffset, x.byteLength)]))
      .expect(200);
  };

  it('answers each request from its own tensor, sent as binary data and as JSON, with its own digest in the audit row', async () => {
    // Sizes that share one size class and one that does not, so buffers are reused between unlike requests.
    const sent: Array<{ frames: number; seed: number; json?: boolean }> = [
      { frames: 2, seed: 1 },
      { frames: 2, seed: 2 },
      { frames: 1, seed: 3, json: true },
      { frames: 2, seed: 4 },
      { frames: 1, seed: 5 },
    ];
    const digester = app.get(AuditInputDigester);
    for (const { frames, seed, json } of sent) {
      const x = images(frames, seed);
      const res = json
        ? await http
            .post('/v2/models/breast-us-lesion/infer')
            .send({
              inputs: [{ name: 'image', shape: [frames, 1, 256, 256], datatype: 'FP32', data: Array.from(x) }],
              outputs: [{ name: 'malignancy_probability' }],
            })
            .expect(200)
        : await binaryInfer(x, frames);
      const want = await direct.run({ image: new ort.Tensor('float32', x, [frames, 1, 256, 256]) });
      const got = res.body.outputs[0] as { name: string; shape: number[]; data: number[] };
      assert.equal(got.name, 'malignancy_probability');
      const expected = Array.from(want.malignancy_probability.data as Float32Array);
      assert.equal(got.data.length, expected.length);
      got.data.forEach((v, i) =>
        assert.ok(Math.abs(v - expected[i]) < 1e-5, `seed ${seed} value ${i}: ${v} vs ${expected[i]}`),
      );
      const [row] = await app
        .get(DataSource)
        .query<Array<{ input_digest: string }>>('SELECT input_digest FROM audit_events WHERE request_id = $1', [
          res.headers['x-request-id'],
        ]);
      const tensor = { dtype: 'float32' as const, dims: [frames, 1, 256, 256], data: x };
      assert.equal(row.input_digest, digester.digest(canonicalTensorParts({ image: tensor })), `seed ${seed}`);
    }
  });
});
