import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { get as httpGet, IncomingMessage, maxHeaderSize } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import Ajv, { ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { data as dcmjsData } from 'dcmjs';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AppError } from '../../src/common/errors/app-error';
import { MAX_PATH_PARAM_LENGTH } from '../../src/common/http/path-params';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { dicomFile, DICOM_SKIP, multipartRelated } from '../fixtures/dicom-files';
import { APPLICANT, tx } from '../fixtures/finance-data';
import { bundledModelsDir } from '../fixtures/paths';
import { millAsset, turbofanAsset } from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { zeroRowOf } from '../fixtures/oip-tensors';
import { bearer, tokenFor } from '../fixtures/test-auth';

type Method = 'get' | 'post' | 'put' | 'delete';
interface MediaType {
  schema?: object;
}
interface ResponseObject {
  content?: Record<string, MediaType>;
  headers?: Record<string, object>;
}
interface Operation {
  parameters?: Array<{ name: string; in: string }>;
  requestBody?: { content: Record<string, MediaType> };
  responses: Record<string, ResponseObject>;
}
interface Document {
  info: { description: string };
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: object;
}

/** An answer as the document sees it: status, media type (without parameters) and body. */
interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  text?: string;
}

/**
 * Response headers a client acts on (when to retry, whether an answer is a replay, where a binary body's
 * JSON header ends, why a token was refused): an answer that carries one must have it declared for its status.
 */
const MEANINGFUL_HEADERS = [
  'retry-after',
  'idempotent-replayed',
  'inference-header-content-length',
  'www-authenticate',
];

/** Per subject; the `flood` subject spends it in `before`, every other token has room to spare. */
const RATE_LIMIT = 60;
const BODY_LIMIT = 64 * 1024;
const DICOM_LIMIT = 2 * 1024 * 1024;

/**
 * What the gateway answers, held to what its OpenAPI document promises: every documented operation is
 * called with a success and with the errors it typically answers, and each answer's status must be
 * declared for the operation, its Content-Type listed under that status, and its body valid against the
 * schema there (components resolved). Generated clients (a PACS, a risk engine, a SCADA) break on an
 * answer their schema does not allow.
 */
