import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { authedHttp, createTestApp } from '../fixtures/test-app';

const IMAGE = { dtype: 'float32' as const, dims: [1, 3, 224, 224], data: new Float32Array(3 * 224 * 224) };
const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

describe('back-pressure, deadlines and worker loss over HTTP', () => {
  it('a full queue answers 503 with Retry-After; a request past its deadline answers 504', async () => {
    // One row per batch, one batch in flight, room for two waiting; a 128-image request runs alone and
    // keeps the single worker busy long enough for the HTTP requests below to meet a full queue.
    const app = await createTestApp({ BATCH_MAX_SIZE: '1', BATCH_MAX_QUEUE_SIZE: '2', WORKER_PIPELINE_DEPTH: '1' });
    try {
      const engine = app.get(InferenceEngine);
      const http = authedHttp(app);
      const big = { ...IMAGE, dims: [128, 3, 224, 224], data: new Float32Array(128 * 3 * 224 * 224) };
      const cnnBody = (parameters: object) => ({
        parameters,
        inputs: [{ name: 'image', shape: [1, 3, 224, 224], datatype: 'FP32', data: Array(150528).fill(0) }],
      });

      const running = engine.infer('fixture-cnn', undefined, { image: big });
      const queued = [1, 2].map(() => engine.infer('fixture-cnn', undefined, { image: IMAGE }));
      const full = await http.post('/v2/models/fixture-cnn/infer').send(cnnBody({}));
      assert.equal(full.status, 503);
      assert.equal(full.headers['retry-after'], '1');
      assert.match(full.body.error, /queue is full/);
      await Promise.all([running, ...queued]);

      const busy = engine.infer('fixture-cnn', undefined, { image: big });
      const late = await http.post('/v2/models/fixture-cnn/infer').send(cnnBody({ timeout_ms: 1 }));
      assert.equal(late.status, 504);
      assert.match(late.body.error, /deadline/);
      await busy;

      const text = (await http.get('/metrics')).text;
      assert.match(text, /gateway_inference_requests_total\{model="fixture-cnn",version="1",outcome="queue_full"\} 1/);
      assert.match(
        text,
        /gateway_inference_requests_total\{model="fixture-cnn",version="1",outcome="deadline_exceeded"\} 1/,
      );
    } finally {
      await app.close();
    }
  });

  it('a worker that dies is replaced, readiness (server and model) reflects it, and service resumes', async () => {
    const app = await createTestApp();
    try {
      const http = authedHttp(app);
      const engine = app.get(InferenceEngine);
      // Reach the pool the way an operator's kill -9 of a thread would: terminate the worker.
      const pool = (engine as unknown as { pool: { slots: Array<{ worker: { terminate(): Promise<number> } }> } }).pool;
      await pool.slots[0].worker.terminate();
      const during = await http.get('/health/ready');
      assert.equal(during.status, 503, 'not ready while the replacement loads');
      // OIP model ready is its status (Triton's and KServe's clients read only that): no worker, no model.
      for (const path of ['/v2/models/fixture-linear/ready', '/v2/models/fixture-linear/versions/2/ready']) {
        const model = await http.get(path);
        assert.equal(model.status, 503, `${path} while the replacement loads`);
        assert.deepEqual(model.body, { name: 'fixture-linear', ready: false });
      }
      let ready = during.status;
      for (let i = 0; i < 2000 && ready !== 200; i++) ready = (await http.get('/health/ready')).status;
      assert.equal(ready, 200, 'ready again once the replacement worker has loaded every model');
      await http.get('/v2/models/fixture-linear/ready').expect(200, { name: 'fixture-linear', ready: true });
      const res = await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
      assert.deepEqual(res.body.outputs[0].data, [9, 1]);
    } finally {
      await app.close();
    }
  });
});
