import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createOnProvider,
  ExecutionProviderError,
  ExecutionProviderName,
} from '../../src/runtime/execution-provider/execution-provider';
import { createSession } from '../../src/runtime/worker-pool/ort-session';
import { join } from 'node:path';
import { FIXTURE_MODELS } from '../fixtures/paths';

function factory(cudaWorks: boolean) {
  const tried: ExecutionProviderName[] = [];
  const create = (provider: ExecutionProviderName): Promise<string> => {
    tried.push(provider);
    if (provider === 'cuda' && !cudaWorks) return Promise.reject(new Error('Failed to load shared library\nmore'));
    return Promise.resolve(`session-on-${provider}`);
  };
  return { create, tried };
}

describe('execution provider choice', () => {
  it('cpu never tries CUDA', async () => {
    const { create, tried } = factory(true);
    const choice = await createOnProvider('cpu', create);
    assert.deepEqual(tried, ['cpu']);
    assert.equal(choice.provider, 'cpu');
    assert.equal(choice.fallbackReason, undefined);
  });

  it('auto uses CUDA when it starts', async () => {
    const { create } = factory(true);
    const choice = await createOnProvider('auto', create);
    assert.equal(choice.provider, 'cuda');
    assert.equal(choice.session, 'session-on-cuda');
  });

  it('auto falls back to the CPU and says why', async () => {
    const { create, tried } = factory(false);
    const choice = await createOnProvider('auto', create);
    assert.deepEqual(tried, ['cuda', 'cpu']);
    assert.equal(choice.provider, 'cpu');
    assert.equal(choice.fallbackReason, 'CUDA unavailable: Failed to load shared library');
  });

  it('cuda that cannot start is an error naming the fix, not a silent fallback', async () => {
    const { create, tried } = factory(false);
    await assert.rejects(createOnProvider('cuda', create), (error: unknown) => {
      assert.ok(error instanceof ExecutionProviderError);
      assert.match(error.message, /INFERENCE_DEVICE=cuda/);
      assert.match(error.message, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
      return true;
    });
    assert.deepEqual(tried, ['cuda']);
  });

  it('with the real ONNX Runtime on this host, auto reports the provider it got', async () => {
    const choice = await createSession(
      join(FIXTURE_MODELS, 'generic', 'fixture-linear', '1', 'model.onnx'),
      'auto',
      1,
      0,
    );
    assert.ok(choice.provider === 'cuda' || (choice.provider === 'cpu' && choice.fallbackReason));
    await choice.session.release();
  });
});