describe('OpenAPI: every operation answers what the document declares', { skip: DICOM_SKIP }, () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  let doc: Document;
  let http: ReturnType<typeof request>;
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const validators = new Map<string, ValidateFunction>();
  /** `METHOD path` -> statuses it was seen answering. */
  const seen = new Map<string, Set<number>>();
  let subjects = 0;
  /** A token with a subject of its own (each caller below takes one, and stays under the rate limit). */
  const auth = (roles: string[], claims: Record<string, unknown> = {}): string =>
    bearer(tokenFor(roles, { sub: `contract-${++subjects}`, claims }));
  const flooded = bearer(
    tokenFor(['ml-admin', 'auditor', 'risk-engine', 'plant-operator', 'scada', 'pacs-integration'], { sub: 'flood' }),
  );

  before(async () => {
    modelsDir = bundledModelsDir(['finance', 'manufacturing', 'medical']);
    app = await createTestApp({
      MODELS_DIR: modelsDir,
      RATE_LIMIT_REQUESTS: String(RATE_LIMIT),
      RATE_LIMIT_WINDOW_MS: '600000',
      BODY_LIMIT_BYTES: String(BODY_LIMIT),
      MEDICAL_MAX_BODY_BYTES: String(DICOM_LIMIT),
    });
    http = request(app.getHttpServer());
    doc = (await http.get('/docs/openapi.json').expect(200)).body as Document;
    for (let i = 0; i < RATE_LIMIT; i++) await http.get('/v2/models').set('Authorization', flooded).expect(200);
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  /** Fails unless the answer is one `method path` (a path template of the document) declares. */
  function conforms(method: Method, path: string, res: Answer): void {
    const where = `${method.toUpperCase()} ${path} -> ${res.status}`;
    const operation = doc.paths[path]?.[method];
    assert.ok(operation, `${method.toUpperCase()} ${path} is not in the document`);
    const key = `${method.toUpperCase()} ${path}`;
    seen.set(key, (seen.get(key) ?? new Set()).add(res.status));
    const declared = operation.responses[String(res.status)] ?? operation.responses.default;
    assert.ok(
      declared,
      `${where}: status not declared (declared: ${Object.keys(operation.responses).join(', ')}); body ${res.text?.slice(0, 300)}`,
    );
    const declaredHeaders = Object.keys(declared.headers ?? {}).map((name) => name.toLowerCase());
    for (const header of MEANINGFUL_HEADERS) {
      assert.ok(
        res.headers[header] === undefined || declaredHeaders.includes(header),
        `${where}: sent ${header}, which the document does not declare for this status`,
      );
    }
    const contentType = res.headers['content-type'];
    if (res.status === 204 || contentType === undefined) {
      assert.ok(
        !declared.content,
        `${where}: no body, but the document declares ${Object.keys(declared.content ?? {}).join(', ')}`,
      );
      return;
    }
    const media = String(contentType).split(';')[0].trim().toLowerCase();
    assert.ok(
      declared.content?.[media],
      `${where}: answered ${media}, the document declares ${Object.keys(declared.content ?? {}).join(', ') || 'no body'}`,
    );
    if (res.status >= 400 && path.startsWith('/v1/')) {
      assert.equal(media, 'application/problem+json', `${where}: a problem is application/problem+json`);
    }
    const schema = declared.content[media].schema as { type?: string } | undefined;
    if (!/json$/.test(media)) {
      // Bytes or a text stream: a client must not be told to parse them as a JSON object.
      assert.ok(!schema || schema.type === 'string', `${where}: ${media} declared as ${JSON.stringify(schema)}`);
      return;
    }
    assert.ok(schema, `${where}: ${media} declared without a schema`);
    const cacheKey = `${key} ${res.status} ${media}`;
    let validate = validators.get(cacheKey);
    if (!validate) {
      validate = ajv.compile(withoutUntypedNullable({ ...schema, components: doc.components }));
      validators.set(cacheKey, validate);
    }
    assert.ok(
      validate(res.body),
      `${where} (${media}): body does not match its schema: ${ajv.errorsText(validate.errors)}; body ${JSON.stringify(res.body).slice(0, 400)}`,
    );
    // A schema that lists no properties (or fewer than are sent) validates any object: a member it does not
    // declare is one a generated client drops.
    assert.deepEqual(
      undeclaredMembers(res.body, schema, doc.components),
      [],
      `${where} (${media}): undeclared members`,
    );
  }

  /** Sends the request and holds its answer to the document; returns it for further checks. */
  async function call(
    status: number,
    method: Method,
    path: string,
    url: string,
    options: { auth?: string; body?: unknown; type?: string; accept?: string; headers?: Record<string, string> } = {},
  ): Promise<request.Response> {
    let req = http[method](url);
    if (options.auth) req = req.set('Authorization', options.auth);
    if (options.type) req = req.set('Content-Type', options.type);
    // Bytes go as they are, whatever they are labelled: superagent would write a Buffer labelled JSON as JSON (its
    // serializer's type says string; node's superagent writes a Buffer as it is).
    if (Buffer.isBuffer(options.body)) req = req.serialize((bytes: Buffer) => bytes as unknown as string);
    if (options.accept) req = req.set('Accept', options.accept);
    for (const [name, value] of Object.entries(options.headers ?? {})) req = req.set(name, value);
    const res = await (options.body === undefined ? req : req.send(options.body as object));
    assert.equal(res.status, status, `${method.toUpperCase()} ${url}: ${res.status} ${res.text?.slice(0, 300)}`);
    if (status < 300) described(method, path, options);
    conforms(method, path, res);
    return res;
  }

  /**
   * Fails unless a request the route took is one the document describes: its body's media type is listed in the
   * request body, and every header it sent (other than Authorization, Content-Type and Accept, which OpenAPI
   * leaves out) is a declared parameter.
   */
  function described(method: Method, path: string, options: { body?: unknown; type?: string; headers?: object }): void {
    const operation = doc.paths[path]?.[method];
    assert.ok(operation, `${method.toUpperCase()} ${path} is not in the document`);
    const where = `${method.toUpperCase()} ${path}`;
    if (options.body !== undefined) {
      const sent = options.type ?? (Buffer.isBuffer(options.body) ? 'application/octet-stream' : 'application/json');
      const media = (type: string): string => type.split(';')[0].trim().toLowerCase();
      const declared = Object.keys(operation.requestBody?.content ?? {}).map(media);
      assert.ok(
        declared.includes(media(sent)),
        `${where}: took a ${media(sent)} body, the document lists ${declared.join(', ')}`,
      );
    }
    for (const name of Object.keys(options.headers ?? {})) {
      const declared = operation.parameters?.some(
        (p) => p.in === 'header' && p.name.toLowerCase() === name.toLowerCase(),
      );
      assert.ok(declared, `${where}: took the header ${name}, which is not a declared parameter`);
    }
  }

  /** The common refusals of a protected route: no token, a token without the permission, the rate limit. */
  async function refusals(method: Method, path: string, url: string, withoutPermission: string[]): Promise<void> {
    const anonymous = await call(401, method, path, url);
    assert.match(String(anonymous.headers['www-authenticate']), /^Bearer realm="/, `${url}: 401 without a challenge`);
    const forbidden = await call(403, method, path, url, { auth: auth(withoutPermission) });
    assert.match(
      String(forbidden.headers['www-authenticate']),
      /insufficient_scope/,
      `${url}: 403 without a challenge`,
    );
    const limited = await call(429, method, path, url, { auth: flooded });
    assert.ok(Number(limited.headers['retry-after']) >= 1, `${url}: 429 without Retry-After`);
  }

  it('health', async () => {
    await call(200, 'get', '/health/live', '/health/live');
    await call(200, 'get', '/health/ready', '/health/ready');
    // Each check's detail, shown to a token that grants models:read.
    const detailed = await call(200, 'get', '/health/ready', '/health/ready', { auth: auth(['ml-admin']) });
    assert.ok((detailed.body as { checks: { models: { detail?: unknown } } }).checks.models.detail);
    await call(200, 'get', '/v2/health/live', '/v2/health/live');
    await call(200, 'get', '/v2/health/ready', '/v2/health/ready');
  });

  it('Open Inference Protocol', async () => {
    const admin = auth(['ml-admin']);
    await call(200, 'get', '/v2', '/v2', { auth: admin });
    await refusals('get', '/v2', '/v2', ['scada']);
    await call(200, 'get', '/v2/models', '/v2/models', { auth: admin });
    await refusals('get', '/v2/models', '/v2/models', ['scada']);

    const meta = await call(200, 'get', '/v2/models/{name}', '/v2/models/card-fraud', { auth: admin });
    assert.equal(meta.status, 200);
    await call(404, 'get', '/v2/models/{name}', '/v2/models/nope', { auth: admin });
    await refusals('get', '/v2/models/{name}', '/v2/models/card-fraud', ['scada']);
    const version = String((meta.body as { versions: string[] }).versions[0]);
    const pinned = '/v2/models/{name}/versions/{version}';
    await call(200, 'get', pinned, `/v2/models/card-fraud/versions/${version}`, { auth: admin });
    await call(404, 'get', pinned, '/v2/models/card-fraud/versions/999', { auth: admin });
    const ready = '/v2/models/{name}/ready';
    await call(200, 'get', ready, '/v2/models/card-fraud/ready', { auth: admin });
    await call(404, 'get', ready, '/v2/models/nope/ready', { auth: admin });
    await refusals('get', ready, '/v2/models/card-fraud/ready', ['scada']);
    const pinnedReady = '/v2/models/{name}/versions/{version}/ready';
    const readyUrl = `/v2/models/card-fraud/versions/${version}/ready`;
    await call(200, 'get', pinnedReady, readyUrl, { auth: admin });
    await call(404, 'get', pinnedReady, '/v2/models/card-fraud/versions/999/ready', { auth: admin });

    const tensor = zeroRowOf(meta.body);
    const infer = '/v2/models/{name}/infer';
    const url = '/v2/models/card-fraud/infer';
    await call(200, 'post', infer, url, { auth: admin, body: { inputs: [tensor] } });
    const binaryOut = { inputs: [tensor], parameters: { binary_data_output: true } };
    const binary = await call(200, 'post', infer, url, { auth: admin, body: binaryOut });
    assert.match(String(binary.headers['content-type']), /^application\/octet-stream/);
    // The binary tensor data extension: a JSON header, then the input's bytes; labelled either way.
    const bytes = tensor.data.length * 4; // FP32
    const header = Buffer.from(
      JSON.stringify({ inputs: [{ ...tensor, data: undefined, parameters: { binary_data_size: bytes } }] }),
    );
    const binaryBody = Buffer.concat([header, Buffer.alloc(bytes)]);
    const length = { 'Inference-Header-Content-Length': String(header.length) };
    for (const type of ['application/octet-stream', 'application/json']) {
      await call(200, 'post', infer, url, { auth: admin, body: binaryBody, type, headers: length });
    }
    const badShape = { inputs: [{ ...tensor, shape: [1, tensor.shape[1] + 1] }] };
    await call(400, 'post', infer, url, { auth: admin, body: badShape });
    await call(400, 'post', infer, url, { auth: admin, body: '{"inputs": [', type: 'application/json' });
    await call(404, 'post', infer, '/v2/models/nope/infer', { auth: admin, body: { inputs: [tensor] } });
    await call(415, 'post', infer, url, { auth: admin, body: 'x', type: 'text/plain' });
    const huge = { inputs: [{ ...tensor, shape: [1, BODY_LIMIT], data: Array<number>(BODY_LIMIT).fill(0) }] };
    await call(413, 'post', infer, url, { auth: admin, body: huge });
    await refusals('post', infer, url, ['auditor']);
    const inferPinned = '/v2/models/{name}/versions/{version}/infer';
    const pinnedUrl = `/v2/models/card-fraud/versions/${version}/infer`;
    await call(200, 'post', inferPinned, pinnedUrl, { auth: admin, body: { inputs: [tensor] } });
    await call(404, 'post', inferPinned, '/v2/models/card-fraud/versions/999/infer', {
      auth: admin,
      body: { inputs: [tensor] },
    });
  });

  it('finance', async () => {
    const engine = auth(['risk-engine']);
    const fraud = '/v1/finance/fraud-scores';
    await call(200, 'post', fraud, fraud, { auth: engine, body: tx() });
    await call(400, 'post', fraud, fraud, { auth: engine, body: tx({ amount: 'lots' }) });
    const pan = tx({ cardToken: '4111111111111111' });
    await call(422, 'post', fraud, fraud, { auth: engine, body: pan });
    const key = { 'Idempotency-Key': '5f0c6c1e-8a57-4f5e-9d0a-0c3f7b7e2a11' };
    await call(200, 'post', fraud, fraud, { auth: engine, body: tx(), headers: key });
    const replayed = await call(200, 'post', fraud, fraud, { auth: engine, body: tx(), headers: key });
    assert.equal(replayed.headers['idempotent-replayed'], 'true');
    const reused = tx({ amount: 99 });
    await call(422, 'post', fraud, fraud, { auth: engine, body: reused, headers: key });
    // The key held by a request still being answered (another instance's, or one that crashed mid-request).
    await app
      .get(DataSource)
      .query(`UPDATE idempotency_keys SET state = 'pending', pending_until = $2 WHERE idempotency_key = $1`, [
        key['Idempotency-Key'],
        new Date(Date.now() + 60_000),
      ]);
    const busy = await call(409, 'post', fraud, fraud, { auth: engine, body: tx(), headers: key });
    assert.equal(busy.headers['retry-after'], '1');
    await call(415, 'post', fraud, fraud, { auth: engine, body: 'x', type: 'text/plain' });
    const gzip = { 'Content-Encoding': 'gzip' };
    await call(415, 'post', fraud, fraud, { auth: engine, body: tx(), headers: gzip });
    await call(400, 'post', fraud, fraud, { auth: engine, body: '{"amount": ', type: 'application/json' });
    const expired = bearer(tokenFor(['risk-engine'], { expiresIn: -60 }));
    await call(401, 'post', fraud, fraud, { auth: expired, body: tx() });
    const padded = tx({ transactionId: 'x'.repeat(BODY_LIMIT) });
    await call(413, 'post', fraud, fraud, { auth: engine, body: padded });
    await refusals('post', fraud, fraud, ['scada']);

    const batch = '/v1/finance/fraud-scores/batch';
    const transactions = [tx(), tx({ transactionId: 'tx-0002', cardToken: '4111111111111111' })];
    await call(200, 'post', batch, batch, { auth: engine, body: { transactions } });
    const batchKey = { 'Idempotency-Key': 'batch-replayed' };
    await call(200, 'post', batch, batch, { auth: engine, body: { transactions }, headers: batchKey });
    const batchReplayed = await call(200, 'post', batch, batch, {
      auth: engine,
      body: { transactions },
      headers: batchKey,
    });
    assert.equal(batchReplayed.headers['idempotent-replayed'], 'true');
    await call(400, 'post', batch, batch, { auth: engine, body: { transactions: [] } });
    await refusals('post', batch, batch, ['scada']);

    const credit = '/v1/finance/credit-assessments';
    await call(200, 'post', credit, credit, { auth: engine, body: APPLICANT });
    const bad = { ...APPLICANT, creditLimit: -1 };
    await call(400, 'post', credit, credit, { auth: engine, body: bad });
    const withPan = { ...APPLICANT, education: '4111111111111111' };
    await call(422, 'post', credit, credit, { auth: engine, body: withPan });
    const creditKey = { 'Idempotency-Key': 'credit-replayed' };
    await call(200, 'post', credit, credit, { auth: engine, body: APPLICANT, headers: creditKey });
    const creditReplayed = await call(200, 'post', credit, credit, {
      auth: engine,
      body: APPLICANT,
      headers: creditKey,
    });
    assert.equal(creditReplayed.headers['idempotent-replayed'], 'true');
    await call(422, 'post', credit, credit, {
      auth: engine,
      body: { ...APPLICANT, creditLimit: 1 },
      headers: creditKey,
    });
    await refusals('post', credit, credit, ['scada']);

    const creditBatch = '/v1/finance/credit-assessments/batch';
    const applications = [
      { ...APPLICANT, applicationId: 'a-1' },
      { ...APPLICANT, applicationId: 'a-2', education: '4111111111111111' },
    ];
    await call(200, 'post', creditBatch, creditBatch, { auth: engine, body: { applications } });
    const creditBatchKey = { 'Idempotency-Key': 'credit-batch-replayed' };
    await call(200, 'post', creditBatch, creditBatch, {
      auth: engine,
      body: { applications },
      headers: creditBatchKey,
    });
    const creditBatchReplayed = await call(200, 'post', creditBatch, creditBatch, {
      auth: engine,
      body: { applications },
      headers: creditBatchKey,
    });
    assert.equal(creditBatchReplayed.headers['idempotent-replayed'], 'true');
    await call(400, 'post', creditBatch, creditBatch, { auth: engine, body: { applications: [] } });
    await call(422, 'post', creditBatch, creditBatch, {
      auth: engine,
      body: { applications, note: '4111111111111111' },
    });
    await refusals('post', creditBatch, creditBatch, ['scada']);
  });

  it('medical', async () => {
    const pacs = auth(['pacs-integration']);
    const image = dicomFile('US1_UNCR.dcm');
    const detect = '/v1/medical/lesion-detections';
    const dicom = 'application/dicom';
    await call(200, 'post', detect, detect, { auth: pacs, body: image, type: dicom });
    await call(200, 'post', detect, detect, { auth: pacs, body: image, type: dicom, accept: dicom });
    const deflated = `${dicom}; transfer-syntax=1.2.840.10008.1.2.1.99`;
    await call(200, 'post', detect, detect, { auth: pacs, body: image, type: dicom, accept: deflated });
    const jpeg = `${dicom}; transfer-syntax=1.2.840.10008.1.2.4.50`;
    await call(406, 'post', detect, detect, { auth: pacs, body: image, type: dicom, accept: jpeg });
    const garbage = Buffer.from('not a dicom file at all');
    await call(400, 'post', detect, detect, { auth: pacs, body: garbage, type: dicom });
    const report = dicomFile('test-SR.dcm');
    await call(422, 'post', detect, detect, { auth: pacs, body: report, type: dicom });
    await call(415, 'post', detect, detect, { auth: pacs, body: 'x', type: 'text/plain' });
    // Refused before it is read: as JSON it was read up to the JSON body limit, and 413 past it.
    assert.ok(image.length > BODY_LIMIT);
    await call(415, 'post', detect, detect, { auth: pacs, body: image, type: 'application/json' });
    const tooBig = Buffer.concat([image, Buffer.alloc(DICOM_LIMIT)]);
    await call(413, 'post', detect, detect, { auth: pacs, body: tooBig, type: dicom });
    await refusals('post', detect, detect, ['scada']);

    const stow = '/dicomweb/studies';
    const one = multipartRelated([image]);
    await call(200, 'post', stow, stow, { auth: pacs, body: one.body, type: one.contentType });
    const partly = multipartRelated([image, garbage]);
    await call(202, 'post', stow, stow, { auth: pacs, body: partly.body, type: partly.contentType });
    const xml = 'application/dicom+xml';
    await call(202, 'post', stow, stow, { auth: pacs, body: partly.body, type: partly.contentType, accept: xml });
    const none = multipartRelated([garbage]);
    await call(409, 'post', stow, stow, { auth: pacs, body: none.body, type: none.contentType });
    await call(406, 'post', stow, stow, { auth: pacs, body: one.body, type: one.contentType, accept: 'text/html' });
    await call(415, 'post', stow, stow, { auth: pacs, body: image, type: dicom });
    await call(415, 'post', stow, stow, { auth: pacs, body: image, type: 'application/json' });
    await refusals('post', stow, stow, ['scada']);

    const uid = studyUidOf(image);
    const inStudy = '/dicomweb/studies/{studyInstanceUID}';
    await call(200, 'post', inStudy, `/dicomweb/studies/${uid}`, { auth: pacs, body: one.body, type: one.contentType });
    await call(400, 'post', inStudy, '/dicomweb/studies/not-a-uid', {
      auth: pacs,
      body: one.body,
      type: one.contentType,
    });
    await refusals('post', inStudy, `/dicomweb/studies/${uid}`, ['scada']);

    const findings = '/v1/medical/studies/{studyInstanceUID}/findings';
    await call(200, 'get', findings, `/v1/medical/studies/${uid}/findings`, { auth: pacs });
    await call(400, 'get', findings, '/v1/medical/studies/x/findings', { auth: pacs });
    await call(404, 'get', findings, '/v1/medical/studies/1.2.3.4/findings', { auth: pacs });
    await call(406, 'get', findings, `/v1/medical/studies/${uid}/findings`, { auth: pacs, accept: dicom });
    await refusals('get', findings, `/v1/medical/studies/${uid}/findings`, ['scada']);
  });

  it('manufacturing', async () => {
    const admin = auth(['ml-admin']);
    const operator = auth(['plant-operator']);
    const scada = auth(['scada']);
    const asset = '/v1/manufacturing/assets/{assetId}';
    const engine = turbofanAsset('engine-c');
    const url = '/v1/manufacturing/assets/engine-c';
    await call(200, 'put', asset, url, { auth: admin, body: engine });
    const mismatch = turbofanAsset('engine-d');
    await call(400, 'put', asset, url, { auth: admin, body: mismatch });
    await call(400, 'put', asset, url, { auth: admin, body: { ...engine, kind: 7 } });
    await refusals('put', asset, url, ['plant-operator']);

    const list = '/v1/manufacturing/assets';
    await call(200, 'get', list, list, { auth: operator });
    await refusals('get', list, list, ['scada']);
    await call(200, 'get', asset, url, { auth: operator });
    await call(404, 'get', asset, '/v1/manufacturing/assets/nope', { auth: operator });
    await refusals('get', asset, url, ['scada']);

    const readings = '/v1/manufacturing/assets/{assetId}/readings';
    const batch = { readings: [{ timestamp: '2026-11-23T00:00:00Z', values: { s2: 642 } }] };
    await call(200, 'post', readings, `${url}/readings`, { auth: scada, body: batch });
    await call(400, 'post', readings, `${url}/readings`, { auth: scada, body: { readings: 3 } });
    const nowhere = '/v1/manufacturing/assets/nope/readings';
    await call(404, 'post', readings, nowhere, { auth: scada, body: batch });
    await call(415, 'post', readings, `${url}/readings`, { auth: scada, body: 'x', type: 'text/plain' });
    await refusals('post', readings, `${url}/readings`, ['plant-operator']);

    const status = '/v1/manufacturing/assets/{assetId}/status';
    await call(200, 'get', status, `${url}/status`, { auth: operator });
    await call(404, 'get', status, '/v1/manufacturing/assets/nope/status', { auth: operator });
    await refusals('get', status, `${url}/status`, ['scada']);

    const predictions = '/v1/manufacturing/assets/{assetId}/predictions';
    await call(200, 'get', predictions, `${url}/predictions`, { auth: operator });
    const backwards = `${url}/predictions?from=2026-11-23T00:00:00Z&to=2026-11-22T00:00:00Z`;
    await call(400, 'get', predictions, backwards, { auth: operator });
    const nope = '/v1/manufacturing/assets/nope/predictions';
    await call(404, 'get', predictions, nope, { auth: operator });
    await refusals('get', predictions, `${url}/predictions`, ['scada']);

    const alarms = '/v1/manufacturing/alarms';
    await call(200, 'get', alarms, alarms, { auth: operator });
    await call(400, 'get', alarms, `${alarms}?cursor=x`, { auth: operator });
    await refusals('get', alarms, alarms, ['scada']);

    const dead = '/v1/manufacturing/dead-letters';
    await call(200, 'get', dead, dead, { auth: operator });
    await call(400, 'get', dead, `${dead}?from=yesterday`, { auth: operator });
    await refusals('get', dead, dead, ['scada']);

    const stream = '/v1/manufacturing/alarms/stream';
    const opened = await openStream(stream, operator);
    conforms('get', stream, opened);
    assert.equal(opened.status, 200);
    await refusals('get', stream, stream, ['scada']);

    await call(204, 'delete', asset, url, { auth: admin });
    await call(404, 'delete', asset, url, { auth: admin });
    // The route reads no body, but Fastify parses one that is sent, as for any route that is not GET or HEAD.
    await call(400, 'delete', asset, url, { auth: admin, body: '{"reason": ', type: 'application/json' });
    await call(413, 'delete', asset, url, { auth: admin, body: { reason: 'x'.repeat(BODY_LIMIT) } });
    await call(415, 'delete', asset, url, { auth: admin, body: 'x', type: 'text/plain' });
    await call(415, 'delete', asset, url, { auth: admin, body: {}, headers: { 'Content-Encoding': 'gzip' } });
    await refusals('delete', asset, url, ['plant-operator']);
  });

  it('audit', async () => {
    const auditor = auth(['auditor']);
    const events = '/v1/audit/events';
    const tenant = auth(['auditor'], { tenant: 'hospital-a' });
    await call(200, 'get', events, `${events}?limit=5`, { auth: auditor });
    // A tenant's events leave out their place in the chains, as the schema allows.
    await call(200, 'get', events, `${events}?limit=5`, { auth: tenant });
    await call(400, 'get', events, `${events}?limit=nope`, { auth: auditor });
    await refusals('get', events, events, ['scada']);
    const verify = '/v1/audit/verify';
    await call(200, 'get', verify, verify, { auth: auditor });
    await call(403, 'get', verify, verify, { auth: tenant });
    await refusals('get', verify, verify, ['scada']);
  });

  it('metrics', async () => {
    await call(200, 'get', '/metrics', '/metrics', { auth: auth(['monitoring']) });
    await call(400, 'get', '/metrics', '/metrics?name=gateway_inference', { auth: auth(['monitoring']) });
    await refusals('get', '/metrics', '/metrics', ['scada']);
  });

  it('path parameters: every operation with one declares the 400 and 414 the router answers, no other declares 414', async () => {
    const tooLong = 'a'.repeat(MAX_PATH_PARAM_LENGTH + 1);
    let checked = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item) as Array<[Method, Operation]>) {
        const names = (operation.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
        if (names.length === 0) {
          assert.equal(operation.responses['414'], undefined, `${method.toUpperCase()} ${path} has no path parameter`);
          continue;
        }
        for (const name of names) {
          const url = (value: string) => path.replace(/\{([^}]+)\}/g, (_, p: string) => (p === name ? value : 'x'));
          // Refused by the router, before any route, its token or its body.
          const long = await call(414, method, path, url(tooLong));
          const { detail, error } = long.body as { detail?: string; error?: string };
          assert.match(
            String(detail ?? error),
            /^\(path\): /,
            `${method.toUpperCase()} ${path}: the 414 names the path`,
          );
          assert.ok(
            !String(detail ?? error).includes(tooLong),
            `${method.toUpperCase()} ${path}: quotes the path back`,
          );
          await call(400, method, path, url('%E2%82'));
          const longest = await http[method](url('a'.repeat(MAX_PATH_PARAM_LENGTH)));
          assert.notEqual(longest.status, 414, `${method.toUpperCase()} ${path}: ${name} at the limit`);
          checked++;
        }
      }
    }
    assert.ok(checked >= 10, `only ${checked} path parameters`);
  });

  it('431: headers over the limit are answered before routing, to any path, as the description says; no operation lists it', async () => {
    assert.match(
      doc.info.description,
      new RegExp(`431 when its request line and headers are over ${maxHeaderSize} bytes`),
    );
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item) as Array<[Method, Operation]>) {
        assert.equal(operation.responses['431'], undefined, `${method.toUpperCase()} ${path}`);
      }
    }
    for (const path of ['/v2/models', '/v1/audit/events', '/health/live']) {
      const res = await http.get(path).set('X-Padding', 'x'.repeat(maxHeaderSize));
      assert.equal(res.status, 431, path);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/, path);
    }
  });

  it('past a deadline: each operation that declares 504 answers it as declared', async () => {
    const admin = auth(['ml-admin']);
    const engine = auth(['risk-engine']);
    const scada = auth(['scada']);
    const pacs = auth(['pacs-integration']);
    const mill = '/v1/manufacturing/assets/mill-c';
    const asset = '/v1/manufacturing/assets/{assetId}';
    await call(200, 'put', asset, mill, { auth: admin, body: millAsset('mill-c') });
    const meta = await call(200, 'get', '/v2/models/{name}', '/v2/models/card-fraud', { auth: admin });
    const oip = { inputs: [zeroRowOf(meta.body)] };
    const values = { air_temp: 25, process_temp: 35, speed: 1500, torque: 40, tool_wear: 10 };
    const reading = (at: string) => ({ readings: [{ timestamp: at, values }] });
    const readings = '/v1/manufacturing/assets/{assetId}/readings';
    const runtime = app.get(InferenceEngine);
    const infer = runtime.infer.bind(runtime);
    const late = new Set<string>();
    try {
      runtime.infer = () => Promise.reject(new AppError('DEADLINE_EXCEEDED', 'the request waited past its deadline'));
      const past = async (method: Method, path: string, url: string, options: Parameters<typeof call>[4]) => {
        late.add(`${method.toUpperCase()} ${path}`);
        return call(504, method, path, url, options);
      };
      await past('post', '/v2/models/{name}/infer', '/v2/models/card-fraud/infer', { auth: admin, body: oip });
      const pinned = '/v2/models/{name}/versions/{version}/infer';
      await past('post', pinned, '/v2/models/card-fraud/versions/1/infer', { auth: admin, body: oip });
      const fraud = '/v1/finance/fraud-scores';
      await past('post', fraud, fraud, { auth: engine, body: tx() });
      await past('post', `${fraud}/batch`, `${fraud}/batch`, { auth: engine, body: { transactions: [tx()] } });
      const credit = '/v1/finance/credit-assessments';
      await past('post', credit, credit, { auth: engine, body: APPLICANT });
      await past('post', `${credit}/batch`, `${credit}/batch`, {
        auth: engine,
        body: { applications: [{ ...APPLICANT, applicationId: 'late-1' }] },
      });
      const detect = '/v1/medical/lesion-detections';
      const image = dicomFile('US1_UNCR.dcm');
      await past('post', detect, detect, { auth: pacs, body: image, type: 'application/dicom' });
      // The readings are kept and predicted when the runtime recovers: the answer says when to send them again
      // (a retry finds them duplicates), as it does when the runtime fails on them (500).
      const kept = await past('post', readings, `${mill}/readings`, {
        auth: scada,
        body: reading('2026-11-23T00:00:01Z'),
      });
      assert.equal(kept.headers['retry-after'], '1');
      runtime.infer = () => Promise.reject(new Error('the model failed'));
      const failed = await call(500, 'post', readings, `${mill}/readings`, {
        auth: scada,
        body: reading('2026-11-23T00:00:02Z'),
      });
      assert.equal(failed.headers['retry-after'], '1');
    } finally {
      runtime.infer = infer;
    }
    const declaring = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, operation]) => operation.responses['504'])
        .map(([method]) => `${method.toUpperCase()} ${path}`),
    );
    assert.deepEqual([...late].sort(), declaring.sort());
  });

  it('readiness while the worker is being replaced', async () => {
    const engine = app.get(InferenceEngine);
    // Reach the pool the way an operator's kill -9 of a thread would (as the back-pressure test does).
    const pool = (engine as unknown as { pool: { slots: Array<{ worker: { terminate(): Promise<number> } }> } }).pool;
    await pool.slots[0].worker.terminate();
    await call(503, 'get', '/health/ready', '/health/ready');
    await call(503, 'get', '/v2/health/ready', '/v2/health/ready');
    let ready = 503;
    for (let i = 0; i < 2000 && ready !== 200; i++) ready = (await http.get('/health/ready')).status;
    assert.equal(ready, 200, 'ready again once the replacement worker has loaded every model');
  });

  it('every documented operation was answered with a success', () => {
    const missing: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of Object.keys(item)) {
        const statuses = seen.get(`${method.toUpperCase()} ${path}`) ?? new Set();
        if (![...statuses].some((s) => s >= 200 && s < 300)) missing.push(`${method.toUpperCase()} ${path}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  /** The first answer of the SSE stream (status and headers), then the connection is closed. */
  async function openStream(path: string, authorization: string): Promise<Answer> {
    const server = app.getHttpServer();
    if (!server.listening) await app.listen(0, '127.0.0.1');
    const { port } = server.address() as AddressInfo;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      httpGet({ host: '127.0.0.1', port, path, headers: { Authorization: authorization } }, resolve).on(
        'error',
        reject,
      );
    });
    res.destroy();
    return { status: res.statusCode ?? 0, headers: res.headers, body: undefined };
  }
});

/** The StudyInstanceUID of a DICOM file. */
function studyUidOf(file: Buffer): string {
  const ab = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer;
  return String(dcmjsData.DicomMessage.readFile(ab).dict['0020000D'].Value?.[0]);
}

interface WalkedSchema {
  $ref?: string;
  type?: string;
  properties?: Record<string, WalkedSchema>;
  additionalProperties?: boolean | WalkedSchema;
  items?: WalkedSchema;
  allOf?: WalkedSchema[];
}

/**
 * Where `value` has a member its schema does not declare (`at` and the member's name): an object schema's member
 * outside its properties, where it declares no additionalProperties schema. An object schema without properties
 * declares none. oneOf and anyOf are left to the schema's validation.
 */
function undeclaredMembers(value: unknown, schema: WalkedSchema, components: object, at = '(body)'): string[] {
  if (schema.$ref) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    return undeclaredMembers(
      value,
      (components as { schemas: Record<string, WalkedSchema> }).schemas[name],
      components,
      at,
    );
  }
  if (schema.allOf) return schema.allOf.flatMap((part) => undeclaredMembers(value, part, components, at));
  if (Array.isArray(value)) {
    return schema.items
      ? value.flatMap((item, i) => undeclaredMembers(item, schema.items!, components, `${at}[${i}]`))
      : [];
  }
  if (!value || typeof value !== 'object' || schema.type !== 'object') return [];
  const out: string[] = [];
  for (const [name, member] of Object.entries(value)) {
    const declared = schema.properties?.[name];
    const rest = schema.additionalProperties;
    if (declared) out.push(...undeclaredMembers(member, declared, components, `${at}.${name}`));
    else if (typeof rest === 'object') out.push(...undeclaredMembers(member, rest, components, `${at}.${name}`));
    else if (rest !== true) out.push(`${at}.${name}`);
  }
  return out;
}

/**
 * The schema with `nullable` dropped where no `type` stands beside it: OpenAPI 3.0.3 gives it no effect
 * there (it only widens a type stated in the same schema), where Ajv refuses to compile it.
 */
function withoutUntypedNullable(schema: unknown): object {
  return JSON.parse(JSON.stringify(schema), (_key, value: unknown) => {
    if (value && typeof value === 'object' && !Array.isArray(value) && 'nullable' in value && !('type' in value)) {
      const { nullable: _nullable, ...rest } = value as Record<string, unknown>;
      return rest;
    }
    return value;
  }) as object;
}
