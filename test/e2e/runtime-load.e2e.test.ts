import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, appendFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { ModelRegistryError } from '../../src/runtime/model-registry/model-registry';
import { FIXTURE_MODELS } from '../fixtures/paths';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';

const IMAGE = { dtype: 'float32' as const, dims: [1, 3, 224, 224], data: new Float32Array(3 * 224 * 224).fill(0.5) };

describe('runtime under load', () => {
  it('keeps the event loop free: /health/live answers while the CNN is saturated', async () => {
    const app = await createTestApp({ BATCH_MAX_QUEUE_SIZE: '1000' });
    try {
      const engine = app.get(InferenceEngine);
      const total = 400;
      let finished = 0;
      const work = Array.from({ length: total }, () =>
        engine.infer('fixture-cnn', undefined, { image: IMAGE }).then((r) => {
          finished++;
          return r;
        }),
      );
      const http = authedHttp(app);
      for (let i = 0; i < 20; i++) {
        const res = await http.get('/health/live');
        assert.equal(res.status, 200);
      }
      const finishedWhenLivenessDone = finished;
      const results = await Promise.all(work);
      assert.ok(
        finishedWhenLivenessDone < total,
        `20 liveness checks completed while ${total - finishedWhenLivenessDone} inferences were still in flight`,
      );
      assert.ok(results.every((r) => r.outputs.probabilities.dims.join() === '1,10'));
      assert.ok(
        results.some((r) => r.batchSize > 1),
        'saturation formed batches',
      );
    } finally {
      await app.close();
    }
  });

  it('graceful shutdown answers every request already accepted, and leaves no thread behind', async () => {
    // Worker threads (inference, audit commits, embedded database) each hold a MessagePort.
    const threads = (): number => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
    const threadsBefore = threads();
    const app = await createTestApp();
    let received = 0;
    const fastify = app.getHttpAdapter().getInstance();
    await app.listen(0, '127.0.0.1');
    fastify.server.on('request', () => received++);
    const { port } = fastify.server.address() as AddressInfo;
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    const count = 30;
    const responses = Array.from({ length: count }, () =>
      fetch(`http://127.0.0.1:${port}/v2/models/fixture-linear/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: bearer(tokenFor(['ml-admin'])) },
        body,
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { outputs: Array<{ data: number[] }> } })),
    );
    while (received < count) await new Promise((r) => setImmediate(r));
    await app.close();
    const settled = await Promise.all(responses);
    assert.deepEqual(
      settled.map((r) => r.status),
      Array(count).fill(200),
    );
    assert.deepEqual(settled[0].body.outputs[0].data, [9, 1]);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/health/live`));
    // Answers audited while the server closed must not start a thread that outlives the app.
    assert.equal(threads(), threadsBefore);
  });

  it('refuses to boot on a tampered model, naming it', async () => {
    const root = await mkdtemp(join(tmpdir(), 'models-'));
    try {
      await cp(FIXTURE_MODELS, root, { recursive: true });
      await appendFile(join(root, 'generic', 'fixture-cnn', '1', 'model.onnx'), 'tampered');
      const app = await createApp(
        loadConfig({ MODELS_DIR: root, LOG_LEVEL: 'fatal', INFERENCE_DEVICE: 'cpu', DATA_DIR: await freshDataDir() }),
      );
      await assert.rejects(app.init(), (error: unknown) => {
        assert.ok(error instanceof ModelRegistryError);
        assert.match(error.message, /fixture-cnn\/1\/model\.onnx: sha256 mismatch/);
        return true;
      });
      await app.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('INFERENCE_DEVICE=cuda either runs on CUDA or stops the boot with the reason', async () => {
    const app = await createApp(
      loadConfig({
        MODELS_DIR: FIXTURE_MODELS,
        LOG_LEVEL: 'fatal',
        INFERENCE_DEVICE: 'cuda',
        WORKER_POOL_SIZE: '1',
        DATA_DIR: await freshDataDir(),
      }),
    );
    try {
      await app.init();
      const models = app.get(InferenceEngine).listModels();
      assert.ok(models.every((m) => m.provider === 'cuda'));
    } catch (error) {
      assert.match((error as Error).message, /INFERENCE_DEVICE=cuda but the CUDA execution provider could not start/);
    } finally {
      await app.close();
    }
  });
});
