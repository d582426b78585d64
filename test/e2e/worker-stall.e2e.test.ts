import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { STALL_IN_JS, STALL_IN_ORT, stallingInput, useStallingWorker } from '../fixtures/stalling-worker';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { until } from '../fixtures/until';

const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
const stalling = (how: typeof STALL_IN_JS | typeof STALL_IN_ORT, ms: number) => ({
  inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: stallingInput(how, ms) }],
});

async function metric(http: ReturnType<typeof authedHttp>, series: string): Promise<number> {
  const text = (await http.get('/metrics').expect(200)).text;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

// Deadlines of 1 s, and a run counts as stalled 1 s past its model's deadline.
const ENV = { INFERENCE_TIMEOUT_MS: '1000', WORKER_STALL_MARGIN_MS: '1000' };

describe('an inference worker whose run does not return', () => {
  it('answers its requests 504 at their deadlines, shows in readiness and metrics, and is replaced', async () => {
    const restore = useStallingWorker();
    const app = await createTestApp(ENV);
    try {
      const http = authedHttp(app);
      const started = Date.now();
      // A run stuck for 30 s, and a request handed to the same worker behind it.
      const stuck = http.post('/v2/models/fixture-linear/infer').send(stalling(STALL_IN_JS, 30_000)).timeout(15_000);
      const behind = http.post('/v2/models/fixture-linear/infer').send(LINEAR).timeout(15_000);
      const [a, b] = await Promise.all([stuck, behind]);
      for (const res of [a, b]) {
        assert.equal(res.status, 504, res.text);
        assert.match(res.body.error, /deadline/);
      }
      assert.ok(Date.now() - started < 4000, `answered after ${Date.now() - started} ms, not when the run returned`);

      // Seen stalled (0 ready: readiness 503) until its replacement has loaded.
      await until('the worker seen stalled', async () =>
        (await http.get('/health/ready')).status === 503 &&
        (await metric(http, 'gateway_inference_workers_ready')) === 0
          ? true
          : undefined,
      );
      assert.equal(await metric(http, 'gateway_inference_worker_failures_total{cause="stalled"}'), 1);
      await until('the replacement serving', async () =>
        (await http.get('/health/ready')).status === 200 ? true : undefined,
      );
      const res = await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
      assert.deepEqual(res.body.outputs[0].data, [9, 1]);
      // Terminated: its thread was in JavaScript, not in ONNX Runtime.
      await until('no stuck thread', async () =>
        (await metric(http, 'gateway_inference_workers_stuck')) === 0 ? true : undefined,
      );
    } finally {
      await app.close();
      restore();
    }
  });

  it('stuck inside ONNX Runtime: its thread, which cannot be stopped, is counted; a replacement serves meanwhile', async () => {
    const restore = useStallingWorker();
    const app = await createTestApp(ENV);
    try {
      const http = authedHttp(app);
      const started = Date.now();
      const stuck = await http
        .post('/v2/models/fixture-linear/infer')
        .send(stalling(STALL_IN_ORT, 5000))
        .timeout(15_000);
      assert.equal(stuck.status, 504, stuck.text);
      assert.ok(Date.now() - started < 4000, `answered after ${Date.now() - started} ms`);
      await until('the stuck thread counted', async () =>
        (await metric(http, 'gateway_inference_workers_stuck')) === 1 ? true : undefined,
      );
      await until('the replacement serving', async () =>
        (await http.get('/health/ready')).status === 200 ? true : undefined,
      );
      const ready = await http.get('/health/ready').expect(200);
      assert.equal(ready.body.checks.models.detail.workers, '1/1');
      assert.equal(ready.body.checks.models.detail.stuckThreads, 1);
      await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
      // Its run returns at last: the thread stops by itself and answers nothing.
      await until(
        'the stuck thread stopped',
        async () => ((await metric(http, 'gateway_inference_workers_stuck')) === 0 ? true : undefined),
        15_000,
      );
      await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
    } finally {
      await app.close();
      restore();
    }
  });
});
