import assert from 'node:assert/strict';
import { cp, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Tensor } from '../../src/runtime/tensor';
import { WorkerFailure, WorkerPool, WorkerUnavailable } from '../../src/runtime/worker-pool/worker-pool';
import { STALL_IN_JS, STALLING_WORKER, stallingInput } from '../fixtures/stalling-worker';
import { until } from '../fixtures/until';
import { FIXTURE_LINEAR, fixtureLinearLoad } from '../fixtures/worker-load';

const KEY = 'fixture-linear@2';
const x = (values: number[]): Record<string, Tensor> => ({
  x: { dtype: 'float32', dims: [1, 4], data: Float32Array.from(values) },
});

/** The pool's worker in `index`, as a thread killed from outside would be reached. */
function workerOf(pool: WorkerPool, index = 0): { terminate(): Promise<number> } {
  return (pool as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots[index].worker;
}

describe('a worker whose replacement fails to load', () => {
  const temps: string[] = [];
  after(async () => {
    for (const temp of temps) await rm(temp, { recursive: true, force: true });
  });

  it('is tried again, from retryFirstMs doubling to retryMaxMs, until model.onnx is back; meanwhile runs are refused at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'worker-retry-'));
    temps.push(dir);
    await cp(join(FIXTURE_LINEAR, '2'), dir, { recursive: true });
    const onnxPath = join(dir, 'model.onnx');
    const failures: Array<{ reason: string; retryInMs: number; attempt: number }> = [];
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(onnxPath),
      { onReplacementFailed: (_index, reason, retryInMs, attempt) => failures.push({ reason, retryInMs, attempt }) },
      { retryFirstMs: 50, retryMaxMs: 200 },
    );
    try {
      await pool.start();
      // A deploy swapping files, a network file system away: model.onnx cannot be read for a moment.
      await rename(onnxPath, `${onnxPath}.away`);
      await workerOf(pool).terminate();
      await until('four failed loads', () => (failures.length >= 4 ? true : undefined));
      assert.deepEqual(
        failures.slice(0, 4).map((f) => [f.attempt, f.retryInMs]),
        [
          [1, 50],
          [2, 100],
          [3, 200],
          [4, 200],
        ],
      );
      assert.match(failures[0].reason, /ENOENT/);
      assert.equal(pool.readyWorkers, 0);
      assert.ok(pool.unservedMs() > 0);
      assert.match(pool.outage() ?? '', /failed to load \d+ time\(s\).*next try in \d+ s/);
      // Nothing could take it: refused now, not held until a worker comes (perhaps never).
      const started = performance.now();
      await assert.rejects(pool.run(KEY, x([1, 2, 3, 4])), (error: unknown) => {
        assert.ok(error instanceof WorkerUnavailable, String(error));
        assert.ok(error.retryAfterMs >= 1000);
        return true;
      });
      assert.ok(performance.now() - started < 100);

      await rename(`${onnxPath}.away`, onnxPath);
      await until('the replacement loaded', () => (pool.readyWorkers === 1 ? true : undefined), 10_000);
      assert.equal(pool.unservedMs(), 0);
      assert.equal(pool.outage(), undefined);
      const { outputs } = await pool.run(KEY, x([1, 2, 3, 4]));
      assert.equal(outputs.y.dims[0], 1);
    } finally {
      await pool.close();
    }
  });

  it('refuses the runs waiting for a worker once none is left, rather than hold them for one that may not load', async () => {
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(join(FIXTURE_LINEAR, '2', 'model.onnx')),
      {},
      { depth: 1, workerFile: STALLING_WORKER },
    );
    try {
      await pool.start();
      const busy = pool.run(KEY, x(stallingInput(STALL_IN_JS, 10_000)));
      const waiting = [pool.run(KEY, x([1, 2, 3, 4])), pool.run(KEY, x([4, 3, 2, 1]))];
      await workerOf(pool).terminate();
      await assert.rejects(busy, (error: unknown) => error instanceof WorkerFailure && /exited/.test(error.message));
      for (const run of waiting) {
        await assert.rejects(run, (error: unknown) => error instanceof WorkerUnavailable);
      }
    } finally {
      await pool.close();
    }
  });
});
