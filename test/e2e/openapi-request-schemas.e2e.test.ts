import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { getMetadataStorage } from 'class-validator';
import request from 'supertest';
import { FRAUD_ITEM_SCHEMA } from '../../src/domains/finance/fraud-item.schema';
import { IDENTIFIER } from '../../src/domains/manufacturing/assets/asset.dto';
import { COUNTRIES } from '../../src/domains/finance/fraud-score.dto';
import { OIP_INFER_REQUEST_SCHEMA } from '../../src/runtime/oip/oip-request.schema';
import { tx } from '../fixtures/finance-data';
import { bundledModelsDir } from '../fixtures/paths';
import { millAsset } from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { zeroRowOf } from '../fixtures/oip-tensors';
import { bearer, tokenFor } from '../fixtures/test-auth';

type Schema = Record<string, unknown>;
type Method = 'get' | 'post' | 'put';
interface Parameter {
  name: string;
  in: string;
  schema: Schema;
}
interface Operation {
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: Schema }> };
}
interface Document {
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: { schemas: Record<string, Schema> };
}

/** A request that differs from a valid one in one respect. */
interface Sample {
  label: string;
  method: Method;
  /** The path template of the document. */
  path: string;
  url: string;
  roles: string[];
  body?: unknown;
}

/** The keywords that say what a value may be; descriptions and examples say nothing of what is taken. */
const CONSTRAINTS = ['type', 'enum', 'pattern', 'format', 'minimum', 'maximum', 'minLength', 'maxLength'];
const LIST_CONSTRAINTS = ['minItems', 'maxItems'];

/**
 * What the document says a request may hold, held to what the routes take. A route that checks its body with a
 * compiled schema (the fraud and OIP routes, which skip the class-based pipe) has that schema compared with the
 * document's, keyword by keyword; and samples (a valid request with one field or parameter changed) are checked
 * against the document's schemas and sent: each must be taken exactly when the document allows it. A client
 * generated from the document validates by it: a looser document has it send what is refused, a stricter one keeps
 * it from what is taken.
 */
