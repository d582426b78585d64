import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { onnxModel, saveModel } from '../fixtures/onnx-build';
import { authedHttp, createTestApp } from '../fixtures/test-app';

/** Models built here: y = 3x on INT64, y = Not(x) on BOOL, and y = x where the manifest says y is [-1, 2], x [-1, -1]. */
function modelsDir(): string {
  const root = mkdtempSync(join(tmpdir(), 'oip-outputs-models-'));
  saveModel(
    root,
    { name: 'int64-triple' },
    onnxModel(
      [{ op: 'Mul', inputs: ['x', 'k'], outputs: ['y'] }],
      [{ name: 'x', elem: 'int64', shape: ['N', 1] }],
      [{ name: 'y', elem: 'int64', shape: ['N', 1] }],
      [{ name: 'k', elem: 'int64', dims: [], values: [3] }],
    ),
    {
      inputs: [{ name: 'x', dtype: 'int64', shape: [-1, 1] }],
      outputs: [{ name: 'y', dtype: 'int64', shape: [-1, 1] }],
    },
  );
  saveModel(
    root,
    { name: 'bool-not' },
    onnxModel(
      [{ op: 'Not', inputs: ['x'], outputs: ['y'] }],
      [{ name: 'x', elem: 'bool', shape: ['N', 4] }],
      [{ name: 'y', elem: 'bool', shape: ['N', 4] }],
    ),
    { inputs: [{ name: 'x', dtype: 'bool', shape: [-1, 4] }], outputs: [{ name: 'y', dtype: 'bool', shape: [-1, 4] }] },
  );
  saveModel(
    root,
    { name: 'shape-liar' },
    onnxModel(
      [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
      [{ name: 'x', elem: 'float', shape: ['N', 'K'] }],
      [{ name: 'y', elem: 'float', shape: ['N', 'K'] }],
    ),
    {
      inputs: [{ name: 'x', dtype: 'float32', shape: [-1, -1] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [-1, 2] }],
    },
  );
  return root;
}

/** A binary-extension body: the JSON header, then `bytes`. */
function binaryBody(header: unknown, bytes: Buffer): { body: Buffer; headerLength: string } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, bytes]), headerLength: String(json.length) };
}

describe('OIP outputs a JSON number or the manifest cannot carry', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof authedHttp>;
  before(async () => {
    app = await createTestApp({ MODELS_DIR: modelsDir() });
    http = authedHttp(app);
  });
  after(() => app.close());

  it('an INT64 output past 2^53 is 422 naming the output as JSON, and exact as binary data', async () => {
    const max = Number.MAX_SAFE_INTEGER;
    const input = { name: 'x', shape: [1, 1], datatype: 'INT64', data: [max] };
    const refused = await http
      .post('/v2/models/int64-triple/infer')
      .send({ inputs: [input] })
      .expect(422);
    assert.match(refused.body.error, /^outputs\.y: element 0 is 27021597764222973, .*binary_data_output/);

    const ok = await http
      .post('/v2/models/int64-triple/infer')
      .send({ inputs: [{ ...input, data: [3] }] })
      .expect(200);
    assert.deepEqual(ok.body.outputs[0].data, [9]);

    const binary = await http
      .post('/v2/models/int64-triple/infer')
      .send({ inputs: [input], parameters: { binary_data_output: true } })
      .buffer(true)
      .parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      })
      .expect(200);
    const length = Number(binary.headers['inference-header-content-length']);
    const bytes = (binary.body as Buffer).subarray(length);
    assert.equal(bytes.readBigInt64LE(0), 3n * BigInt(max));
  });

  it('binary BOOL bytes other than 0 and 1 are 400 naming inputs[0].data', async () => {
    const header = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'BOOL', parameters: { binary_data_size: 4 } }] };
    const bad = binaryBody(header, Buffer.from([0, 1, 2, 255]));
    const refused = await http
      .post('/v2/models/bool-not/infer')
      .set('Content-Type', 'application/octet-stream')
      .set('Inference-Header-Content-Length', bad.headerLength)
      .send(bad.body)
      .expect(400);
    assert.match(refused.body.error, /^inputs\[0\]\.data: element 2 is byte 2; a BOOL byte must be 0 or 1/);

    const good = binaryBody(header, Buffer.from([0, 1, 1, 0]));
    const ok = await http
      .post('/v2/models/bool-not/infer')
      .set('Content-Type', 'application/octet-stream')
      .set('Inference-Header-Content-Length', good.headerLength)
      .send(good.body)
      .expect(200);
    assert.deepEqual(ok.body.outputs[0].data, [true, false, false, true]);
  });

  it('a model whose output breaks its manifest is a 500 naming the model, version and output, never a 200', async () => {
    const meta = await http.get('/v2/models/shape-liar').expect(200);
    assert.deepEqual(meta.body.outputs, [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }]);
    const res = await http
      .post('/v2/models/shape-liar/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] })
      .expect(500);
    assert.match(
      res.body.error,
      /^model shape-liar version 1 gave an output its model\.json does not allow: output y is float32 \[1, 3\], declared float32 \[-1, 2\]/,
    );
  });
});
