import assert from 'node:assert/strict';
import { cp, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Tensor } from '../../src/runtime/tensor';
import {
  BootLoadTimeout,
  WorkerFailure,
  WorkerPool,
  WorkerUnavailable,
} from '../../src/runtime/worker-pool/worker-pool';
import { STALL_IN_JS, STALL_IN_ORT, STALLING_WORKER, stallingInput, stallLoads } from '../fixtures/stalling-worker';
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

describe('a worker whose run goes past its limit (runLimitMs)', () => {
  it('stalled in JavaScript: refused, terminated and replaced, and serving resumes', async () => {
    const stalls: Array<{ reason: string; terminated: boolean }> = [];
    let stopped = 0;
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(join(FIXTURE_LINEAR, '2', 'model.onnx')),
      {
        onWorkerStalled: (_index, reason, terminated) => stalls.push({ reason, terminated }),
        onStuckThreadStopped: () => stopped++,
      },
      { workerFile: STALLING_WORKER, runLimitMs: () => 300 },
    );
    try {
      await pool.start();
      const started = performance.now();
      const stalled = pool.run(KEY, x(stallingInput(STALL_IN_JS, 60_000)));
      const behind = pool.run(KEY, x([1, 2, 3, 4]));
      await assert.rejects(
        stalled,
        (error: unknown) => error instanceof WorkerUnavailable && /stalled/.test(error.message),
      );
      await assert.rejects(behind, (error: unknown) => error instanceof WorkerUnavailable);
      assert.ok(performance.now() - started < 5000, 'refused near its limit, not when the 60 s loop ends');
      assert.equal(stalls.length, 1);
      assert.match(stalls[0].reason, /a run of fixture-linear@2 has gone on for \d+ ms \(limit 300 ms\)/);
      assert.equal(stalls[0].terminated, true, 'no ONNX Runtime run under way: terminated');
      await until('the thread stopped', () => (stopped === 1 ? true : undefined));
      assert.equal(pool.stuckThreads, 0);
      await until('the replacement loaded', () => (pool.readyWorkers === 1 ? true : undefined));
      const { outputs } = await pool.run(KEY, x([1, 2, 3, 4]));
      assert.equal(outputs.y.dims[0], 1);
    } finally {
      await pool.close();
    }
  });

  it('stalled inside ONNX Runtime: replaced at once, its thread left to stop by itself; no more such threads than workers', async () => {
    // Terminating a thread inside an ORT run aborts the whole process once the run returns ("terminate called
    // after throwing an instance of 'Napi::Error'"), so this one must be let be.
    const stalls: boolean[] = [];
    let stopped = 0;
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(join(FIXTURE_LINEAR, '2', 'model.onnx')),
      {
        onWorkerStalled: (_index, _reason, terminated) => stalls.push(terminated),
        onStuckThreadStopped: () => stopped++,
      },
      { workerFile: STALLING_WORKER, runLimitMs: () => 300 },
    );
    try {
      await pool.start();
      await assert.rejects(pool.run(KEY, x(stallingInput(STALL_IN_ORT, 3000))), WorkerUnavailable);
      assert.deepEqual(stalls, [false]);
      assert.equal(pool.stuckThreads, 1);
      // One stuck thread beside one worker: replaced at once, and served.
      await until('the replacement loaded', () => (pool.readyWorkers === 1 ? true : undefined));
      assert.equal((await pool.run(KEY, x([1, 2, 3, 4]))).outputs.y.dims[0], 1);

      // A second while the first is stuck: two stuck threads for a pool of one, so no third thread for now.
      await assert.rejects(pool.run(KEY, x(stallingInput(STALL_IN_ORT, 3000))), WorkerUnavailable);
      assert.equal(pool.stuckThreads, 2);
      assert.equal(pool.readyWorkers, 0);
      assert.match(pool.outage() ?? '', /waiting for a stalled worker's thread to stop/);
      await assert.rejects(pool.run(KEY, x([1, 2, 3, 4])), WorkerUnavailable);

      // The first run returns: its thread stops itself (it answers nothing) and the slot is filled again.
      await until('the first stuck thread stopped', () => (stopped >= 1 ? true : undefined), 10_000);
      await until('a worker loaded', () => (pool.readyWorkers === 1 ? true : undefined), 10_000);
      assert.equal((await pool.run(KEY, x([1, 2, 3, 4]))).outputs.y.dims[0], 1);
      await until('both stuck threads stopped', () => (stopped === 2 ? true : undefined), 10_000);
      assert.equal(pool.stuckThreads, 0);
    } finally {
      await pool.close();
    }
  });
});