describe('OpenAPI: request schemas and parameters say what the routes take', () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  let doc: Document;
  const ajv = new Ajv({ strict: false, allErrors: true });
  const coercing = new Ajv({ strict: false, allErrors: true, coerceTypes: true });
  addFormats(ajv);
  addFormats(coercing);

  before(async () => {
    modelsDir = bundledModelsDir(['finance', 'manufacturing']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
    doc = (await request(app.getHttpServer()).get('/docs/openapi.json').expect(200)).body as Document;
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  const resolve = (schema: Schema): Schema => {
    const ref = schema.$ref;
    return typeof ref === 'string' ? doc.components.schemas[ref.replace('#/components/schemas/', '')] : schema;
  };

  /**
   * Where the document's schema for a body and the compiled schema its route checks it with part: each constraint,
   * the required properties and whether an object is closed, property by property and item by item.
   */
  function differences(compiled: Schema, documented: Schema, at = '(body)'): string[] {
    const schema = resolve(documented);
    const out: string[] = [];
    const differ = (keyword: string, want: unknown, got: unknown): void => {
      if (!isDeepStrictEqual(want, got)) {
        out.push(`${at}: ${keyword} ${JSON.stringify(got)} in the document, ${JSON.stringify(want)} when checked`);
      }
    };
    const sorted = (list: unknown): unknown => (Array.isArray(list) ? [...(list as string[])].sort() : list);
    for (const keyword of [...CONSTRAINTS, ...LIST_CONSTRAINTS]) {
      // An enum alone says the type; the fraud routes check a country against one Set (isoCountry).
      if (keyword === 'type' && compiled.type === undefined) continue;
      const want = keyword === 'enum' && compiled.isoCountry ? [...COUNTRIES] : compiled[keyword];
      differ(
        keyword,
        keyword === 'enum' ? sorted(want) : want,
        keyword === 'enum' ? sorted(schema[keyword]) : schema[keyword],
      );
    }
    differ('required', sorted(compiled.required ?? []), sorted(schema.required ?? []));
    const closed = compiled.additionalProperties === false;
    differ('additionalProperties: false', closed, schema.additionalProperties === false);
    const want = (compiled.properties ?? {}) as Record<string, Schema>;
    const got = (schema.properties ?? {}) as Record<string, Schema>;
    for (const [name, property] of Object.entries(want)) {
      if (got[name]) out.push(...differences(property, got[name], `${at}.${name}`));
      else out.push(`${at}.${name}: not in the document`);
    }
    // An open object (the OIP parameters) may document more of what it holds.
    if (closed) for (const name of Object.keys(got)) if (!want[name]) out.push(`${at}.${name}: refused when checked`);
    if (compiled.items) out.push(...differences(compiled.items as Schema, (schema.items ?? {}) as Schema, `${at}[]`));
    return out;
  }

  /** Why the document refuses the sample; empty when it allows it. */
  function documentRefuses(sample: Sample): string[] {
    const operation = doc.paths[sample.path]?.[sample.method];
    assert.ok(operation, `${sample.method.toUpperCase()} ${sample.path} is not in the document`);
    const [pathname, query = ''] = sample.url.split('?');
    const names = [...sample.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    const template = new RegExp(`^${sample.path.replace(/\{[^}]+\}/g, '([^/]+)')}$`);
    const values = template.exec(pathname)?.slice(1) ?? [];
    assert.equal(values.length, names.length, `${sample.url} is not ${sample.path}`);
    const sent = [
      ...names.map((name, i) => ({ in: 'path', name, value: decodeURIComponent(values[i]) })),
      ...[...new URLSearchParams(query)].map(([name, value]) => ({ in: 'query', name, value })),
    ];
    const refusals: string[] = [];
    for (const parameter of sent) {
      const declared = operation.parameters?.find((p) => p.in === parameter.in && p.name === parameter.name);
      if (!declared) {
        refusals.push(`${parameter.in} parameter ${parameter.name} is not declared`);
        continue;
      }
      // Parameters travel as text: the document's type says what the text must read as.
      const validate = coercing.compile({ type: 'object', properties: { value: declared.schema } });
      if (!validate({ value: parameter.value }))
        refusals.push(`${parameter.name}: ${coercing.errorsText(validate.errors)}`);
    }
    if (sample.body !== undefined) {
      const schema = operation.requestBody?.content['application/json']?.schema;
      assert.ok(schema, `${sample.path} takes no JSON body`);
      const validate = ajv.compile({ ...schema, components: doc.components });
      if (!validate(sample.body)) refusals.push(`body: ${ajv.errorsText(validate.errors)}`);
    }
    return refusals;
  }

  /** Each sample sent; what the document allows must be taken (2xx), what it refuses refused (400). */
  async function heldToTheDocument(samples: Sample[]): Promise<void> {
    const mismatches: string[] = [];
    for (const sample of samples) {
      const refusals = documentRefuses(sample);
      let req = request(app.getHttpServer())
        [sample.method](sample.url)
        .set('Authorization', bearer(tokenFor(sample.roles)));
      if (sample.body !== undefined) req = req.send(sample.body as object);
      const res = await req;
      const answer = `${res.status} ${(res.text ?? '').slice(0, 200)}`;
      if (refusals.length === 0 && res.status >= 300) {
        mismatches.push(`${sample.label}: the document allows it, the route answered ${answer}`);
      } else if (refusals.length > 0 && res.status !== 400) {
        mismatches.push(
          `${sample.label}: the document refuses it (${refusals.join('; ')}), the route answered ${answer}`,
        );
      }
    }
    assert.deepEqual(mismatches, []);
  }

  it('fraud scores: the documented transaction is the one the compiled schema checks', async () => {
    const fraud = '/v1/finance/fraud-scores';
    const body = doc.paths[fraud].post?.requestBody?.content['application/json'].schema;
    assert.ok(body);
    assert.deepEqual(differences(FRAUD_ITEM_SCHEMA, body), []);
    const batch = resolve(doc.paths[`${fraud}/batch`].post?.requestBody?.content['application/json'].schema ?? {});
    assert.deepEqual(
      differences(FRAUD_ITEM_SCHEMA, (batch.properties as Record<string, Schema>).transactions.items as Schema),
      [],
    );
    const transaction = (label: string, occurredAt: string): Sample => ({
      label: `fraud score, occurredAt ${label}`,
      method: 'post',
      path: fraud,
      url: fraud,
      roles: ['risk-engine'],
      body: tx({ occurredAt }),
    });
    await heldToTheDocument([
      transaction('with its offset', '2026-11-23T14:05:00+01:00'),
      transaction('without an offset', '2026-11-23T14:05:00'),
      transaction('to the minute, without an offset', '2026-11-23T14:05'),
      transaction('to the minute, in UTC', '2026-11-23T14:05Z'),
      transaction('to the nanosecond, its offset without a colon', '2026-11-23T14:05:00.123456789-0330'),
      transaction('past the nanosecond', '2026-11-23T14:05:00.1234567890Z'),
      transaction('with a space for the T', '2026-11-23 14:05:00Z'),
      transaction('with a lower-case t and z (RFC 3339 5.6)', '2026-11-23t14:05:00z'),
      transaction('with a lower-case t and its offset', '2026-11-23t14:05:00.5-03:30'),
    ]);
  });

  it('finance: the documented Idempotency-Key is the one the routes take', async () => {
    const routes: Array<[string, string, unknown]> = [
      ['/v1/finance/fraud-scores', 'risk-engine', tx()],
      ['/v1/finance/fraud-scores/batch', 'risk-engine', { transactions: [tx()] }],
      ['/v1/finance/credit-assessments', 'risk-engine', undefined],
    ];
    const keys = ['k', 'order-7f3a:retry_1.2', 'x'.repeat(200), 'x'.repeat(201), 'has space', 'caf\u00e9'];
    const mismatches: string[] = [];
    for (const [path, role, body] of routes) {
      const declared = doc.paths[path].post?.parameters?.find((p) => p.in === 'header' && p.name === 'Idempotency-Key');
      assert.ok(declared?.schema.pattern, `${path}: Idempotency-Key has no pattern in the document`);
      const validate = ajv.compile(declared.schema);
      for (const [i, key] of keys.entries()) {
        const allowed = validate(key);
        // Header values travel as Latin-1 in Node's client: send the others as their bytes would arrive.
        const res = await request(app.getHttpServer())
          .post(path)
          .set('Authorization', bearer(tokenFor([role], { sub: `key-${i}` })))
          .set('Idempotency-Key', Buffer.from(key, 'utf8').toString('latin1'))
          .send(body ?? {});
        const refusedForKey = res.status === 400 && JSON.stringify(res.body.errors ?? []).includes('Idempotency-Key');
        if (allowed === refusedForKey) {
          mismatches.push(
            `${path} ${JSON.stringify(key)}: document ${allowed ? 'allows' : 'refuses'}, route ${res.status}`,
          );
        }
      }
    }
    assert.deepEqual(mismatches, []);
  });

  it('OIP infer: the documented request is the one the compiled schema checks', async () => {
    for (const path of ['/v2/models/{name}/infer', '/v2/models/{name}/versions/{version}/infer']) {
      const body = doc.paths[path].post?.requestBody?.content['application/json'].schema;
      assert.ok(body, path);
      assert.deepEqual(differences(OIP_INFER_REQUEST_SCHEMA, body), [], path);
    }
    const meta = await request(app.getHttpServer())
      .get('/v2/models/card-fraud')
      .set('Authorization', bearer(tokenFor(['ml-admin'])))
      .expect(200);
    const tensor = zeroRowOf(meta.body);
    const width = tensor.shape[1];
    const output = (meta.body as { outputs: Array<{ name: string }> }).outputs[0].name;
    const infer = (label: string, body: Record<string, unknown>, pinned = false): Sample => ({
      label: `OIP infer${pinned ? ' (pinned)' : ''}, ${label}`,
      method: 'post',
      path: pinned ? '/v2/models/{name}/versions/{version}/infer' : '/v2/models/{name}/infer',
      url: pinned ? '/v2/models/card-fraud/versions/1/infer' : '/v2/models/card-fraud/infer',
      roles: ['ml-admin'],
      body: { inputs: [tensor], ...body },
    });
    await heldToTheDocument([
      infer('as sent by a client', {}),
      infer('as sent by a client', {}, true),
      infer('no inputs', { inputs: [] }),
      infer('no inputs', { inputs: [] }, true),
      infer('an id of 256 characters', { id: 'i'.repeat(256) }),
      infer('an id of 257 characters', { id: 'i'.repeat(257) }),
      infer('a fractional dimension', { inputs: [{ ...tensor, shape: [1.5, width] }] }),
      infer('a negative dimension', { inputs: [{ ...tensor, shape: [-1, width] }] }),
      infer('nine dimensions', { inputs: [{ ...tensor, shape: [1, 1, 1, 1, 1, 1, 1, 1, width] }] }),
      infer('an input without a name', { inputs: [{ ...tensor, name: '' }] }),
      infer('binary_data_output true', { parameters: { binary_data_output: true } }),
      infer('binary_data_output "yes"', { parameters: { binary_data_output: 'yes' } }),
      infer('timeout_ms 1000', { parameters: { timeout_ms: 1000 } }),
      infer('timeout_ms 0', { parameters: { timeout_ms: 0 } }),
      infer('timeout_ms 2^31', { parameters: { timeout_ms: 2 ** 31 } }),
      infer('timeout 1000000', { parameters: { timeout: 1_000_000 } }),
      infer('timeout 0', { parameters: { timeout: 0 } }),
      infer('timeout (2^31 - 1) * 1000 + 1', { parameters: { timeout: (2 ** 31 - 1) * 1000 + 1 } }),
      infer('an output by name', { outputs: [{ name: output }] }),
      infer('an output without a name', { outputs: [{ name: '' }] }),
      infer('an output as binary data', { outputs: [{ name: output, parameters: { binary_data: true } }] }),
      infer('an output with binary_data "yes"', { outputs: [{ name: output, parameters: { binary_data: 'yes' } }] }),
    ]);
  });

  it("a DTO's every Matches and IsIsoTime is its property's pattern in the document", () => {
    // class-validator keeps its metadata by class; the document names a body's schemas after their classes.
    const storage = getMetadataStorage() as unknown as {
      validationMetadatas: Map<
        { name: string },
        Array<{ name?: string; propertyName: string; constraints: unknown[] }>
      >;
    };
    const mismatches: string[] = [];
    let checked = 0;
    for (const [target, rules] of storage.validationMetadatas) {
      const schema = doc.components.schemas[target.name];
      if (!schema) continue;
      for (const rule of rules.filter((r) => r.name === 'matches' || r.name === 'isIsoTime')) {
        const [pattern] = rule.constraints as [RegExp | string];
        const want = pattern instanceof RegExp ? pattern.source : pattern;
        const got = (schema.properties as Record<string, Schema>)[rule.propertyName]?.pattern;
        checked++;
        if (got !== want)
          mismatches.push(`${target.name}.${rule.propertyName}: ${String(got)} in the document, ${want}`);
      }
    }
    assert.ok(checked > 5, `only ${checked} patterns found`);
    assert.deepEqual(mismatches, []);
  });

  it('times: query bounds and reading timestamps as the document states them (RFC 3339 allows a lower-case t and z)', async () => {
    const admin = bearer(tokenFor(['ml-admin']));
    await request(app.getHttpServer())
      .put('/v1/manufacturing/assets/mill-t')
      .set('Authorization', admin)
      .send(millAsset('mill-t'))
      .expect(200);
    const times = [
      '2026-11-23T10:00:00Z',
      '2026-11-23t10:00:00z',
      '2026-11-23t10:00:00.123456789+01:00',
      '2026-11-23T10:00z',
      '2026-11-23',
      '2026-11-23T10:00:00',
      '2026-11-23 10:00:00Z',
      '2026-11-23T10Z',
      'yesterday',
    ];
    const query = (label: string, path: string, roles: string[], name: string): Sample[] =>
      times.map((time) => ({
        label: `${label}, ${name}=${time}`,
        method: 'get',
        path,
        url: `${path}?${name}=${encodeURIComponent(time)}`,
        roles,
      }));
    const predictions = '/v1/manufacturing/assets/{assetId}/predictions';
    const samples: Sample[] = [
      ...query('audit events', '/v1/audit/events', ['auditor'], 'from'),
      ...query('audit events', '/v1/audit/events', ['auditor'], 'to'),
      ...query('dead letters', '/v1/manufacturing/dead-letters', ['plant-operator'], 'from'),
      ...query('predictions', predictions, ['plant-operator'], 'from').map((s) => ({
        ...s,
        url: s.url.replace('{assetId}', 'mill-t'),
      })),
      ...query('predictions', predictions, ['plant-operator'], 'to').map((s) => ({
        ...s,
        url: s.url.replace('{assetId}', 'mill-t'),
      })),
    ];
    const values = { air_temp: 25, process_temp: 35, speed: 1500, torque: 40, tool_wear: 10 };
    const readings = [
      '2026-11-23T10:00:01Z',
      '2026-11-23t10:00:02z',
      '2026-11-23t10:00:03.5+00:00',
      '2026-11-23',
      '2026-11-23T10:00:04',
    ];
    for (const timestamp of readings) {
      samples.push({
        label: `readings, timestamp ${timestamp}`,
        method: 'post',
        path: '/v1/manufacturing/assets/{assetId}/readings',
        url: '/v1/manufacturing/assets/mill-t/readings',
        roles: ['scada'],
        body: { readings: [{ timestamp, values }] },
      });
    }
    await heldToTheDocument(samples);
  });

  it("medical: a study UID is refused exactly when the document's pattern refuses it", async () => {
    const path = '/v1/medical/studies/{studyInstanceUID}/findings';
    const mismatches: string[] = [];
    for (const uid of ['1.2.840.10008.5.1.4', '1'.repeat(64), '1'.repeat(65), 'x', '1.2.3a', '1.2.3-4']) {
      const sample: Sample = {
        label: `study UID ${uid}`,
        method: 'get',
        path,
        url: `/v1/medical/studies/${uid}/findings`,
        roles: ['radiologist'],
      };
      const refused = documentRefuses(sample).length > 0;
      const res = await request(app.getHttpServer())
        .get(sample.url)
        .set('Authorization', bearer(tokenFor(sample.roles)));
      // Never analysed, a study the document allows is a 404, not a refusal of its UID.
      if (refused !== (res.status === 400)) mismatches.push(`${uid}: document refuses ${refused}, route ${res.status}`);
    }
    assert.deepEqual(mismatches, []);
  });

  it('manufacturing: asset ids, cursors and page sizes as the document states them', async () => {
    for (const [path, item] of Object.entries(doc.paths)) {
      if (!path.includes('{assetId}')) continue;
      for (const [method, operation] of Object.entries(item)) {
        const parameter = operation.parameters?.find((p) => p.in === 'path' && p.name === 'assetId');
        assert.equal(parameter?.schema.pattern, IDENTIFIER.source, `${method.toUpperCase()} ${path}`);
      }
    }
    const asset = '/v1/manufacturing/assets/{assetId}';
    const put = (label: string, patch: Record<string, unknown>, id = 'mill-s'): Sample => ({
      label: `asset, ${label}`,
      method: 'put',
      path: asset,
      url: `/v1/manufacturing/assets/${encodeURIComponent(id)}`,
      roles: ['ml-admin'],
      body: { ...millAsset(id), ...patch },
    });
    const get = (label: string, path: string, url: string): Sample => ({
      label,
      method: 'get',
      path,
      url,
      roles: ['plant-operator'],
    });
    const predictions = (query: string): Sample =>
      get(
        `predictions, ${query}`,
        '/v1/manufacturing/assets/{assetId}/predictions',
        `/v1/manufacturing/assets/mill-s/predictions?${query}`,
      );
    const alarms = (query: string): Sample =>
      get(`alarms, ${query}`, '/v1/manufacturing/alarms', `/v1/manufacturing/alarms?${query}`);
    const deadLetters = (query: string): Sample =>
      get(`dead letters, ${query}`, '/v1/manufacturing/dead-letters', `/v1/manufacturing/dead-letters?${query}`);
    await heldToTheDocument([
      put('as registered', {}),
      put('a site with a space', { site: 'plant 1' }),
      put('an empty area', { area: '' }),
      put('a line of 128 characters', { line: 'l'.repeat(128) }),
      put('a line of 129 characters', { line: 'l'.repeat(129) }),
      put('a cell starting with a dash', { cell: '-3' }),
      put('an id with a space', {}, 'mill s'),
      predictions('cursor=1700000000000.1'),
      predictions('cursor=abc'),
      predictions('limit=1'),
      predictions('limit=10000'),
      predictions('limit=1.5'),
      predictions('limit=0'),
      predictions('limit=10001'),
      alarms('assetId=mill-s'),
      alarms('assetId=mill%20s'),
      alarms('cursor=12'),
      alarms('cursor=0'),
      deadLetters('cursor=5'),
      deadLetters('cursor=-1'),
    ]);
  });
});
