import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../src/common/errors/app-error';
import { Batcher, BatcherOptions, LONE_TRAFFIC_MS, RunBatch } from '../../src/runtime/batcher/batcher';
import { Tensor } from '../../src/runtime/tensor';
import { TensorPool } from '../../src/runtime/tensor-pool';

function rows(values: number[][]): Record<string, Tensor> {
  return { x: { dtype: 'float32', dims: [values.length, values[0].length], data: Float32Array.from(values.flat()) } };
}

/** A runner that doubles its input and lets the test decide when each batch finishes. */
function controlledRunner() {
  const calls: Array<{ dims: number[]; release: () => void }> = [];
  const run: RunBatch = (inputs) =>
    new Promise((resolve) => {
      const x = inputs.x;
      calls.push({
        dims: x.dims,
        release: () =>
          resolve({
            outputs: { y: { dtype: 'float32', dims: x.dims, data: (x.data as Float32Array).map((v) => v * 2) } },
            computeMs: 1,
          }),
      });
    });
  return { run, calls };
}

const base: BatcherOptions = {
  maxBatchSize: 8,
  maxQueueDelayMs: 5,
  maxQueueSize: 100,
  maxConcurrentBatches: 1,
  batchable: true,
};

async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((r) => setImmediate(r));
}

describe('Batcher', () => {
  it('stacks requests that arrive together into one run and splits the outputs back', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 50 }, run);
    const a = batcher.submit(rows([[1, 2]]), 1000);
    const b = batcher.submit(
      rows([
        [3, 4],
        [5, 6],
      ]),
      1000,
    );
    const c = batcher.submit(rows([[7, 8]]), 1000);
    await until(() => calls.length === 1);
    assert.deepEqual(calls[0].dims, [4, 2]);
    calls[0].release();
    const [ra, rb, rc] = await Promise.all([a, b, c]);
    assert.deepEqual([...(ra.outputs.y.data as Float32Array)], [2, 4]);
    assert.deepEqual(rb.outputs.y.dims, [2, 2]);
    assert.deepEqual([...(rb.outputs.y.data as Float32Array)], [6, 8, 10, 12]);
    assert.deepEqual([...(rc.outputs.y.data as Float32Array)], [14, 16]);
    assert.equal(ra.batchSize, 4);
  });

  it('sends a full batch without waiting for the queue delay', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxBatchSize: 2, maxQueueDelayMs: 60_000 }, run);
    const done = [batcher.submit(rows([[1, 1]]), 120_000), batcher.submit(rows([[2, 2]]), 120_000)];
    await until(() => calls.length === 1);
    assert.deepEqual(calls[0].dims, [2, 2]);
    calls[0].release();
    await Promise.all(done);
  });

  it('never exceeds maxBatchSize, and gathers requests into the next batch while the runner is busy', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxBatchSize: 3, maxQueueDelayMs: 0 }, run);
    const first = batcher.submit(rows([[0, 0]]), 10_000);
    await until(() => calls.length === 1);
    const rest = Array.from({ length: 5 }, (_, i) => batcher.submit(rows([[i, i]]), 10_000));
    assert.equal(batcher.waiting, 5);
    calls[0].release();
    await until(() => calls.length === 2);
    assert.deepEqual(calls[1].dims, [3, 2]);
    calls[1].release();
    await until(() => calls.length === 3);
    assert.deepEqual(calls[2].dims, [2, 2]);
    calls[2].release();
    await Promise.all([first, ...rest]);
  });

  it('with maxQueueDelayMs 0, sends the requests of one event-loop turn as one batch, and waits for no timer', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0, maxConcurrentBatches: 2 }, run);
    // Three requests read in the same turn (one socket read with several requests, say) leave together.
    const together = [1, 2, 3].map((v) => batcher.submit(rows([[v, v]]), 10_000));
    assert.equal(calls.length, 0, 'nothing leaves before the turn ends');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      calls.map((c) => c.dims),
      [[3, 2]],
    );
    // A request of a later turn, with a runner free, leaves at the end of its own turn: no timer.
    const later = batcher.submit(rows([[4, 4]]), 10_000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(calls[1]?.dims, [1, 2]);
    calls.forEach((c) => c.release());
    const answers = await Promise.all([...together, later]);
    assert.deepEqual(
      answers.map((a) => Array.from(a.outputs.y.data as Float32Array)),
      [
        [2, 2],
        [4, 4],
        [6, 6],
        [8, 8],
      ],
    );
  });

  it('waits maxQueueDelayMs for company only while requests overlap: a lone request leaves at the end of its turn', async () => {
    let clock = 0;
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxBatchSize: 2, maxQueueDelayMs: 60_000 }, run, {}, () => clock);
    // Nothing queued or running, no overlap yet: one client at a time. No 60 s wait.
    const lone = batcher.submit(rows([[1, 1]]), 120_000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(calls[0]?.dims, [1, 2], 'a lone request leaves at the end of its turn');
    // A request that arrives while the first runs overlaps it: from now on the delay applies.
    const second = batcher.submit(rows([[2, 2]]), 120_000);
    calls[0].release();
    await lone;
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.equal(calls.length, 1, 'with overlapping traffic it waits for company');
    const third = batcher.submit(rows([[3, 3]]), 120_000);
    await until(() => calls.length === 2);
    assert.deepEqual(calls[1].dims, [2, 2], 'the company it waited for joined its batch');
    calls[1].release();
    await Promise.all([second, third]);
    // LONE_TRAFFIC_MS without an overlap: lone again.
    clock += LONE_TRAFFIC_MS + 1;
    const later = batcher.submit(rows([[4, 4]]), 120_000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(calls[2]?.dims, [1, 2]);
    calls[2].release();
    await later;
  });

  it('keeps requests with different trailing dimensions in separate batches', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0, maxConcurrentBatches: 2 }, run);
    const a = batcher.submit(rows([[1, 2]]), 1000);
    const b = batcher.submit(rows([[1, 2, 3]]), 1000);
    await until(() => calls.length === 2);
    assert.deepEqual(
      calls.map((c) => c.dims),
      [
        [1, 2],
        [1, 3],
      ],
    );
    calls.forEach((c) => c.release());
    await Promise.all([a, b]);
  });

  it('runs each request alone when the model has no batch axis', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, batchable: false, maxConcurrentBatches: 1 }, run);
    const a = batcher.submit(rows([[1, 2]]), 1000);
    const b = batcher.submit(rows([[3, 4]]), 1000);
    await until(() => calls.length === 1);
    assert.deepEqual(calls[0].dims, [1, 2]);
    calls[0].release();
    await until(() => calls.length === 2);
    calls[1].release();
    await Promise.all([a, b]);
  });

  it('refuses at once with QUEUE_FULL and a Retry-After past maxQueueSize', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxQueueSize: 2, maxQueueDelayMs: 0 }, run);
    const running = batcher.submit(rows([[0, 0]]), 10_000);
    await until(() => calls.length === 1);
    const queued = [batcher.submit(rows([[1, 1]]), 10_000), batcher.submit(rows([[2, 2]]), 10_000)];
    await assert.rejects(batcher.submit(rows([[3, 3]]), 10_000), (error: unknown) => {
      assert.ok(error instanceof AppError);
      assert.equal(error.code, 'QUEUE_FULL');
      assert.equal(error.retryAfterSeconds, 1);
      return true;
    });
    calls[0].release();
    await until(() => calls.length === 2);
    calls[1].release();
    await Promise.all([running, ...queued]);
  });

  it('drops a request whose deadline passes while it waits, without running it', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0 }, run);
    const blocking = batcher.submit(rows([[0, 0]]), 10_000);
    await until(() => calls.length === 1);
    const late = batcher.submit(rows([[9, 9]]), 5);
    await assert.rejects(late, (error: unknown) => error instanceof AppError && error.code === 'DEADLINE_EXCEEDED');
    assert.equal(batcher.waiting, 0);
    calls[0].release();
    await blocking;
    assert.equal(calls.length, 1, 'the expired request never reached the runner');
  });

  it('drops an expired request at dispatch time even if its timer has not fired yet', async () => {
    let clock = 0;
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0 }, run, {}, () => clock);
    const blocking = batcher.submit(rows([[0, 0]]), 10_000);
    await until(() => calls.length === 1);
    const late = batcher.submit(rows([[1, 1]]), 50);
    const fresh = batcher.submit(rows([[2, 2]]), 10_000);
    clock = 100; // logical time passes; the real 50 ms timer has not fired
    calls[0].release();
    await assert.rejects(late, (error: unknown) => error instanceof AppError && error.code === 'DEADLINE_EXCEEDED');
    await until(() => calls.length === 2);
    assert.deepEqual(calls[1].dims, [1, 2], 'only the live request is computed');
    calls[1].release();
    await Promise.all([blocking, fresh]);
  });

  it("answers a request whose run has not answered by its deadline (a stalled worker), and drops the run's late answer", async () => {
    const { run, calls } = controlledRunner();
    const seen: string[] = [];
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0 }, run, { outcome: (o) => seen.push(o) });
    const started = performance.now();
    const stuck = batcher.submit(rows([[1, 1]]), 50);
    const company = batcher.submit(rows([[2, 2]]), 10_000);
    await until(() => calls.length === 1);
    await assert.rejects(
      stuck,
      (error: unknown) =>
        error instanceof AppError && error.code === 'DEADLINE_EXCEEDED' && /did not answer/.test(error.detail),
    );
    assert.ok(performance.now() - started < 5000);
    calls[0].release(); // the run answers at last: the one still waiting gets it, the other is not answered twice
    assert.deepEqual([...((await company).outputs.y.data as Float32Array)], [4, 4]);
    await batcher.drain();
    assert.deepEqual(seen.sort(), ['deadline_exceeded', 'ok']);
  });

  it('does not run the requests of a batch refused with MODEL_NOT_READY again one by one', async () => {
    let runs = 0;
    const seen: string[] = [];
    const batcher = new Batcher(
      { ...base, maxQueueDelayMs: 0 },
      () => {
        runs++;
        return Promise.reject(
          new AppError('MODEL_NOT_READY', 'no inference worker is loaded', { retryAfterSeconds: 1 }),
        );
      },
      { outcome: (o) => seen.push(o) },
    );
    const requests = [1, 2, 3].map((v) => batcher.submit(rows([[v, v]]), 1000));
    for (const request of requests) {
      await assert.rejects(request, (error: unknown) => error instanceof AppError && error.code === 'MODEL_NOT_READY');
    }
    assert.equal(runs, 1, 'no worker would have taken them one by one either');
    assert.deepEqual(seen, ['not_ready', 'not_ready', 'not_ready']);
  });

  it('fails every request of a batch whose run fails, and keeps serving', async () => {
    let fail = true;
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0 }, (inputs) =>
      fail ? Promise.reject(new Error('boom')) : Promise.resolve({ outputs: inputs, computeMs: 0 }),
    );
    await assert.rejects(batcher.submit(rows([[1, 1]]), 1000), /boom/);
    fail = false;
    const ok = await batcher.submit(rows([[1, 1]]), 1000);
    assert.deepEqual([...(ok.outputs.x.data as Float32Array)], [1, 1]);
  });

  it('runs the requests of a failed stacked run again one by one: only the one whose input fails is refused', async () => {
    const runs: number[][] = [];
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0 }, (inputs) => {
      const values = [...(inputs.x.data as Float32Array)];
      runs.push(values);
      return values.includes(-1)
        ? Promise.reject(new Error('the run failed on -1'))
        : Promise.resolve({ outputs: inputs, computeMs: 0 });
    });
    const [good, poison, other] = [
      batcher.submit(rows([[1, 1]]), 1000),
      batcher.submit(rows([[-1, -1]]), 1000),
      batcher.submit(rows([[3, 3]]), 1000),
    ];
    await assert.rejects(poison, /failed on -1/);
    assert.deepEqual([...((await good).outputs.x.data as Float32Array)], [1, 1]);
    assert.deepEqual([...((await other).outputs.x.data as Float32Array)], [3, 3]);
    assert.equal((await other).batchSize, 1);
    assert.deepEqual(runs, [
      [1, 1, -1, -1, 3, 3],
      [1, 1],
      [-1, -1],
      [3, 3],
    ]);
  });

  it("keeps given inputs out of the pool until runAlone has run them, when a stacked run's split fails", async () => {
    const pool = new TensorPool();
    const width = 20_000; // 80 KB a row: pooled
    const run: RunBatch = (inputs, owned) => {
      const x = inputs.x;
      if (x.dims[0] > 1) {
        // An output not on the batch axis: the split throws, and each request runs alone.
        return Promise.resolve({
          outputs: { y: x, c: { dtype: 'float32', dims: [5], data: Float32Array.of(1, 2, 3, 4, 5) } },
          computeMs: 1,
        });
      }
      // Another request is served from the pool meanwhile, and writes into its buffer.
      (pool.allocate('float32', [1, width]).data as Float32Array).fill(-1);
      const y: Tensor = { dtype: 'float32', dims: x.dims, data: Float32Array.from(x.data as Float32Array) };
      if (owned) structuredClone(x.data.buffer, { transfer: [x.data.buffer as ArrayBuffer] }); // moved to a worker
      return Promise.resolve({ outputs: { y }, computeMs: 1 });
    };
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0 }, run, {}, undefined, pool);
    const given = [1, 2, 3].map((v) => {
      const tensor = pool.allocate('float32', [1, width]);
      (tensor.data as Float32Array).fill(v);
      return tensor;
    });
    const results = await Promise.all(given.map((x) => batcher.submit({ x }, 10_000, true)));
    results.forEach((result, i) => {
      assert.equal(result.batchSize, 1, 'run alone');
      const y = result.outputs.y.data as Float32Array;
      assert.equal(y.length, width);
      assert.ok(
        y.every((v) => v === i + 1),
        `request ${i + 1} is answered with its own input`,
      );
    });
    // Nothing moved away is served again.
    assert.equal(pool.allocate('float32', [1, width]).data.length, width);
  });

  it('recycles given inputs once a stacked run has been split back', async () => {
    const recycled: ArrayBuffer[] = [];
    const pool = new TensorPool();
    const buffers = { allocate: pool.allocate.bind(pool), recycle: (b: ArrayBuffer) => recycled.push(b) };
    const run: RunBatch = (inputs) => Promise.resolve({ outputs: { y: inputs.x }, computeMs: 1 });
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 0 }, run, {}, undefined, buffers);
    const given = [1, 2].map(() => pool.allocate('float32', [1, 20_000]));
    await Promise.all(given.map((x) => batcher.submit({ x }, 10_000, true)));
    assert.deepEqual(
      recycled,
      given.map((t) => t.data.buffer),
    );
  });

  it('drain() finishes queued work and then refuses new requests', async () => {
    const { run, calls } = controlledRunner();
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 60_000 }, run);
    const queued = batcher.submit(rows([[1, 1]]), 120_000);
    const drained = batcher.drain();
    await until(() => calls.length === 1);
    calls[0].release();
    await queued;
    await drained;
    await assert.rejects(
      batcher.submit(rows([[1, 1]]), 1000),
      (e: unknown) => e instanceof AppError && e.code === 'SHUTTING_DOWN',
    );
  });

  it('reports outcomes, batch sizes and queue depth to its observer', async () => {
    const seen: string[] = [];
    const batches: number[] = [];
    const batcher = new Batcher(
      { ...base, maxQueueDelayMs: 0, maxQueueSize: 1, maxConcurrentBatches: 1 },
      (inputs) => new Promise((r) => setTimeout(() => r({ outputs: inputs, computeMs: 0 }), 5)),
      { outcome: (o) => seen.push(o), batch: (n) => batches.push(n) },
    );
    const a = batcher.submit(rows([[1, 1]]), 1000);
    await new Promise((r) => setImmediate(r)); // a leaves at the end of its turn
    const b = batcher.submit(rows([[2, 2]]), 1000);
    await assert.rejects(batcher.submit(rows([[3, 3]]), 1000));
    await Promise.all([a, b]);
    assert.deepEqual(seen.sort(), ['ok', 'ok', 'queue_full']);
    assert.deepEqual(batches, [1, 1]);
  });

  it("marks stacked tensors as its own (movable) and a lone request as the caller's", async () => {
    const owned: boolean[] = [];
    const batcher = new Batcher({ ...base, maxQueueDelayMs: 20 }, (inputs, mine) => {
      owned.push(mine);
      return Promise.resolve({ outputs: inputs, computeMs: 0 });
    });
    await Promise.all([batcher.submit(rows([[1, 1]]), 1000), batcher.submit(rows([[2, 2]]), 1000)]);
    await batcher.submit(rows([[3, 3]]), 1000);
    assert.deepEqual(owned, [true, false]);
  });
});
