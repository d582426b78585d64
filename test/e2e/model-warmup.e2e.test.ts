import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { anySizeConvModel as convModel } from '../fixtures/onnx-build';
import { REPO_ROOT } from '../fixtures/paths';
import { authedHttp, createTestApp } from '../fixtures/test-app';

const verify = (root: string) =>
  promisify(execFile)(process.execPath, [
    join(REPO_ROOT, 'dist-test', 'src', 'runtime', 'model-registry', 'verify-models.cli.js'),
    root,
  ]);

describe('model warm-up', () => {
  it('a warm-up the model cannot run stops the boot naming the model, its version and its folder', async () => {
    const { root, dir } = convModel();
    await assert.rejects(createTestApp({ MODELS_DIR: root }), (error: Error) => {
      assert.ok(
        error.message.includes(`${dir}: model any-size-conv version 1: warm-up run on zeros of x [1, 1, 1, 1]`),
      );
      assert.match(error.message, /warmupShape/);
      return true;
    });
  });

  it('models:verify fails on such a model as the boot would', async () => {
    const { root, dir } = convModel();
    await assert.rejects(verify(root), (error: Error & { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.ok(error.stderr.includes(`${dir}: model any-size-conv version 1: warm-up run on zeros of x [1, 1, 1, 1]`));
      return true;
    });
  });

  it("an input's warmupShape in model.json lets it boot, verify and serve any size", async () => {
    const { root } = convModel([1, 1, 8, 8]);
    const { stdout } = await verify(root);
    assert.match(stdout, /ok {2}generic\/any-size-conv\/1/);
    const app = await createTestApp({ MODELS_DIR: root });
    try {
      const res = await authedHttp(app)
        .post('/v2/models/any-size-conv/infer')
        .send({ inputs: [{ name: 'x', shape: [1, 1, 4, 4], datatype: 'FP32', data: new Array(16).fill(1) }] })
        .expect(200);
      assert.deepEqual(res.body.outputs[0].shape, [1, 1, 2, 2]);
      assert.deepEqual(res.body.outputs[0].data, [9, 9, 9, 9]);
    } finally {
      await app.close();
    }
  });

  it('a warmupShape that changes a fixed dimension is refused naming model.json', async () => {
    const { root, dir } = convModel([1, 3, 8, 8]);
    await assert.rejects(createTestApp({ MODELS_DIR: root }), (error: Error) => {
      assert.ok(error.message.includes(join(dir, 'model.json')));
      assert.match(
        error.message,
        /warmupShape \[1, 3, 8, 8\] must keep the fixed dimensions of shape \[-1, 1, -1, -1\]/,
      );
      return true;
    });
  });
});
