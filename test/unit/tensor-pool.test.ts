import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Batcher, BatcherOptions, RunBatch } from '../../src/runtime/batcher/batcher';
import { Tensor } from '../../src/runtime/tensor';
import { POOLED_FROM_BYTES, sizeClass, TensorPool } from '../../src/runtime/tensor-pool';
import { WorkerPool } from '../../src/runtime/worker-pool/worker-pool';
import { FIXTURE_LINEAR, fixtureLinearLoad } from '../fixtures/worker-load';

const LARGE = POOLED_FROM_BYTES / 4; // float32 elements in the smallest pooled buffer

describe('TensorPool', () => {
  it('rounds a large size up by at most an eighth, to a size that is its own class', () => {
    for (let bytes = POOLED_FROM_BYTES; bytes < 64 * 1024 * 1024; bytes = Math.ceil(bytes * 1.0137) + 3) {
      const size = sizeClass(bytes);
      assert.ok(size >= bytes && size <= bytes * 1.125, `${bytes} -> ${size}`);
      assert.equal(sizeClass(size), size);
    }
    assert.equal(sizeClass(1000), 1000, 'small sizes are left as they are');
  });

  it('serves a buffer given back, zero-filled, as a view of exactly the asked dims', () => {
    const pool = new TensorPool();
    const first = pool.allocate('float32', [1000, 31]);
    assert.equal(first.data.length, 31_000);
    assert.equal(first.data.buffer.byteLength, sizeClass(124_000));
    (first.data as Float32Array).fill(7);
    pool.recycle(first.data.buffer as ArrayBuffer);
    assert.equal(pool.held, sizeClass(124_000));
    // A nearby size shares the class.
    const again = pool.allocate('float32', [995, 31]);
    assert.ok(again.data.buffer === first.data.buffer, 'the same buffer');
    assert.equal(again.data.length, 995 * 31);
    assert.ok(
      (again.data as Float32Array).every((v) => v === 0),
      'zero-filled',
    );
    assert.equal(pool.held, 0);
    // Other dtypes view the same kind of buffer.
    const ints = pool.allocate('int64', [LARGE]);
    assert.ok(ints.data instanceof BigInt64Array);
    assert.equal(ints.data.length, LARGE);
  });

  it('keeps small tensors out, and buffers it did not size, detached ones and repeats', () => {
    const pool = new TensorPool();
    const small = pool.allocate('float32', [10, 31]);
    assert.equal(small.data.buffer.byteLength, 1240);
    pool.recycle(small.data.buffer as ArrayBuffer);
    pool.recycle(new ArrayBuffer(POOLED_FROM_BYTES + 4)); // not a class size: a caller's own array
    const moved = new ArrayBuffer(POOLED_FROM_BYTES);
    structuredClone(moved, { transfer: [moved] }); // detached: byteLength 0
    pool.recycle(moved);
    assert.equal(pool.held, 0);
    const kept = new ArrayBuffer(POOLED_FROM_BYTES);
    pool.recycle(kept);
    pool.recycle(kept);
    assert.equal(pool.held, POOLED_FROM_BYTES, 'one buffer is held once');
  });

  it('drops a buffer moved away (detached) after it was given back, instead of serving it', () => {
    const pool = new TensorPool();
    const buffer = new ArrayBuffer(POOLED_FROM_BYTES);
    pool.recycle(buffer);
    assert.equal(pool.held, POOLED_FROM_BYTES);
    structuredClone(buffer, { transfer: [buffer] }); // moved to a worker while the pool held it
    const fresh = pool.allocate('float32', [POOLED_FROM_BYTES / 4]);
    assert.equal(fresh.data.length, POOLED_FROM_BYTES / 4);
    assert.notEqual(fresh.data.buffer, buffer);
    assert.equal(pool.held, 0, 'the detached buffer is no longer counted');
  });

  it('holds at most perSize buffers of a size and maxBytes in all', () => {
    const pool = new TensorPool(5 * POOLED_FROM_BYTES, 2);
    for (let i = 0; i < 3; i++) pool.recycle(new ArrayBuffer(POOLED_FROM_BYTES));
    assert.equal(pool.held, 2 * POOLED_FROM_BYTES);
    const bigger = sizeClass(2 * POOLED_FROM_BYTES + 1);
    pool.recycle(new ArrayBuffer(bigger));
    assert.equal(pool.held, 2 * POOLED_FROM_BYTES + bigger);
    pool.recycle(new ArrayBuffer(bigger)); // would pass maxBytes
    assert.equal(pool.held, 2 * POOLED_FROM_BYTES + bigger);
  });
});

