import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { luhnValid } from '../../src/common/pan';
import { tx } from '../fixtures/finance-data';
import { bundledModelsDir } from '../fixtures/paths';
import { DATASETS_SKIP } from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

/** Luhn-valid card numbers of the shortest, the common and the longest length. */
const PANS = ['4222222222222', '4111111111111111', '4917610000000000003'];

const groupsOf4 = (digits: string): string[] => digits.match(/\d{1,4}/g) ?? [];
/** Every digit as its percent-escape: `%34%31...`, which a path or query decodes to the card number. */
const escaped = (digits: string): string => [...digits].map((d) => `%3${d}`).join('');

/** How each card number is written into a path segment, a query value or a header. */
function forms(digits: string): { path: string[]; header: string[] } {
  const spaced = groupsOf4(digits).join(' ');
  const dashed = groupsOf4(digits).join('-');
  return {
    path: [digits, dashed, encodeURIComponent(spaced), escaped(digits), `ref-${digits}`],
    header: [digits, spaced, dashed, `ref-${digits}`, `${dashed}.`],
  };
}

/**
 * Whether `text` holds one of PANS in any form these requests wrote it: as digits, in groups split by spaces or
 * dashes (or their escapes), or with each digit percent-escaped.
 */
function panIn(text: string): string | undefined {
  const folded = text.replace(/%3(\d)/gi, '$1').replace(/%20|%2d|[ -]/gi, '');
  for (const pan of PANS) {
    const at = folded.indexOf(pan);
    if (at >= 0) return folded.slice(Math.max(0, at - 100), at + pan.length + 20);
  }
  return undefined;
}

