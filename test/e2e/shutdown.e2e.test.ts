import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { AuditDraft, AuditWriter } from '../../src/audit/audit-writer.service';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { ReadinessService } from '../../src/common/health/readiness.service';
import { UploadBudget } from '../../src/common/http/body-budget';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { tx } from '../fixtures/finance-data';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

describe('graceful shutdown', () => {
  it('answers an upload still streaming in 503 SHUTTING_DOWN with Retry-After, and closes without waiting for it', async () => {
    const app = await createTestApp({ SHUTDOWN_GRACE_MS: '60000' });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    // A batch announced at 1 MB of which only the start ever comes, as from a slow or stalled sender.
    const upload = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/finance/fraud-scores/batch',
      headers: {
        authorization: bearer(tokenFor(['risk-engine'])),
        'content-type': 'application/json',
        'content-length': String(1_000_000),
      },
    });
    const answered = new Promise<IncomingMessage>((ok, fail) => upload.once('response', ok).once('error', fail));
    upload.write('{"transactions":[');
    await until('the upload to be received', () => (app.get(UploadBudget).held > 0 ? true : undefined));

    const closed = app.close();
    const res = await within(answered, 'the upload was not answered');
    let text = '';
    for await (const chunk of res) text += String(chunk);
    assert.equal(res.statusCode, 503, text);
    assert.equal(res.headers['retry-after'], '1');
    assert.equal((JSON.parse(text) as { code: string }).code, 'SHUTTING_DOWN');
    upload.destroy();
    await within(closed, 'close waited for the unfinished upload');
  });

  it('answers a request that arrives on a busy keep-alive connection during the close 503 SHUTTING_DOWN as problem+json, audited, after the one in flight', async () => {
    const dataDir = await freshDataDir();
    const app = await createTestApp({ SHUTDOWN_GRACE_MS: '60000', DATA_DIR: dataDir });
    const writer = app.get(AuditWriter);
    const record = writer.record.bind(writer);
    let audited!: (draft: AuditDraft) => void;
    const refusal = new Promise<AuditDraft>((ok) => (audited = ok));
    writer.record = async (draft) => {
      await record(draft);
      if (draft.requestId === 'late-score') audited(draft);
    };

    const late = rawRequest('POST', '/v1/finance/fraud-scores', ['risk-engine'], 'late-score', tx());
    const [first, answer, ...more] = await pipelinedDuringClose(app, late, refusal);
    assert.equal(more.length, 0);
    assert.equal(first.status, 200, 'the request in flight finishes');
    assert.equal(first.headers['x-request-id'], 'in-flight');
    assert.equal(answer.status, 503, answer.body);
    assert.match(answer.headers['content-type'] ?? '', /^application\/problem\+json/);
    assert.equal((JSON.parse(answer.body) as { code: string }).code, 'SHUTTING_DOWN');
    assert.equal(answer.headers['retry-after'], '1');
    assert.equal(answer.headers['x-request-id'], 'late-score');
    assert.equal(answer.headers['x-content-type-options'], 'nosniff');
    assert.equal(answer.headers.connection, 'close');
    assert.equal((await refusal).statusCode, 503);

    // The refusal is in the trail, with its caller, like any other.
    const again = await createTestApp({ DATA_DIR: dataDir });
    try {
      const page = await authedHttp(again, ['auditor']).get('/v1/audit/events?action=fraud.score').expect(200);
      const rows = (page.body as { events: Array<Record<string, unknown>> }).events;
      assert.equal(rows.length, 1);
      assert.equal(rows[0].requestId, 'late-score');
      assert.equal(rows[0].actor, 'test-risk-engine');
      assert.equal(rows[0].outcome, 'error');
      assert.equal(rows[0].statusCode, 503);
      assert.deepEqual(rows[0].outputSummary, { reason: 'SHUTTING_DOWN' });
    } finally {
      await again.close();
    }
  });

  it('answers every request pipelined on one connection across the close, in order: those received before it 200 and audited, the rest 503 SHUTTING_DOWN, the last answer closing the connection', async () => {
    const dataDir = await freshDataDir();
    const app = await createTestApp({ SHUTDOWN_GRACE_MS: '60000', DATA_DIR: dataDir });
    const writer = app.get(AuditWriter);
    const record = writer.record.bind(writer);
    const lateIds = ['late-1', 'late-2'];
    const refused = new Set<string>();
    let audited!: () => void;
    const refusals = new Promise<void>((ok) => (audited = ok));
    writer.record = async (draft) => {
      await record(draft);
      if (lateIds.includes(draft.requestId ?? '')) refused.add(draft.requestId ?? '');
      if (refused.size === lateIds.length) audited();
    };

    // Received before the close: the request in flight and one pipelined behind it, both handed to the runtime.
    const accepted = rawRequest('POST', '/v2/models/fixture-linear/infer', ['ml-admin'], 'accepted', LINEAR_INPUT);
    const late = lateIds
      .map((id) => rawRequest('POST', '/v2/models/fixture-linear/infer', ['ml-admin'], id, LINEAR_INPUT))
      .join('');
    const answers = await pipelinedDuringClose(app, late, refusals, { accepted, atRuntime: 2 });
    assert.deepEqual(
      answers.map((a) => [a.headers['x-request-id'], a.status]),
      [
        ['in-flight', 200],
        ['accepted', 200],
        ['late-1', 503],
        ['late-2', 503],
      ],
    );
    for (const answer of answers.slice(2)) {
      assert.match(answer.headers['content-type'] ?? '', /^application\/json/); // OIP's {"error"}
      assert.equal(answer.headers['retry-after'], '1');
    }
    // Only the last answer closes the connection: one closing it earlier would cut off the answers behind it.
    assert.deepEqual(
      answers.map((a) => a.headers.connection === 'close'),
      [false, false, false, true],
    );

    // Nothing received before the close is lost: each answer is in the trail.
    const again = await createTestApp({ DATA_DIR: dataDir });
    try {
      const page = await authedHttp(again, ['auditor']).get('/v1/audit/events?action=model.infer').expect(200);
      const rows = (page.body as { events: Array<Record<string, unknown>> }).events;
      assert.deepEqual(rows.map((row) => [row.requestId, row.statusCode, row.outcome]).sort(), [
        ['accepted', 200, 'ok'],
        ['in-flight', 200, 'ok'],
        ['late-1', 503, 'error'],
        ['late-2', 503, 'error'],
      ]);
    } finally {
      await again.close();
    }
  });

  it('closes a connection whose last answer went out before the close began, once the answer ahead of it is written', async () => {
    const app = await createTestApp({ SHUTDOWN_GRACE_MS: '60000' });
    // Answered at once, before the close, but written only after the inference in flight ahead of it.
    const probe = rawRequest('GET', '/health/live', [], 'probe');
    const answers = await pipelinedDuringClose(app, '', Promise.resolve(), { accepted: probe, atRuntime: 1 });
    assert.deepEqual(
      answers.map((a) => [a.headers['x-request-id'], a.status]),
      [
        ['in-flight', 200],
        ['probe', 200],
      ],
    );
  });

  it('lets a public route that arrives during the close answer as itself: readiness, 503 not-ready', async () => {
    const app = await createTestApp({ SHUTDOWN_GRACE_MS: '60000' });
    const readiness = app.get(ReadinessService);
    const evaluate = readiness.evaluate.bind(readiness);
    let asked!: () => void;
    const evaluated = new Promise<void>((ok) => (asked = ok));
    readiness.evaluate = () => {
      const answer = evaluate();
      if (!answer.ready) asked();
      return answer;
    };

    const late = rawRequest('GET', '/health/ready', [], 'late-probe');
    const [first, answer] = await pipelinedDuringClose(app, late, evaluated);
    assert.equal(first.status, 200);
    assert.equal(answer.status, 503, answer.body);
    assert.match(answer.headers['content-type'] ?? '', /^application\/json/);
    assert.equal((JSON.parse(answer.body) as { status: string }).status, 'not-ready');
    assert.equal(answer.headers.connection, 'close');
  });
});