describe('a replacement whose load does not finish (loadLimitMs)', () => {
  const temps: string[] = [];
  after(async () => {
    for (const temp of temps) await rm(temp, { recursive: true, force: true });
  });

  /** fixture-linear 2's model.onnx in a directory of its own, for stallLoads' marker. */
  async function modelCopy(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'worker-load-limit-'));
    temps.push(dir);
    await cp(join(FIXTURE_LINEAR, '2'), dir, { recursive: true });
    return join(dir, 'model.onnx');
  }

  // A load of fixture-linear takes a few hundred ms on a busy machine: 1.5 s is hung, not slow.
  const LIMIT_MS = 1500;

  it('hung in JavaScript, in a pool of two: terminated at the limit, counted as a failed load and tried again with backoff', async () => {
    const onnxPath = await modelCopy();
    const failures: Array<{ index: number; reason: string; retryInMs: number; attempt: number }> = [];
    let stopped = 0;
    const pool = new WorkerPool(
      2,
      await fixtureLinearLoad(onnxPath),
      {
        onReplacementFailed: (index, reason, retryInMs, attempt) =>
          failures.push({ index, reason, retryInMs, attempt }),
        onStuckThreadStopped: () => stopped++,
      },
      { workerFile: STALLING_WORKER, loadLimitMs: LIMIT_MS, retryFirstMs: 50, retryMaxMs: 100 },
    );
    try {
      await pool.start();
      const unstall = stallLoads(onnxPath, STALL_IN_JS, 60_000);
      await workerOf(pool, 1).terminate();
      await until('two loads given up on', () => (failures.length >= 2 ? true : undefined));
      assert.deepEqual(
        failures.slice(0, 2).map((f) => [f.index, f.attempt, f.retryInMs]),
        [
          [1, 1, 50],
          [1, 2, 100],
        ],
      );
      assert.equal(failures[0].reason, `inference worker did not load its models within ${LIMIT_MS} ms; terminated`);
      // The other worker serves meanwhile, and the hung loads' threads are terminated, not left running.
      assert.equal(pool.readyWorkers, 1);
      assert.equal((await pool.run(KEY, x([1, 2, 3, 4]))).outputs.y.dims[0], 1);
      await until('their threads stopped', () => (stopped >= 2 ? true : undefined));

      unstall();
      await until('the replacement loaded', () => (pool.readyWorkers === 2 ? true : undefined), 10_000);
      assert.equal(pool.stuckThreads, 0);
    } finally {
      await pool.close();
    }
  });

  it('hung inside ONNX Runtime: not terminated (that aborts the process) but counted stuck until it stops; the next try loads', async () => {
    const onnxPath = await modelCopy();
    const failures: string[] = [];
    let stopped = 0;
    let unstall: (() => void) | undefined;
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(onnxPath),
      {
        onReplacementFailed: (_index, reason) => {
          failures.push(reason);
          unstall?.(); // the next try loads as usual
        },
        onStuckThreadStopped: () => stopped++,
      },
      { workerFile: STALLING_WORKER, loadLimitMs: LIMIT_MS, retryFirstMs: 50 },
    );
    try {
      await pool.start();
      unstall = stallLoads(onnxPath, STALL_IN_ORT, LIMIT_MS + 2500);
      await workerOf(pool).terminate();
      await until('a load given up on', () => (failures.length >= 1 ? true : undefined));
      assert.match(
        failures[0],
        new RegExp(
          `^inference worker did not load its models within ${LIMIT_MS} ms; its thread is inside ONNX Runtime`,
        ),
      );
      assert.equal(pool.stuckThreads, 1);

      await until('the next try loaded', () => (pool.readyWorkers === 1 ? true : undefined), 10_000);
      assert.equal((await pool.run(KEY, x([1, 2, 3, 4]))).outputs.y.dims[0], 1);
      // Its session creation returns: the thread stops by itself, and its load answers nothing.
      await until('the stuck thread stopped', () => (stopped === 1 ? true : undefined), 10_000);
      assert.equal(pool.stuckThreads, 0);
      assert.deepEqual([failures.length, pool.readyWorkers], [1, 1]);
    } finally {
      await pool.close();
    }
  });
});