/** What a GET of the alarm stream answers within half a second (its status, headers and first events). */
function opening(port: number, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/v1/manufacturing/alarms/stream', headers }, (res) => {
      let text = `${res.statusCode} ${JSON.stringify(res.headers)}`;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('error', () => undefined); // the cut below
      const timer = setTimeout(() => req.destroy(), 500);
      res.once('close', () => {
        clearTimeout(timer);
        resolve(text);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('a card number in a path, a query or a header ends up nowhere', { skip: DATASETS_SKIP }, () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  const captured: string[] = [];
  const writes = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  before(async () => {
    modelsDir = bundledModelsDir(['finance', 'manufacturing']);
    // Everything the gateway prints, at the most verbose level, is kept to be searched.
    const tap =
      (write: typeof process.stdout.write) =>
      (chunk: unknown, ...rest: unknown[]): boolean => {
        captured.push(Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk));
        return (write as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
      };
    process.stdout.write = tap(writes.out);
    process.stderr.write = tap(writes.err);
    app = await createTestApp({ MODELS_DIR: modelsDir, LOG_LEVEL: 'verbose' });
    await app.listen(0, '127.0.0.1');
  });
  after(async () => {
    process.stdout.write = writes.out;
    process.stderr.write = writes.err;
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('not in log lines, stored rows, metrics or answers', async () => {
    for (const pan of PANS) assert.ok(luhnValid(pan), pan);
    const http = request(app.getHttpServer());
    const everyone = bearer(
      tokenFor(['ml-admin', 'risk-engine', 'auditor', 'plant-operator', 'scada', 'pacs-integration', 'radiologist'], {
        sub: 'pan-sweep',
      }),
    );
    const answers: Array<{ sent: string; text: string }> = [];
    const send = async (
      method: 'get' | 'post' | 'put' | 'delete',
      path: string,
      headers: Record<string, string> = {},
      body?: object | string,
    ): Promise<void> => {
      let req = http[method](path).set('Authorization', everyone);
      for (const [name, value] of Object.entries(headers)) req = req.set(name, value);
      const res = body === undefined ? await req : await req.send(body);
      assert.ok(res.status < 500 && res.status !== 429, `${method} ${path}: ${res.status} ${res.text}`);
      answers.push({
        sent: `${method.toUpperCase()} ${path} ${JSON.stringify(headers)}`,
        text: JSON.stringify([res.headers, res.text]),
      });
    };

    for (const pan of PANS) {
      const { path: inPath, header: inHeader } = forms(pan);
      for (const f of inPath) {
        await send('post', `/v1/finance/fraud-scores/${f}`, {}, tx());
        await send('get', `/v1/models/${f}/versions/1`);
        await send('get', `/v2/models/${f}`);
        await send('get', `/v2/models/${f}/ready`);
        await send('get', `/v2/models/card-fraud/versions/${f}`);
        await send('post', `/v2/models/${f}/infer`, {}, { inputs: [] });
        await send('post', `/v2/models/card-fraud/versions/${f}/infer`, {}, { inputs: [] });
        // No asset is registered under the number (PUT): an asset id is the plant's own equipment number, kept as
        // given (README, Manufacturing), and about one numeric id of 13 to 19 digits in ten passes the Luhn check.
        // An id no asset has is named (card number) in the 404.
        await send('get', `/v1/manufacturing/assets/${f}`);
        await send('post', `/v1/manufacturing/assets/${f}/readings`, {}, { readings: [] });
        await send('get', `/v1/manufacturing/assets/${f}/status`);
        await send('get', `/v1/manufacturing/assets/${f}/predictions`);
        await send('delete', `/v1/manufacturing/assets/${f}`);
        await send('get', `/v1/medical/studies/${f}/findings`);
        await send('post', `/dicomweb/studies/${f}`, { 'Content-Type': 'application/dicom' });
        // Query strings: as a value and as a name.
        await send('get', `/v2/models?note=${f}`);
        await send('get', `/v1/audit/events?actor=${f}`);
        await send('get', `/v1/audit/events?${f}=1`);
        await send('get', `/v1/manufacturing/alarms?assetId=${f}`);
        await send('post', `/v1/finance/fraud-scores?note=${f}`, {}, tx());
        await send('get', `/health/live?${f}`);
      }
      for (const f of inHeader) {
        for (const name of ['X-Request-Id', 'Idempotency-Key', 'X-Card-Reference', 'User-Agent']) {
          await send('post', '/v1/finance/fraud-scores', { [name]: f }, tx());
          await send('get', '/v2/models/card-fraud', { [name]: f });
        }
        await send('post', '/v1/finance/fraud-scores', { Accept: `application/json; x=${f}` }, tx());
        await send(
          'post',
          '/v1/finance/fraud-scores',
          { 'Content-Type': `application/json; x=${f}` },
          JSON.stringify(tx()),
        );
        await send('post', '/v1/finance/fraud-scores', { 'Content-Type': `text/${f}` }, JSON.stringify(tx()));
        await send('post', '/v1/finance/fraud-scores', { Origin: `https://${f}.example` }, tx());
        await send('get', '/v1/audit/events', { Authorization: `Bearer ${f}` });
      }
      // The alarm stream's resume point: a whole number, so a card number as digits. A stream never ends: what it
      // sent in its first half second is kept.
      const port = (app.getHttpServer().address() as AddressInfo).port;
      const headers = { Authorization: everyone, Accept: 'text/event-stream', 'Last-Event-ID': pan };
      answers.push({
        sent: `GET /v1/manufacturing/alarms/stream Last-Event-ID ${pan}`,
        text: await opening(port, headers),
      });
    }
    const metrics = await http.get('/metrics').set('Authorization', bearer(tokenFor(['monitoring'])));
    assert.equal(metrics.status, 200);

    const db = app.get(DataSource);
    const tables = await db.query<Array<{ tablename: string }>>(
      "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    );
    const stored: Record<string, string> = {};
    for (const { tablename } of tables) {
      stored[tablename] = JSON.stringify(await db.query(`SELECT * FROM "${tablename}"`));
    }
    assert.ok(JSON.parse(stored.audit_events).length > 100, 'the requests were audited');
    // The trail as an auditor reads it, every page.
    const pages: string[] = [];
    for (let cursor: string | null = ''; cursor !== null;) {
      const page: request.Response = await http
        .get(`/v1/audit/events?limit=500${cursor ? `&cursor=${cursor}` : ''}`)
        .set('Authorization', everyone);
      assert.equal(page.status, 200, page.text);
      pages.push(page.text);
      cursor = (page.body as { nextCursor: string | null }).nextCursor;
    }

    assert.ok(captured.join('').length > 0, 'the gateway logged something to search');
    const leaks: string[] = [];
    const search = (where: string, text: string) => {
      const excerpt = panIn(text);
      if (excerpt !== undefined) leaks.push(`${where}: …${excerpt}…`);
    };
    for (const line of captured.join('').split('\n')) search('log line', line);
    search('metrics', metrics.text);
    for (const page of pages) search('GET /v1/audit/events', page);
    for (const [table, rows] of Object.entries(stored)) {
      for (const row of JSON.parse(rows) as unknown[]) search(`table ${table}`, JSON.stringify(row));
    }
    for (const { sent, text } of answers) search(`answer to ${sent}`, text);
    assert.deepEqual(leaks, []);
  });

  it('an X-Request-Id that is long, holds a control character or a card number is replaced by a minted one, the row keeping what was answered', async () => {
    const http = request(app.getHttpServer());
    const engine = bearer(tokenFor(['risk-engine'], { sub: 'pan-sweep-ids' }));
    const minted = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    const cases: Array<[string, RegExp]> = [
      ['tx-77.a_b:c', /^tx-77\.a_b:c$/],
      ['k'.repeat(128), /^k{128}$/],
      ['k'.repeat(129), minted],
      ['a\tb', minted],
      ['a b', minted],
      ['<script>', minted],
      ['caf\u00e9', minted],
      ['4111111111111111', minted],
      ['4111.1111.1111.1111', minted],
      ['ref_4222222222222', minted],
    ];
    for (const [sent, answered] of cases) {
      const res = await http
        .post('/v1/finance/fraud-scores')
        .set('Authorization', engine)
        .set('X-Request-Id', sent)
        .send(tx());
      assert.equal(res.status, 200, res.text);
      const id = String(res.headers['x-request-id']);
      assert.match(id, answered, JSON.stringify(sent));
      assert.equal((res.body as { requestId: string }).requestId, id);
      const rows = await app
        .get(DataSource)
        .query<Array<{ request_id: string }>>('SELECT request_id FROM audit_events WHERE request_id = $1', [id]);
      assert.equal(rows.length, 1, JSON.stringify(sent));
    }
  });

  it('requests with a new path, query or header each add no series to /metrics', async () => {
    const http = request(app.getHttpServer());
    const scrape = async (): Promise<string[]> => {
      const res = await http.get('/metrics').set('Authorization', bearer(tokenFor(['monitoring'])));
      assert.equal(res.status, 200);
      // Series of the HTTP counters, whose labels are the ones a request could move.
      return res.text.split('\n').filter((line) => line.startsWith('gateway_http_requests_total{'));
    };
    const everyone = bearer(tokenFor(['ml-admin', 'risk-engine', 'plant-operator'], { sub: 'pan-sweep-metrics' }));
    const round = async (i: number): Promise<void> => {
      await http.get(`/v1/no-such-route-${i}`).set('Authorization', everyone);
      await http.get(`/v2/models/model-${i}`).set('Authorization', everyone);
      await http.get(`/v1/manufacturing/assets/asset-${i}`).set('Authorization', everyone);
      await http.get(`/v2/models?x${i}=1`).set('Authorization', everyone);
      await http
        .get('/v2/models')
        .set('Authorization', everyone)
        .set(`X-Header-${i}`, String(i))
        .set('User-Agent', `ua-${i}`);
      await http.post(`/v1/finance/fraud-scores/${i}`).set('Authorization', everyone).send(tx());
    };
    await round(0);
    const before = await scrape();
    for (let i = 1; i <= 25; i++) await round(i);
    const after = await scrape();
    const names = (lines: string[]) => new Set(lines.map((line) => line.slice(0, line.lastIndexOf(' '))));
    assert.deepEqual(names(after), names(before));
    for (const line of after) assert.match(line, /route="(\/[^"]*|unmatched)"/);
  });
});