/**
 * Holds a first request (OIP inference) in flight on a keep-alive connection, before its model runs,
 * with any requests `before` pipelined behind it; begins the close; once the server accepts no more connections, writes `late` on the same connection;
 * lets the first finish once `handled` resolves. Resolves with the connection's answers, in order,
 * after the connection and the close have ended.
 */
async function pipelinedDuringClose(
  app: NestFastifyApplication,
  late: string,
  handled: Promise<unknown>,
  /** Requests written with the first, before the close, which begins once `atRuntime` requests have reached the runtime. */
  before: { accepted: string; atRuntime: number } = { accepted: '', atRuntime: 1 },
): Promise<RawResponse[]> {
  await app.listen(0, '127.0.0.1');
  const server = app.getHttpServer();
  const { port } = server.address() as AddressInfo;
  type Run = (...args: unknown[]) => Promise<unknown>;
  const engine = app.get(InferenceEngine);
  const pool = (engine as unknown as { pool: { run: Run } }).pool;
  const run = pool.run.bind(pool);
  let release!: () => void;
  const gate = new Promise<void>((ok) => (release = ok));
  let reached!: () => void;
  const held = new Promise<void>((ok) => (reached = ok));
  pool.run = async (...args) => {
    reached();
    await gate;
    return run(...args);
  };
  let inferences = 0;
  const infer = engine.infer.bind(engine);
  engine.infer = (...args) => {
    inferences++;
    return infer(...args);
  };

  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
  const socketClosed = new Promise((ok) => socket.once('close', ok));
  socket.write(
    rawRequest('POST', '/v2/models/fixture-linear/infer', ['ml-admin'], 'in-flight', LINEAR_INPUT) + before.accepted,
  );
  await held;
  await until('the requests before the close to reach the runtime', () =>
    inferences >= before.atRuntime ? true : undefined,
  );
  const closed = app.close();
  await until('the server to stop accepting connections', () => (server.listening ? undefined : true));
  // New connections are refused now; this one is still open, busy with the first request.
  socket.write(late);
  await within(handled, 'the late request was not handled');
  release();
  await within(socketClosed, 'the connection was not closed after the answers');
  await within(closed, 'close did not finish');
  return parseResponses(received);
}

function rawRequest(method: string, path: string, roles: string[], requestId: string, body?: object): string {
  const json = body === undefined ? '' : JSON.stringify(body);
  const auth = roles.length > 0 ? `Authorization: ${bearer(tokenFor(roles))}\r\n` : '';
  const type =
    body === undefined ? '' : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n`;
  return `${method} ${path} HTTP/1.1\r\nHost: gateway\r\n${auth}X-Request-Id: ${requestId}\r\n${type}\r\n${json}`;
}

interface RawResponse {
  status: number;
  headers: Record<string, string | undefined>;
  body: string;
}

/** The responses of a connection, in order (each with Content-Length, as the gateway sends them). */
function parseResponses(raw: string): RawResponse[] {
  const responses: RawResponse[] = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    assert.ok(end > 0, `an incomplete response: ${rest}`);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length']);
    responses.push({
      status: Number(statusLine.split(' ')[1]),
      headers,
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
  return responses;
}

const LINEAR_INPUT = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

/** Within seconds, not after the 60 s grace nor the 300 s request timeout. */
function within<T>(promise: Promise<T>, failure: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, fail) => setTimeout(() => fail(new Error(failure)), 10_000).unref()),
  ]);
}