describe("the boot's load of a model that does not finish (bootLoadLimitMs)", () => {
  const temps: string[] = [];
  after(async () => {
    for (const temp of temps) await rm(temp, { recursive: true, force: true });
  });

  // A model that cannot be made to hang for real: the stalling worker's session creation (stallLoads) stands in.
  async function modelCopy(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'worker-boot-limit-'));
    temps.push(dir);
    await cp(join(FIXTURE_LINEAR, '2'), dir, { recursive: true });
    return join(dir, 'model.onnx');
  }

  const LIMIT_MS = 1500;

  it('hung inside ONNX Runtime: start() fails at the limit naming the folder, model and version; the thread counts stuck', async () => {
    const onnxPath = await modelCopy();
    const stallMs = LIMIT_MS + 4000;
    const unstall = stallLoads(onnxPath, STALL_IN_ORT, stallMs);
    let stopped = 0;
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(onnxPath),
      { onStuckThreadStopped: () => stopped++ },
      { workerFile: STALLING_WORKER, bootLoadLimitMs: LIMIT_MS },
    );
    try {
      const started = performance.now();
      const error = await pool.start().then(
        () => assert.fail('the boot loaded'),
        (e: unknown) => e,
      );
      const tookMs = performance.now() - started;
      assert.ok(error instanceof BootLoadTimeout, String(error));
      assert.equal(error.place, `${join(onnxPath, '..')}: model fixture-linear version 2`);
      assert.equal(error.terminated, false);
      assert.ok(tookMs >= LIMIT_MS && tookMs < stallMs, `failed after ${Math.round(tookMs)} ms`);
      assert.equal(pool.stuckThreads, 1);
      assert.equal(pool.readyWorkers, 0);
    } finally {
      unstall();
      await pool.close();
    }
    // Its session creation returns: the thread stops by itself.
    await until('the stuck thread stopped', () => (stopped === 1 ? true : undefined), 10_000);
  });

  it('hung in JavaScript before its first model: terminated at the limit', async () => {
    const onnxPath = await modelCopy();
    const unstall = stallLoads(onnxPath, STALL_IN_JS, 60_000);
    let stopped = 0;
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(onnxPath),
      { onStuckThreadStopped: () => stopped++ },
      { workerFile: STALLING_WORKER, bootLoadLimitMs: LIMIT_MS },
    );
    try {
      const error = await pool.start().then(
        () => assert.fail('the boot loaded'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof BootLoadTimeout, String(error));
      assert.deepEqual([error.place, error.terminated], [undefined, true]);
      await until('its thread stopped', () => (stopped === 1 ? true : undefined), 10_000);
    } finally {
      unstall();
      await pool.close();
    }
  });

  it('a load within the limit boots and serves', async () => {
    const pool = new WorkerPool(
      1,
      await fixtureLinearLoad(join(FIXTURE_LINEAR, '2', 'model.onnx')),
      {},
      {
        bootLoadLimitMs: 30_000,
      },
    );
    try {
      await pool.start();
      assert.equal((await pool.run(KEY, x([1, 2, 3, 4]))).outputs.y.dims[0], 1);
    } finally {
      await pool.close();
    }
  });
});

describe('a run whose feeds cannot be sent to a worker', () => {
  it(
    'is refused with a WorkerFailure, not thrown from the message handler that hands it over; serving goes on',
    { timeout: 60_000 },
    async () => {
      const pool = new WorkerPool(
        1,
        await fixtureLinearLoad(join(FIXTURE_LINEAR, '2', 'model.onnx')),
        {},
        { depth: 1 },
      );
      try {
        await pool.start();
        const data = new Float32Array(4);
        structuredClone(data.buffer, { transfer: [data.buffer] }); // moved away: postMessage cannot clone it
        const running = pool.run(KEY, x([1, 2, 3, 4]));
        // Waits for the first run's answer: handed over from the worker's message handler.
        const unsendable = pool.run(KEY, { x: { dtype: 'float32', dims: [1, 4], data } });
        await running;
        await assert.rejects(unsendable, (error: unknown) => {
          assert.ok(error instanceof WorkerFailure);
          assert.match(error.message, /could not be handed to a worker.*detached/);
          return true;
        });
        const after = await pool.run(KEY, x([1, 2, 3, 4]));
        assert.equal(after.outputs.y.dims.join(), '1,2');
      } finally {
        await pool.close();
      }
    },
  );
});
