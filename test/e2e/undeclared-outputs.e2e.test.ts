import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { onnxModel, saveModel } from '../fixtures/onnx-build';
import { authedHttp, createTestApp } from '../fixtures/test-app';

/**
 * y = x, declared; the graph has two more outputs model.json does not declare: a string (a scikit-learn
 * classifier's label) and a constant off the batch axis. They are neither run nor returned.
 */
function extraOutputsModel(modelsDir: string): void {
  saveModel(
    modelsDir,
    { name: 'extra-outputs' },
    onnxModel(
      [
        { op: 'Identity', inputs: ['x'], outputs: ['y'] },
        { op: 'Constant', inputs: [], outputs: ['label'], value: { elem: 'string', dims: [1], values: ['tag'] } },
        { op: 'Constant', inputs: [], outputs: ['c'], value: { elem: 'float', dims: [3], values: [1, 2, 3] } },
      ],
      [{ name: 'x', elem: 'float', shape: ['N', 4] }],
      [
        { name: 'y', elem: 'float', shape: ['N', 4] },
        { name: 'label', elem: 'string', shape: [1] },
        { name: 'c', elem: 'float', shape: [3] },
      ],
    ),
    {
      inputs: [{ name: 'x', dtype: 'float32', shape: [-1, 4] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [-1, 4] }],
      provenance: { dataset: 'none (written by the test)' },
      batching: { maxBatchSize: 8, maxQueueDelayMs: 0, maxQueueSize: 64, timeoutMs: 10_000 },
    },
  );
}

describe("a graph's outputs that model.json does not declare", () => {
  let app: NestFastifyApplication;
  const modelsDir = mkdtempSync(join(tmpdir(), 'undeclared-outputs-'));

  before(async () => {
    extraOutputsModel(modelsDir);
    app = await createTestApp({ MODELS_DIR: modelsDir });
  });
  after(async () => {
    await app?.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('are not returned: a request over OIP gets the declared output only', async () => {
    const res = await authedHttp(app)
      .post('/v2/models/extra-outputs/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const outputs = (res.body as { outputs: Array<{ name: string; data: number[] }> }).outputs;
    assert.deepEqual(
      outputs.map((o) => o.name),
      ['y'],
    );
    assert.deepEqual(outputs[0].data, [1, 2, 3, 4]);
  });

  it('do not break a stacked run: each request of a batch is answered with its own rows', async () => {
    const engine = app.get(InferenceEngine);
    const requests = Array.from({ length: 6 }, (_, i) => [i, i + 0.5, -i, 10 * i]);
    const results = await Promise.all(
      requests.map((row) =>
        engine.infer('extra-outputs', undefined, {
          x: { dtype: 'float32', dims: [1, 4], data: Float32Array.from(row) },
        }),
      ),
    );
    assert.ok(
      results.some((r) => r.batchSize > 1),
      'the requests were stacked',
    );
    results.forEach((result, i) => {
      assert.deepEqual(Object.keys(result.outputs), ['y']);
      assert.deepEqual([...(result.outputs.y.data as Float32Array)], requests[i]);
    });
  });
});
