import assert from 'node:assert/strict';
import { cp, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { FIXTURE_MODELS } from '../fixtures/paths';
import { STALL_IN_JS, stallLoads, useStallingWorker } from '../fixtures/stalling-worker';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { until } from '../fixtures/until';

const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

/** Kills an inference worker as an operator's kill of the thread would (the pool replaces it). */
async function killWorker(app: NestFastifyApplication, index = 0): Promise<void> {
  const engine = app.get(InferenceEngine);
  const pool = (engine as unknown as { pool: { slots: Array<{ worker: { terminate(): Promise<number> } }> } }).pool;
  await pool.slots[index].worker.terminate();
}

/** Makes the engine's pool give a replacement `ms` to load (its default is minutes: see WorkerPool.loadLimit). */
function limitReplacementLoads(app: NestFastifyApplication, ms: number): void {
  const engine: unknown = app.get(InferenceEngine);
  (engine as { pool: { loadLimitMs: number } }).pool.loadLimitMs = ms;
}

/** The value of a series on /metrics (without labels, or with these exactly), 0 if absent. */
async function metric(http: ReturnType<typeof authedHttp>, series: string): Promise<number> {
  const text = (await http.get('/metrics').expect(200)).text;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('an inference worker whose replacement cannot load', () => {
  const temps: string[] = [];
  after(async () => {
    for (const temp of temps) await rm(temp, { recursive: true, force: true });
  });

  /** A copy of the fixture models, and where fixture-linear 2's model.onnx lies in it. */
  async function models(): Promise<{ dir: string; onnx: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'worker-recovery-'));
    temps.push(dir);
    await cp(FIXTURE_MODELS, dir, { recursive: true });
    return { dir, onnx: join(dir, 'generic', 'fixture-linear', '2', 'model.onnx') };
  }

  it('is tried again until model.onnx is back; meanwhile inference is refused 503 at once, then liveness fails', async () => {
    const { dir, onnx } = await models();
    const app = await createTestApp({ MODELS_DIR: dir, WORKER_OUTAGE_LIVENESS_MS: '1500' });
    try {
      const http = authedHttp(app);
      // model.onnx away for a moment (a deploy swapping files, a network file system) when the worker dies.
      await rename(onnx, `${onnx}.away`);
      await killWorker(app);
      await until('a failed replacement', async () =>
        (await metric(http, 'gateway_inference_worker_failures_total{cause="load_failed"}')) >= 1 ? true : undefined,
      );

      // Refused at once, as the model's readiness says at the same time, not held until the client gives up.
      const started = Date.now();
      const refused = await http.post('/v2/models/fixture-linear/infer').send(LINEAR).timeout(10_000);
      assert.equal(refused.status, 503);
      assert.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After');
      assert.match(refused.body.error, /model fixture-linear version 2: no inference worker is loaded/);
      assert.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms`);
      await http.get('/v2/models/fixture-linear/ready').expect(503);
      const ready = await http.get('/health/ready').expect(503);
      assert.equal(ready.body.checks.models.detail.workers, '0/1');
      assert.match(
        ready.body.checks.models.detail.models['fixture-linear@2'],
        /^not served: the replacement worker failed to load \d+ time\(s\) \(the log says why\); next try in \d+ s$/,
      );
      assert.doesNotMatch(ready.text, /model\.onnx|ENOENT/, 'no path in the detail');
      assert.equal(await metric(http, 'gateway_inference_workers_ready'), 0);
      assert.equal(
        await metric(http, 'gateway_inference_requests_total{model="fixture-linear",version="2",outcome="not_ready"}'),
        1,
      );

      // Nothing served for WORKER_OUTAGE_LIVENESS_MS: a restart would lose nothing and re-verify the files.
      const live = await until('liveness to fail', async () => {
        const res = await http.get('/health/live');
        return res.status === 503 ? res : undefined;
      });
      assert.deepEqual(live.body, { status: 'failing', failing: ['models'] });
      await http.get('/v2/health/live').expect(503, { live: false });

      await rename(`${onnx}.away`, onnx);
      await until(
        'the replacement loaded',
        async () => ((await http.get('/health/ready')).status === 200 ? true : undefined),
        40_000,
      );
      await http.get('/health/live').expect(200, { status: 'ok' });
      await http.get('/v2/health/live').expect(200, { live: true });
      const res = await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
      assert.deepEqual(res.body.outputs[0].data, [9, 1]);
      assert.equal(await metric(http, 'gateway_inference_workers_ready'), 1);
      assert.equal(await metric(http, 'gateway_inference_worker_failures_total{cause="exited"}'), 1);
    } finally {
      await app.close();
    }
  });

  it('does not hold a request or the shutdown for a worker that cannot load', { timeout: 60_000 }, async () => {
    const { dir, onnx } = await models();
    const app = await createTestApp({ MODELS_DIR: dir });
    let closed = false;
    try {
      const http = authedHttp(app);
      await rename(onnx, `${onnx}.away`);
      await killWorker(app);
      await until('a failed replacement', async () =>
        (await metric(http, 'gateway_inference_worker_failures_total{cause="load_failed"}')) >= 1 ? true : undefined,
      );
      const inflight = http.post('/v2/models/fixture-linear/infer').send(LINEAR).timeout(10_000);
      assert.equal((await inflight).status, 503);
      const started = Date.now();
      await app.close();
      closed = true;
      assert.ok(Date.now() - started < 5000, `closed in ${Date.now() - started} ms`);
    } finally {
      if (!closed) await app.close();
    }
  });

  it('with WORKER_POOL_SIZE 2, the replica stays ready and serves while one worker cannot be replaced', async () => {
    const { dir, onnx } = await models();
    const app = await createTestApp({ MODELS_DIR: dir, WORKER_POOL_SIZE: '2' });
    try {
      const http = authedHttp(app);
      await rename(onnx, `${onnx}.away`);
      await killWorker(app, 0);
      await until('a failed replacement', async () =>
        (await metric(http, 'gateway_inference_worker_failures_total{cause="load_failed"}')) >= 1 ? true : undefined,
      );
      const ready = await http.get('/health/ready').expect(200);
      assert.equal(ready.body.checks.models.detail.workers, '1/2');
      assert.equal(ready.body.checks.models.detail.models['fixture-linear@2'], 'ready on cpu');
      await http.get('/v2/models/fixture-linear/ready').expect(200);
      for (let i = 0; i < 3; i++) {
        const res = await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
        assert.deepEqual(res.body.outputs[0].data, [9, 1]);
      }
      assert.equal(await metric(http, 'gateway_inference_workers_ready'), 1);

      await rename(`${onnx}.away`, onnx);
      await until(
        'both workers serving',
        async () => ((await http.get('/health/ready')).body.checks.models.detail.workers === '2/2' ? true : undefined),
        40_000,
      );
    } finally {
      await app.close();
    }
  });

  it('with WORKER_POOL_SIZE 2, a replacement whose load hangs is given up on at its limit and tried again, not waited for', async () => {
    const { dir, onnx } = await models();
    const restore = useStallingWorker();
    const app = await createTestApp({ MODELS_DIR: dir, WORKER_POOL_SIZE: '2' });
    try {
      const http = authedHttp(app);
      limitReplacementLoads(app, 3000);
      const unstall = stallLoads(onnx, STALL_IN_JS, 60_000);
      await killWorker(app, 1);
      await until('a hung load given up on', async () =>
        (await metric(http, 'gateway_inference_worker_failures_total{cause="load_failed"}')) >= 1 ? true : undefined,
      );
      // One worker short, and said so: the other serves; the hung thread was terminated.
      const ready = await http.get('/health/ready').expect(200);
      assert.equal(ready.body.checks.models.detail.workers, '1/2');
      await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
      assert.equal(await metric(http, 'gateway_inference_workers_stuck'), 0);

      unstall();
      await until(
        'both workers serving',
        async () => ((await http.get('/health/ready')).body.checks.models.detail.workers === '2/2' ? true : undefined),
        40_000,
      );
      assert.equal(await metric(http, 'gateway_inference_workers_ready'), 2);
    } finally {
      await app.close();
      restore();
    }
  });
});
