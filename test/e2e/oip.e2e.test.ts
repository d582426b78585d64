import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

/** y = s * (x @ W + b) for the fixture-linear models (s = 1 for v1, 2 for v2). */
function expected(x: number[], s: number): number[] {
  return [s * (x[0] + x[2] + 0.5), s * (x[1] + x[2] - x[3] - 0.5)];
}

describe('Open Inference Protocol v2', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof authedHttp>;
  before(async () => {
    app = await createTestApp();
    http = authedHttp(app);
  });
  after(() => app.close());

  it('GET /v2 describes the server', async () => {
    const res = await http.get('/v2').expect(200);
    assert.equal(res.body.name, 'regulated-inference-gateway');
    assert.deepEqual(res.body.extensions, ['binary_tensor_data']);
  });

  it('GET /v2/health/live and /v2/health/ready answer 200', async () => {
    assert.deepEqual((await http.get('/v2/health/live').expect(200)).body, { live: true });
    assert.deepEqual((await http.get('/v2/health/ready').expect(200)).body, { ready: true });
  });

  it('GET /v2/models lists every model with its versions and default', async () => {
    const res = await http.get('/v2/models').expect(200);
    const linear = res.body.models.find((m: { name: string }) => m.name === 'fixture-linear');
    assert.deepEqual(linear, {
      name: 'fixture-linear',
      versions: ['1', '2'],
      default_version: '2',
      domain: 'generic',
      platform: 'onnxruntime_onnx',
    });
    assert.ok(res.body.models.some((m: { name: string }) => m.name === 'fixture-cnn'));
  });

  it('GET /v2/models/{name} gives the default version metadata and where it runs', async () => {
    const res = await http.get('/v2/models/fixture-linear').expect(200);
    assert.equal(res.body.name, 'fixture-linear');
    assert.deepEqual(res.body.versions, ['1', '2']);
    assert.equal(res.body.platform, 'onnxruntime_onnx');
    assert.deepEqual(res.body.inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }]);
    assert.deepEqual(res.body.outputs, [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }]);
    assert.equal(res.body.parameters.version, '2');
    assert.equal(res.body.parameters.default, true);
    assert.equal(res.body.parameters.execution_provider, 'cpu');
    assert.equal(res.body.parameters.max_batch_size, 64);
  });

  it('GET /v2/models/{name}/versions/{v} and the ready routes', async () => {
    const res = await http.get('/v2/models/fixture-linear/versions/1').expect(200);
    assert.equal(res.body.parameters.version, '1');
    assert.deepEqual((await http.get('/v2/models/fixture-linear/ready').expect(200)).body, {
      name: 'fixture-linear',
      ready: true,
    });
    await http.get('/v2/models/fixture-linear/versions/1/ready').expect(200);
  });

  it('unknown models and versions are 404 with {"error": ...}', async () => {
    const a = await http.get('/v2/models/nope').expect(404);
    assert.deepEqual(a.body, { error: 'no model named "nope"' });
    const b = await http.get('/v2/models/fixture-linear/versions/9/ready').expect(404);
    assert.match(b.body.error, /has no version "9" \(versions: 1, 2\)/);
    await http
      .post('/v2/models/nope/infer')
      .send({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] })
      .expect(404);
    // Whatever the body, as Triton and KServe answer: the model is looked for first (it was a 400 about the body).
    const badBody = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1] }] };
    const noModel = await http.post('/v2/models/nope/infer').send(badBody).expect(404);
    assert.deepEqual(noModel.body, { error: 'no model named "nope"' });
    const noVersion = await http.post('/v2/models/fixture-linear/versions/9/infer').send({}).expect(404);
    assert.match(noVersion.body.error, /has no version "9"/);
  });

  it("errors are labelled exactly application/json, as KServe's InferenceRESTClient needs to read `error`", async () => {
    // Its _construct_http_status_error reads the body only when Content-Type equals application/json.
    const noModel = await http.get('/v2/models/nope').expect(404);
    assert.equal(noModel.headers['content-type'], 'application/json');
    const badBody = await http.post('/v2/models/fixture-linear/infer').send({}).expect(400);
    assert.equal(badBody.headers['content-type'], 'application/json');
    assert.match(badBody.body.error, /inputs/);
    const unparsed = await http
      .post('/v2/models/fixture-linear/infer')
      .set('Content-Type', 'application/json')
      .send('{"inputs": [')
      .expect(400);
    assert.equal(unparsed.headers['content-type'], 'application/json');
    const anonymous = await request(app.getHttpServer()).get('/v2/models').expect(401);
    assert.equal(anonymous.headers['content-type'], 'application/json');
  });

  it('quotes the names a request gives as any key is: cut past 100 characters, never a card number', async () => {
    const infer = (body: object) => http.post('/v2/models/fixture-linear/infer').send(body);
    const x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
    const long = 'n'.repeat(100_000);
    // A 100,000-character name came back twice in full: an answer twice the size of what was sent.
    const input = await infer({ inputs: [{ ...x, name: long }] }).expect(400);
    assert.equal(
      input.body.error,
      `inputs[0].name: the model has no input named "${'n'.repeat(100)}…"; inputs: must contain an input named "x"`,
    );
    const output = await infer({ inputs: [x], outputs: [{ name: long }] }).expect(400);
    assert.equal(output.body.error, `outputs[0].name: the model has no output "${'n'.repeat(100)}…"`);
    const pan = '4111111111111111';
    // An input given twice under such a name is a unit test's (oip-service): to this one-input model two inputs are
    // refused by their count before any name is read.
    const answers = [
      await infer({ inputs: [{ ...x, name: pan }] }).expect(400),
      await infer({ inputs: [x], outputs: [{ name: pan }] }).expect(400),
      await infer({ inputs: [x], model_name: pan }).expect(400),
      await infer({ inputs: [x], model_version: pan }).expect(400),
      await http
        .post(`/v2/models/${pan}/infer`)
        .send({ inputs: [x] })
        .expect(404),
      await http.get(`/v2/models/fixture-linear/versions/${pan}`).expect(404),
    ];
    for (const answer of answers) {
      assert.doesNotMatch(answer.body.error, /4111/);
      assert.match(answer.body.error, /\(card number\)/);
    }
  });

  it('an unknown model name or version that looks like a card number is not repeated in the 404', async () => {
    const infer = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    for (const pan of ['4111111111111111', '4111-1111-1111-1111', '%34111%201111%201111%201111', 'ref-4222222222222']) {
      const answers = [
        await http.get(`/v2/models/${pan}`).expect(404),
        await http.get(`/v2/models/${pan}/ready`).expect(404),
        await http.post(`/v2/models/${pan}/infer`).send(infer).expect(404),
        await http.get(`/v2/models/fixture-linear/versions/${pan}`).expect(404),
        await http.post(`/v2/models/fixture-linear/versions/${pan}/infer`).send(infer).expect(404),
      ];
      for (const res of answers) {
        assert.match(res.body.error, /"\(card number\)"/, pan);
        assert.doesNotMatch(res.text.replaceAll(String(res.headers['x-request-id']), ''), /4111|4222/, pan);
      }
    }
  });

  it('POST infer runs the default version, echoes the id, accepts nested data', async () => {
    const res = await http
      .post('/v2/models/fixture-linear/infer')
      .send({
        id: 'req-42',
        inputs: [
          {
            name: 'x',
            shape: [2, 4],
            datatype: 'FP32',
            data: [
              [1, 2, 3, 4],
              [0, 1, 0, 1],
            ],
          },
        ],
      })
      .expect(200);
    assert.equal(res.body.model_name, 'fixture-linear');
    assert.equal(res.body.model_version, '2');
    assert.equal(res.body.id, 'req-42');
    assert.equal(res.body.parameters.execution_provider, 'cpu');
    assert.deepEqual(res.body.outputs, [
      {
        name: 'y',
        shape: [2, 2],
        datatype: 'FP32',
        data: [...expected([1, 2, 3, 4], 2), ...expected([0, 1, 0, 1], 2)],
      },
    ]);
  });

  it('POST .../versions/1/infer runs the pinned version', async () => {
    const res = await http
      .post('/v2/models/fixture-linear/versions/1/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [{ name: 'y' }] })
      .expect(200);
    assert.equal(res.body.model_version, '1');
    assert.equal(res.body.id, undefined);
    assert.deepEqual(res.body.outputs[0].data, expected([1, 2, 3, 4], 1));
  });

  it('answers every output when the request names none, `outputs: []` included', async () => {
    const res = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [] })
      .expect(200);
    assert.deepEqual(
      res.body.outputs.map((o: { name: string }) => o.name),
      ['y'],
    );
    assert.deepEqual(res.body.outputs[0].data, expected([1, 2, 3, 4], 2)); // the latest version
  });

  it('concurrent requests each get their own rows back', async () => {
    const xs = Array.from({ length: 24 }, (_, i) => [i, i + 1, i % 3, -i]);
    const results = await Promise.all(
      xs.map((x) =>
        http
          .post('/v2/models/fixture-linear/infer')
          .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: x }] }),
      ),
    );
    results.forEach((res, i) => {
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.outputs[0].data, expected(xs[i], 2));
    });
  });

  it('bad tensors are 400 with an error naming the input and the reason', async () => {
    const post = (body: object) => http.post('/v2/models/fixture-linear/infer').send(body).expect(400);
    const shape = await post({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] });
    // The request's own fields: it said 'inputs.x: ...', a path an OIP request (inputs as an array) does not have.
    assert.equal(shape.body.error, 'inputs[0].shape[1]: the model\'s input "x" takes 4, got 3');
    const rank = await post({ inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    assert.equal(rank.body.error, 'inputs[0].shape: the model\'s input "x" has 2 dimensions [-1, 4], got [4]');
    const empty = await post({ inputs: [{ name: 'x', shape: [0, 4], datatype: 'FP32', data: [] }] });
    assert.equal(empty.body.error, 'inputs[0].shape[0]: must be a positive integer');
    const count = await post({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3] }] });
    assert.equal(count.body.error, 'inputs[0].data: shape [1, 4] needs 4 values, got 3');
    const dtype = await post({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'INT32', data: [1, 2, 3, 4] }] });
    // In the protocol's words (the metadata says FP32), naming the field: it said 'dtype must be float32, got int32'.
    assert.equal(dtype.body.error, 'inputs[0].datatype: the model\'s input "x" takes FP32, got INT32');
    // Checked before the data is read, as Triton does: it said 'inputs[0].data: element 1 must be an integer ...'.
    const fractions = await post({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'INT32', data: [1, 2.5, 3, 4] }] });
    assert.equal(fractions.body.error, 'inputs[0].datatype: the model\'s input "x" takes FP32, got INT32');
    // By its place in `inputs`, as the other input errors are: it said 'inputs.z: ...; inputs.x: ...', paths an OIP
    // request (inputs as an array) does not have.
    const name = await post({ inputs: [{ name: 'z', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    assert.equal(
      name.body.error,
      'inputs[0].name: the model has no input named "z"; inputs: must contain an input named "x"',
    );
    // Names that Object.prototype has were taken for inputs given twice (and `__proto__` could not be a name).
    for (const member of ['toString', 'constructor', '__proto__']) {
      const res = await post({ inputs: [{ name: member, shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
      assert.equal(
        res.body.error,
        `inputs[0].name: the model has no input named "${member}"; inputs: must contain an input named "x"`,
      );
    }
    // Dimensions past 2^53 are no exact integers: with a 0 among them the count came out NaN, and was said so.
    const huge = await post({ inputs: [{ name: 'x', shape: [1e300, 1e300, 0], datatype: 'FP32', data: [] }] });
    assert.equal(
      huge.body.error,
      'inputs[0].shape[0]: must be <= 9007199254740991; inputs[0].shape[1]: must be <= 9007199254740991',
    );
    const output = await post({
      inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
      outputs: [{ name: 'w' }],
    });
    assert.equal(output.body.error, 'outputs[0].name: the model has no output "w"');
  });

  it('a request of more rows than the max_batch_size its metadata states is refused, as Triton does', async () => {
    // One such request ran alone as one batch of any size: 96 ultrasound images took ORT's arena from
    // 0.7 to 2.2 GB, and the arena keeps what it took.
    const rows = 65;
    const res = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [rows, 4], datatype: 'FP32', data: Array(rows * 4).fill(1) }] })
      .expect(400);
    assert.equal(res.body.error, 'inputs[0].shape[0]: batch size 65 is more than the max_batch_size of 64');
    const most = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [64, 4], datatype: 'FP32', data: Array(64 * 4).fill(1) }] })
      .expect(200);
    assert.deepEqual(most.body.outputs[0].shape, [64, 2]);
  });

  it('malformed requests are 400 with {"error": ...}, never 500', async () => {
    const missing = await http.post('/v2/models/fixture-linear/infer').send({}).expect(400);
    assert.match(missing.body.error, /inputs/);
    const datatype = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP128', data: [1, 2, 3, 4] }] })
      .expect(400);
    assert.match(datatype.body.error, /inputs\[0\]\.datatype/);
    const json = await http
      .post('/v2/models/fixture-linear/infer')
      .set('Content-Type', 'application/json')
      .send('{"inputs": [')
      .expect(400);
    assert.equal(typeof json.body.error, 'string');
    const timeout = await http
      .post('/v2/models/fixture-linear/infer')
      .send({
        parameters: { timeout_ms: -1 },
        inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
      })
      .expect(400);
    assert.match(timeout.body.error, /timeout_ms/);
    // A deadline longer than a Node.js timer takes would fire after 1 ms and drop the request: refused.
    const x = [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }];
    const tooLong = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ parameters: { timeout_ms: 2 ** 31 }, inputs: x })
      .expect(400);
    assert.match(
      tooLong.body.error,
      /parameters\.timeout_ms: must be a positive integer of milliseconds, at most 2147483647/,
    );
    await http
      .post('/v2/models/fixture-linear/infer')
      .send({ parameters: { timeout_ms: 2 ** 31 - 1 }, inputs: x })
      .expect(200);
  });

  it("takes tritonclient's parameters.timeout 0 as Triton does: no timeout of the request's own", async () => {
    // Triton reads a timeout of 0 (its default) as none (TRITONSERVER_InferenceRequestSetTimeoutMicroseconds); it was
    // refused. The model's own deadline holds then, or timeout_ms when given.
    const x = [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }];
    const infer = (parameters: object) => http.post('/v2/models/fixture-linear/infer').send({ parameters, inputs: x });
    const none = await infer({ timeout: 0 }).expect(200);
    assert.deepEqual(none.body.outputs[0].data, expected([1, 2, 3, 4], 2));
    await infer({ timeout: 0, timeout_ms: 60_000 }).expect(200);
    const negative = await infer({ timeout: -1 }).expect(400);
    assert.equal(
      negative.body.error,
      'parameters.timeout: must be 0 (no timeout) or a positive integer of microseconds, at most 2147483647000',
    );
  });

  it('refuses more inputs than the model declares by their count, before any one of them is read', async () => {
    // 40,000 tiny inputs of names the model does not have were each checked and decoded before the 400: about 2 s.
    const many = Array.from({ length: 40_000 }, (_, i) => ({ name: `u${i}`, shape: [1], datatype: 'FP32', data: [0] }));
    const res = await http.post('/v2/models/fixture-linear/infer').send({ inputs: many }).expect(400);
    assert.equal(res.body.error, 'inputs: the model takes 1 input ("x"), got 40000');
    const x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
    const twice = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [x, x] })
      .expect(400);
    assert.equal(twice.body.error, 'inputs: the model takes 1 input ("x"), got 2');
  });

  it('labels its JSON answers exactly application/json, as Triton and KServe do, successes as errors', async () => {
    // They said `application/json; charset=utf-8` (Fastify's), where the errors said `application/json`. RFC 8259
    // defines no charset for JSON, which is UTF-8.
    const paths = [
      '/v2',
      '/v2/health/live',
      '/v2/health/ready',
      '/v2/models',
      '/v2/models/fixture-linear',
      '/v2/models/fixture-linear/versions/1',
      '/v2/models/fixture-linear/ready',
      '/v2/models/fixture-linear/versions/1/ready',
    ];
    for (const path of paths) {
      const res = await http.get(path).expect(200);
      assert.equal(res.headers['content-type'], 'application/json', path);
    }
    const res = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
      .expect(200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(res.body.outputs[0].data, expected([1, 2, 3, 4], 2));
  });

  it('refusals before the route reads the body name the field too, as `field: reason`', async () => {
    const infer = () => http.post('/v2/models/fixture-linear/infer');
    const media = await infer().set('Content-Type', 'text/plain').send('{}').expect(415);
    assert.deepEqual(media.body, { error: 'Content-Type: "text/plain" is not a media type this route reads' });
    assert.match(String(media.headers['content-type']), /^application\/json/);
    const empty = await infer().set('Content-Type', 'application/json').send('').expect(400);
    assert.deepEqual(empty.body, {
      error: "(body): Body cannot be empty when content-type is set to 'application/json'",
    });
    const json = await infer().set('Content-Type', 'application/json').send('{"inputs": [').expect(400);
    assert.deepEqual(json.body, { error: '(body): Body is not valid JSON: it ends before the JSON is complete' });
    const gzip = await infer()
      .set('Content-Type', 'application/json')
      .set('Content-Encoding', 'gzip')
      .send('{}')
      .expect(415);
    assert.match(gzip.body.error, /^Content-Encoding: gzip is not accepted/);
    const binary = await infer().set('Content-Type', 'application/octet-stream').send(Buffer.from('{}')).expect(400);
    // Without Inference-Header-Content-Length it is the JSON request, validated as one.
    assert.deepEqual(binary.body, { error: "body: must have required property 'inputs'" });
  });

  describe('binary tensor data extension (as Triton clients send it)', () => {
    const binaryParser = (res: NodeJS.ReadableStream, done: (err: Error | null, body: Buffer) => void) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    };
    function binaryBody(header: object, ...tensors: Float32Array[]): { body: Buffer; length: number } {
      const json = Buffer.from(JSON.stringify(header));
      const bytes = tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength));
      return { body: Buffer.concat([json, ...bytes]), length: json.length };
    }

    it('takes binary inputs and returns binary outputs when asked', async () => {
      const x = Float32Array.from([1, 2, 3, 4, 0, 1, 0, 1]);
      const { body, length } = binaryBody(
        {
          id: 'bin-1',
          inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
          outputs: [{ name: 'y', parameters: { binary_data: true } }],
        },
        x,
      );
      const res = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .set('Inference-Header-Content-Length', String(length))
        .send(body)
        .buffer(true)
        .parse(binaryParser as never)
        .expect(200);
      assert.equal(res.headers['content-type'], 'application/octet-stream');
      const headerLength = Number(res.headers['inference-header-content-length']);
      const header = JSON.parse((res.body as Buffer).subarray(0, headerLength).toString());
      assert.equal(header.id, 'bin-1');
      assert.deepEqual(header.outputs, [
        { name: 'y', shape: [2, 2], datatype: 'FP32', parameters: { binary_data_size: 16 } },
      ]);
      const raw = (res.body as Buffer).subarray(headerLength);
      const y = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      assert.deepEqual([...y], [...expected([1, 2, 3, 4], 2), ...expected([0, 1, 0, 1], 2)]);
    });

    it('reads a body sent without Content-Type, as tritonclient.http sends it: JSON, or binary with its header length', async () => {
      const fastify = app.getHttpAdapter().getInstance();
      const headers = { authorization: bearer(tokenFor(['ml-admin'])) };
      const json = await fastify.inject({
        method: 'POST',
        url: '/v2/models/fixture-linear/infer',
        headers,
        payload: Buffer.from(
          JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }),
        ),
      });
      assert.equal(json.statusCode, 200, json.body);
      assert.deepEqual(JSON.parse(json.body).outputs[0].data, expected([1, 2, 3, 4], 2));
      const x = Float32Array.from([1, 2, 3, 4]);
      const { body, length } = binaryBody(
        { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }] },
        x,
      );
      const binary = await fastify.inject({
        method: 'POST',
        url: '/v2/models/fixture-linear/infer',
        headers: { ...headers, 'inference-header-content-length': String(length) },
        payload: body,
      });
      assert.equal(binary.statusCode, 200, binary.body);
      assert.deepEqual(JSON.parse(binary.body).outputs[0].data, expected([1, 2, 3, 4], 2));
    });

    it("an output's own binary_data: false wins over the request's binary_data_output", async () => {
      const res = await http
        .post('/v2/models/fixture-linear/infer')
        .send({
          inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
          outputs: [{ name: 'y', parameters: { binary_data: false } }],
          parameters: { binary_data_output: true },
        })
        .expect(200);
      assert.equal(res.headers['inference-header-content-length'], undefined);
      assert.deepEqual(res.body.outputs[0].data, expected([1, 2, 3, 4], 2));
    });

    it('refuses an output requested twice: as JSON and as binary it would come back twice under one name', async () => {
      const res = await http
        .post('/v2/models/fixture-linear/infer')
        .send({
          inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
          outputs: [{ name: 'y' }, { name: 'y', parameters: { binary_data: true } }],
        })
        .expect(400);
      assert.equal(res.headers['inference-header-content-length'], undefined);
      assert.deepEqual(res.body, { error: 'outputs[1].name: "y" is requested twice' });
    });

    it('refuses binary_data and binary_data_output that are not booleans, naming them', async () => {
      for (const [patch, field] of [
        [{ outputs: [{ name: 'y', parameters: { binary_data: 'no' } }] }, 'outputs[0].parameters.binary_data'],
        [{ parameters: { binary_data_output: 1 } }, 'parameters.binary_data_output'],
      ] as const) {
        const res = await http
          .post('/v2/models/fixture-linear/infer')
          .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }], ...patch })
          .expect(400);
        assert.equal(res.headers['inference-header-content-length'], undefined);
        assert.match(res.body.error, new RegExp(`^${field.replace(/[.[\]]/g, '\\$&')}: must be boolean`));
      }
    });

    it('takes binary inputs with Content-Type application/json and answers JSON by default', async () => {
      const x = Float32Array.from([1, 2, 3, 4]);
      const { body, length } = binaryBody(
        { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] },
        x,
      );
      const res = await http
        .post('/v2/models/fixture-linear/versions/1/infer')
        .set('Content-Type', 'application/json')
        .set('Inference-Header-Content-Length', String(length))
        .serialize((raw: Buffer) => raw as unknown as string) // send the bytes, not JSON of a Buffer
        .send(body)
        .expect(200);
      assert.deepEqual(res.body.outputs[0].data, expected([1, 2, 3, 4], 1));
    });

    it('reads Inference-Header-Content-Length only as decimal digits, as Content-Length is read', async () => {
      // A header of exactly 100 bytes (padded with spaces), so that `1e2` and `0x64` would each name it.
      const header = JSON.stringify({
        inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }],
      });
      const json = Buffer.from(header.padEnd(100, ' '));
      const x = Float32Array.from([1, 2, 3, 4]);
      const body = Buffer.concat([json, Buffer.from(x.buffer)]);
      const post = (length: string) =>
        http
          .post('/v2/models/fixture-linear/versions/1/infer')
          .set('Content-Type', 'application/octet-stream')
          .set('Inference-Header-Content-Length', length)
          .send(body);
      assert.deepEqual((await post('100').expect(200)).body.outputs[0].data, expected([1, 2, 3, 4], 1));
      for (const length of ['1e2', '0x64', '100.0', '+100', '']) {
        const res = await post(length);
        assert.equal(res.status, 400, `${JSON.stringify(length)}: ${res.text}`);
        assert.match(
          res.body.error,
          /^Inference-Header-Content-Length: must be an integer between 0 and the body size/,
        );
      }
    });

    it('refuses an input that carries both JSON data and binary_data_size: its values are one or the other', async () => {
      const x = Float32Array.from([1, 2, 3, 4]);
      const both = binaryBody(
        {
          inputs: [
            { name: 'x', shape: [1, 4], datatype: 'FP32', data: [9, 9, 9, 9], parameters: { binary_data_size: 16 } },
          ],
        },
        x,
      );
      for (const type of ['application/octet-stream', 'application/json']) {
        const res = await http
          .post('/v2/models/fixture-linear/infer')
          .set('Content-Type', type)
          .set('Inference-Header-Content-Length', String(both.length))
          .serialize((raw: Buffer) => raw as unknown as string)
          .send(both.body)
          .expect(400);
        assert.deepEqual(res.body, {
          error:
            'inputs[0].data: not allowed with parameters.binary_data_size: a tensor is sent either as JSON data or as binary data, not both',
        });
      }
      // Without the header the binary part is not there at all: the same answer, not one about the header.
      const json = await http
        .post('/v2/models/fixture-linear/infer')
        .send({
          inputs: [
            { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4], parameters: { binary_data_size: 16 } },
          ],
        })
        .expect(400);
      assert.match(json.body.error, /^inputs\[0\]\.data: not allowed with parameters\.binary_data_size/);
    });

    it('refuses binary sizes that do not match the shape, and stray bytes', async () => {
      const x = Float32Array.from([1, 2, 3]);
      const short = binaryBody(
        { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 12 } }] },
        x,
      );
      const a = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .set('Inference-Header-Content-Length', String(short.length))
        .send(short.body)
        .expect(400);
      assert.equal(a.body.error, 'inputs[0].parameters.binary_data_size: shape [1, 4] needs 16 bytes, got 12');
      const extra = binaryBody(
        { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] },
        Float32Array.from([1, 2, 3, 4, 5]),
      );
      const b = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .set('Inference-Header-Content-Length', String(extra.length))
        .send(extra.body)
        .expect(400);
      assert.match(b.body.error, /4 bytes follow the last binary input/);
      const noHeader = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .send(extra.body)
        .expect(400);
      assert.match(
        noHeader.body.error,
        /^body: not a JSON inference request \(byte \d+ is not UTF-8\); .*Inference-Header-Content-Length/,
      );
      const nan = binaryBody(
        { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] },
        Float32Array.from([1, NaN, 3, 4]),
      );
      const c = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .set('Inference-Header-Content-Length', String(nan.length))
        .send(nan.body)
        .expect(400);
      assert.equal(c.body.error, 'inputs[0].data: element 1 must be a finite number');
    });

    it('reads an application/octet-stream body without Inference-Header-Content-Length as the JSON request (tritonclient.http.aio)', async () => {
      const request = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
      const res = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .send(Buffer.from(JSON.stringify(request)))
        .expect(200);
      assert.deepEqual(res.body.outputs[0].data, expected([1, 2, 3, 4], 2));
      const garbage = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .send(Buffer.from([0, 1, 2, 3]))
        .expect(400);
      assert.match(garbage.body.error, /^body: not a JSON inference request/);
      // JSON that nests too deep or gives a member twice is told so, as a JSON body is: both were told only that
      // the body was not a JSON inference request. Bytes that are not UTF-8 are most likely binary data sent
      // without the header: told so, with the offset.
      const json = JSON.stringify(request);
      const refusals: Array<[Buffer, RegExp]> = [
        [Buffer.from(json.replace('"x"', '"x","name":"x"')), /^inputs\[0\]\.name: /],
        [
          Buffer.from(`{"inputs":${'['.repeat(100)}${']'.repeat(100)}}`),
          /^body: nests arrays and objects more than 64 levels deep/,
        ],
      ];
      for (const [body, error] of refusals) {
        const res = await http
          .post('/v2/models/fixture-linear/infer')
          .set('Content-Type', 'application/octet-stream')
          .send(body)
          .expect(400);
        assert.match(res.body.error, error);
      }
      const latin1 = await http
        .post('/v2/models/fixture-linear/infer')
        .set('Content-Type', 'application/octet-stream')
        .send(Buffer.from(json.replace('"x"', '"x\u00e9"'), 'latin1'))
        .expect(400);
      assert.match(
        latin1.body.error,
        /^body: not a JSON inference request \(byte 21 is not UTF-8\); a body with binary/,
      );
    });

    it('a model output JSON cannot carry (NaN, Infinity) is 422 naming it as JSON, and sent as it is as binary', async () => {
      // 3e38 + 3e38 overflows FP32: y = 2 * (x0 + x2 + 0.5) is Infinity.
      const inputs = [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [3e38, 0, 3e38, 0] }];
      const json = await http.post('/v2/models/fixture-linear/infer').send({ inputs }).expect(422);
      assert.match(json.body.error, /^outputs\.y: element 0 is Infinity, which JSON cannot carry/);
      const binary = await http
        .post('/v2/models/fixture-linear/infer')
        .send({ inputs, parameters: { binary_data_output: true } })
        .buffer(true)
        .parse(binaryParser as never)
        .expect(200);
      const headerLength = Number(binary.headers['inference-header-content-length']);
      const raw = (binary.body as Buffer).subarray(headerLength);
      assert.deepEqual(
        [...new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))],
        [Infinity, Infinity],
      );
    });
  });

  it("takes model_name and model_version in the body (KServe's client sends them) when they name what runs; refuses another", async () => {
    const inputs = [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }];
    const ok = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ id: 'k1', model_name: 'fixture-linear', model_version: '2', inputs })
      .expect(200);
    assert.deepEqual(ok.body.outputs[0].data, expected([1, 2, 3, 4], 2));
    await http
      .post('/v2/models/fixture-linear/versions/1/infer')
      .send({ model_name: 'fixture-linear', model_version: '1', inputs })
      .expect(200);
    const otherModel = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ model_name: 'fixture-cnn', inputs })
      .expect(400);
    assert.equal(
      otherModel.body.error,
      'model_name: names "fixture-cnn", but this request runs model "fixture-linear"',
    );
    const otherVersion = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ model_name: 'fixture-linear', model_version: '1', inputs })
      .expect(400);
    assert.equal(otherVersion.body.error, 'model_version: names "1", but this request runs version "2"');
    // Empty, it names no version (proto3, the gRPC form, cannot tell "" from none): the path's or the default runs.
    const unnamed = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ model_name: 'fixture-linear', model_version: '', inputs })
      .expect(200);
    assert.equal(unnamed.body.model_version, '2');
    const pinned = await http
      .post('/v2/models/fixture-linear/versions/1/infer')
      .send({ model_version: '', inputs })
      .expect(200);
    assert.equal(pinned.body.model_version, '1');
    assert.deepEqual(pinned.body.outputs[0].data, expected([1, 2, 3, 4], 1));
  });

  it('refuses inputs and outputs placed in shared memory, naming the parameter, rather than answer beside the region', async () => {
    const data = [1, 2, 3, 4];
    // tritonclient's InferRequestedOutput.set_shared_memory: the client reads the region, not the body.
    const output = await http
      .post('/v2/models/fixture-linear/infer')
      .send({
        inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data }],
        outputs: [{ name: 'y', parameters: { shared_memory_region: 'output0', shared_memory_byte_size: 8 } }],
      })
      .expect(400);
    assert.match(
      output.body.error,
      /^outputs\[0\]\.parameters\.shared_memory_region: the shared memory extensions are not offered/,
    );
    // InferInput.set_shared_memory: no data in the body, the values in a region the gateway cannot read.
    const input = await http
      .post('/v2/models/fixture-linear/infer')
      .send({
        inputs: [
          {
            name: 'x',
            shape: [1, 4],
            datatype: 'FP32',
            parameters: { shared_memory_region: 'input0', shared_memory_byte_size: 16 },
          },
        ],
      })
      .expect(400);
    assert.match(input.body.error, /^inputs\[0\]\.parameters\.shared_memory_region: the shared memory extensions/);
    const offset = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data, parameters: { shared_memory_offset: 0 } }] })
      .expect(400);
    assert.match(offset.body.error, /^inputs\[0\]\.parameters\.shared_memory_offset: /);
  });

  it('refuses an output asking for the classification extension, which this server does not offer', async () => {
    const res = await http
      .post('/v2/models/fixture-linear/infer')
      .send({
        inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
        outputs: [{ name: 'y', parameters: { classification: 1 } }],
      })
      .expect(400);
    assert.match(
      res.body.error,
      /^outputs\[0\]\.parameters\.classification: the classification extension is not offered/,
    );
  });
});
