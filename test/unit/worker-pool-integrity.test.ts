import assert from 'node:assert/strict';
import { copyFile, cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { readModelFile } from '../../src/runtime/model-registry/model-registry';
import { WorkerPool } from '../../src/runtime/worker-pool/worker-pool';
import { FIXTURE_LINEAR, fixtureLinearLoad } from '../fixtures/worker-load';

const loadOf = fixtureLinearLoad;

describe('a worker loads only the model bytes the manifest vouches for', () => {
  let dir: string;
  const temps: string[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'worker-models-'));
    temps.push(dir);
    await cp(join(FIXTURE_LINEAR, '2'), dir, { recursive: true });
  });
  after(async () => {
    for (const temp of temps) await rm(temp, { recursive: true, force: true });
  });

  it('refuses a model.onnx changed between the registry check and the load, naming the file', async () => {
    const onnxPath = join(dir, 'model.onnx');
    const load = await loadOf(onnxPath);
    await copyFile(join(FIXTURE_LINEAR, '1', 'model.onnx'), onnxPath);
    const pool = new WorkerPool(1, load);
    try {
      await assert.rejects(pool.start(), (error: Error) => {
        assert.match(error.message, /sha256 mismatch/);
        assert.ok(error.message.includes(onnxPath), error.message);
        return true;
      });
      assert.equal(pool.readyWorkers, 0);
    } finally {
      await pool.close();
    }
  });

  it('loads at boot the bytes the registry read and hashed, without reading model.onnx again', async () => {
    const onnxPath = join(dir, 'model.onnx');
    const load = await loadOf(onnxPath);
    const bytes = await readModelFile(onnxPath);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), load.models[0].sha256);
    // Replaced after the check: the workers load what was checked, and never read the file.
    await copyFile(join(FIXTURE_LINEAR, '1', 'model.onnx'), onnxPath);
    const pool = new WorkerPool(2, { ...load, models: [{ ...load.models[0], bytes }] });
    try {
      await pool.start();
      assert.equal(pool.readyWorkers, 2);
      const { outputs } = await pool.run('fixture-linear@2', {
        x: { dtype: 'float32', dims: [1, 4], data: new Float32Array([1, 2, 3, 4]) },
      });
      // Version 2's answer, not version 1's (now on disk).
      const direct = await ort.InferenceSession.create(join(FIXTURE_LINEAR, '2', 'model.onnx'));
      const expected = await direct.run({ x: new ort.Tensor('float32', new Float32Array([1, 2, 3, 4]), [1, 4]) });
      await direct.release();
      assert.deepEqual([...(outputs.y.data as Float32Array)], [...(expected.y.data as Float32Array)]);
    } finally {
      await pool.close();
    }
  });

  it('a worker replaced after a crash does not serve a model.onnx swapped since boot', async () => {
    const onnxPath = join(dir, 'model.onnx');
    let reloaded!: (outcome: string) => void;
    const outcome = new Promise<string>((resolve) => (reloaded = resolve));
    let loads = 0;
    const pool = new WorkerPool(1, await loadOf(onnxPath), {
      onWorkerReady: () => {
        if (++loads === 2) reloaded('loaded again');
      },
      onReplacementFailed: (_index, reason) => reloaded(reason),
    });
    try {
      await pool.start();
      await copyFile(join(FIXTURE_LINEAR, '1', 'model.onnx'), onnxPath);
      const slots = (pool as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots;
      await slots[0].worker.terminate();
      const reason = await outcome;
      assert.match(reason, /sha256 mismatch: model\.json says [0-9a-f]{64}, file is [0-9a-f]{64}/);
      assert.equal(pool.readyWorkers, 0, 'no worker serves the swapped file');
    } finally {
      await pool.close();
    }
  });
});

describe('closing the pool', () => {
  it('lets a replacement worker still loading finish before it stops the workers', async () => {
    // Terminated while ONNX Runtime created a session, such a worker took the process down
    // ("terminate called after throwing an instance of 'Napi::Error'"), so close waits for its load.
    let loads = 0;
    const pool = new WorkerPool(1, await loadOf(join(FIXTURE_LINEAR, '2', 'model.onnx')), {
      onWorkerReady: () => void loads++,
    });
    await pool.start();
    const slots = (pool as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots;
    await slots[0].worker.terminate();
    assert.equal(pool.readyWorkers, 0, 'the replacement is loading');
    await pool.close();
    assert.equal(loads, 2, 'the replacement finished loading before it was stopped');
    await assert.rejects(pool.run('fixture-linear@2', {}), /closed/);
  });
});