function input(rows: number, value: number): Record<string, Tensor> {
  return { x: { dtype: 'float32', dims: [rows, 4], data: new Float32Array(rows * 4).fill(value) } };
}

describe('Batcher with given inputs', () => {
  const options: BatcherOptions = {
    maxBatchSize: 64,
    maxQueueDelayMs: 0,
    maxQueueSize: 10,
    maxConcurrentBatches: 1,
    batchable: true,
  };

  it('lets a lone given input move, copies one not given, and takes back given buffers it stacked', async () => {
    const owned: boolean[] = [];
    let fail = false;
    const run: RunBatch = (inputs, own) => {
      owned.push(own);
      if (fail && inputs.x.dims[0] > 1) return Promise.reject(new Error('stacked run failed'));
      return Promise.resolve({ outputs: { y: inputs.x }, computeMs: 1 });
    };
    const recycled: ArrayBuffer[] = [];
    const pool = new TensorPool();
    const batcher = new Batcher(options, run, {}, undefined, {
      allocate: (dtype, dims) => pool.allocate(dtype, dims),
      recycle: (buffer) => recycled.push(buffer),
    });
    await batcher.submit(input(1, 1), 1000, true);
    await batcher.submit(input(1, 1), 1000);
    assert.deepEqual(owned, [true, false]);

    // Stacked (the same turn): the stack is the batcher's; the given input's buffer comes back, the other's does not.
    owned.length = 0;
    const given = input(1, 2);
    const kept = input(1, 3);
    const both = await Promise.all([batcher.submit(given, 1000, true), batcher.submit(kept, 1000)]);
    assert.deepEqual(owned, [true]);
    assert.equal(recycled.length, 1);
    assert.ok(recycled[0] === given.x.data.buffer, "the given input's buffer");
    assert.deepEqual([...(both[1].outputs.y.data as Float32Array)], [3, 3, 3, 3]);

    // A stacked run that fails runs each alone from its own input, which is not taken back first.
    owned.length = 0;
    recycled.length = 0;
    fail = true;
    const again = await Promise.all([batcher.submit(input(1, 4), 1000, true), batcher.submit(input(1, 5), 1000)]);
    assert.deepEqual(owned, [true, true, false]);
    assert.deepEqual(recycled, []);
    assert.deepEqual([...(again[0].outputs.y.data as Float32Array)], [4, 4, 4, 4]);
  });
});

describe('the inference worker gives a moved input back', () => {
  it('returns the buffer with the result, and the same buffer serves a second run with the right answer', async () => {
    const onnxPath = join(FIXTURE_LINEAR, '2', 'model.onnx');
    const workers = new WorkerPool(1, await fixtureLinearLoad(onnxPath));
    const direct = await ort.InferenceSession.create(onnxPath);
    const pool = new TensorPool();
    try {
      await workers.start();
      const rows = 5000; // 80 KB: moved, not cloned
      const values = Float32Array.from({ length: rows * 4 }, (_, i) => (i % 13) / 13);
      const expected = (await direct.run({ x: new ort.Tensor('float32', values, [rows, 4]) })).y.data as Float32Array;
      let last: ArrayBuffer | undefined;
      for (let round = 0; round < 2; round++) {
        const x = pool.allocate('float32', [rows, 4]);
        if (round === 1) assert.equal(x.data.byteLength, rows * 16, 'a view of the asked size over the reused buffer');
        (x.data as Float32Array).set(values);
        const result = await workers.run('fixture-linear@2', { x }, true);
        assert.equal(x.data.byteLength, 0, "moved: the caller's view is detached");
        assert.equal(result.returned.length, 1);
        assert.equal(result.returned[0].byteLength, sizeClass(rows * 16));
        assert.deepEqual([...(result.outputs.y.data as Float32Array)], [...expected]);
        pool.recycle(result.returned[0]);
        assert.equal(pool.held, sizeClass(rows * 16));
        last = result.returned[0];
      }
      assert.ok(last);
    } finally {
      await direct.release();
      await workers.close();
    }
  });
});
