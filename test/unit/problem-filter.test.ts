import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HttpException, NotFoundException } from '@nestjs/common';
import { errorCodes, type FastifyReply, type FastifyRequest } from 'fastify';
import { AppError, shuttingDown } from '../../src/common/errors/app-error';
import { ProblemFilter } from '../../src/common/errors/problem.filter';

function exchange(url: string, headers: Record<string, string> = {}) {
  const sent: { status?: number; headers: Record<string, string>; body?: unknown } = { headers: {} };
  const reply = {
    status(code: number) {
      sent.status = code;
      return reply;
    },
    header(name: string, value: string) {
      sent.headers[name.toLowerCase()] = value;
      return reply;
    },
    send(body: unknown) {
      // Under /v2 the body is bytes (so that Fastify adds no charset to application/json).
      sent.body = typeof body === 'string' || Buffer.isBuffer(body) ? JSON.parse(String(body)) : body;
      return reply;
    },
  };
  const request = { url, method: 'GET', id: 'req-1', headers, raw: { socket: {} } } as unknown as FastifyRequest;
  return { request, reply: reply as unknown as FastifyReply, sent };
}

describe('problem+json filter', () => {
  const filter = new ProblemFilter();

  it('answers an unexpected error with a bare 500 and the request id, never its message', () => {
    const { request, reply, sent } = exchange('/v1/things?x=1');
    filter.respond(new Error('SELECT secret FROM patients; at /srv/app/db.ts:12'), request, reply);
    assert.equal(sent.status, 500);
    assert.equal(sent.headers['content-type'], 'application/problem+json');
    assert.deepEqual(sent.body, {
      type: 'urn:gateway:problem:internal',
      title: 'Internal error',
      status: 500,
      detail: 'internal error; quote request id req-1',
      code: 'INTERNAL',
      instance: '/v1/things',
      requestId: 'req-1',
    });
  });

  it('maps QUEUE_FULL to 503 with Retry-After, and field errors into `errors`', () => {
    const { request, reply, sent } = exchange('/v1/things');
    filter.respond(new AppError('QUEUE_FULL', 'queue full', { retryAfterSeconds: 1 }), request, reply);
    assert.equal(sent.status, 503);
    assert.equal(sent.headers['retry-after'], '1');
    const invalid = exchange('/v1/things');
    filter.respond(
      new AppError('VALIDATION_FAILED', 'amount: must be positive', {
        fields: [{ field: 'amount', reason: 'must be positive' }],
      }),
      invalid.request,
      invalid.reply,
    );
    assert.equal(invalid.sent.status, 400);
    assert.deepEqual((invalid.sent.body as { errors: unknown }).errors, [
      { field: 'amount', reason: 'must be positive' },
    ]);
  });

  it('answers SHUTTING_DOWN 503 with Retry-After: 1, saying what to send again where it matters to the client', () => {
    const details = [shuttingDown(), shuttingDown('send the request again'), shuttingDown('send the upload again')].map(
      (error) => {
        const { request, reply, sent } = exchange('/v1/things');
        filter.respond(error, request, reply);
        assert.equal(sent.status, 503);
        assert.equal(sent.headers['retry-after'], '1');
        assert.equal((sent.body as { code: string }).code, 'SHUTTING_DOWN');
        return (sent.body as { detail: string }).detail;
      },
    );
    assert.deepEqual(details, [
      'the gateway is shutting down',
      'the gateway is shutting down; send the request again',
      'the gateway is shutting down; send the upload again',
    ]);
  });

  it('maps DEADLINE_EXCEEDED to 504 and Nest HTTP exceptions to their status', () => {
    const late = exchange('/v1/things');
    filter.respond(new AppError('DEADLINE_EXCEEDED', 'too late'), late.request, late.reply);
    assert.equal(late.sent.status, 504);
    const missing = exchange('/v1/nothing');
    filter.respond(new NotFoundException('Cannot GET /v1/nothing'), missing.request, missing.reply);
    assert.equal(missing.sent.status, 404);
    assert.equal((missing.sent.body as { code: string }).code, 'NOT_FOUND');
    // Not the exception's class name: an answer does not name the framework behind it.
    assert.equal((missing.sent.body as { title: string }).title, 'Not found');
    // Nor Nest's words, which quote the path back: it may carry a patient's or a card's identifier.
    assert.equal((missing.sent.body as { detail: string }).detail, 'No route matches GET on this path');
  });

  it('answers a client error the gateway has no code for as 400 REQUEST_REFUSED, never a 500 nor HTTP_<status>', () => {
    // No route or plugin of the gateway is known to refuse so; one that did is logged, to be given a code.
    const teapot = exchange('/v1/things');
    filter.respond(new HttpException('short and stout', 418), teapot.request, teapot.reply);
    assert.equal(teapot.sent.status, 400);
    assert.deepEqual(teapot.sent.body, {
      type: 'urn:gateway:problem:request-refused',
      title: 'Request refused',
      status: 400,
      detail: 'the request was refused as sent (HTTP 418)',
      code: 'REQUEST_REFUSED',
      instance: '/v1/things',
      requestId: 'req-1',
    });
    const bare = exchange('/v1/things');
    filter.respond(Object.assign(new Error('odd'), { statusCode: 409 }), bare.request, bare.reply);
    assert.deepEqual([bare.sent.status, (bare.sent.body as { code: string }).code], [400, 'REQUEST_REFUSED']);
    // What is not a client's error stays a bare 500.
    const broken = exchange('/v1/things');
    filter.respond(new Error('boom'), broken.request, broken.reply);
    assert.deepEqual([broken.sent.status, (broken.sent.body as { code: string }).code], [500, 'INTERNAL']);
  });

  it("answers each refusal Fastify raised itself with the gateway's code, status and field, never FST_ERR_*", () => {
    const limited = new ProblemFilter((request) =>
      request.headers['content-type'] === 'application/dicom'
        ? { setting: 'MEDICAL_MAX_BODY_BYTES', bytes: 4096 }
        : { setting: 'BODY_LIMIT_BYTES', bytes: 2048 },
    );
    const wrapped = (error: Error & { statusCode?: number }) =>
      new HttpException(error.message, error.statusCode ?? 500, { cause: error });
    const tooLarge = (bytes: number, setting: string) =>
      `Request body is too large: the limit is ${bytes} bytes (${setting})`;
    const cases: Array<[Error, Record<string, string>, number, string, string, string]> = [
      [
        new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(),
        {},
        400,
        'MALFORMED_JSON',
        '(body)',
        "Body is not valid JSON but content-type is set to 'application/json'",
      ],
      [
        new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(),
        {},
        400,
        'MALFORMED_JSON',
        '(body)',
        "Body cannot be empty when content-type is set to 'application/json'",
      ],
      [
        new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(),
        { 'content-type': 'application/json' },
        413,
        'BODY_TOO_LARGE',
        '(body)',
        tooLarge(2048, 'BODY_LIMIT_BYTES'),
      ],
      [
        new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(),
        { 'content-type': 'application/dicom' },
        413,
        'BODY_TOO_LARGE',
        '(body)',
        tooLarge(4096, 'MEDICAL_MAX_BODY_BYTES'),
      ],
      [
        new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(),
        {},
        400,
        'CONTENT_LENGTH_MISMATCH',
        'Content-Length',
        'Request body size did not match Content-Length',
      ],
      [
        new errorCodes.FST_ERR_BAD_URL('%E0%A4%A'),
        {},
        400,
        'PATH_INVALID',
        '(path)',
        'is not valid percent-encoded UTF-8 (each % followed by two hex digits, together UTF-8)',
      ],
      [
        new errorCodes.FST_ERR_MAX_PARAM_LENGTH('aaaa'),
        {},
        414,
        'URI_TOO_LONG',
        '(path)',
        'holds a parameter longer than 128 characters',
      ],
    ];
    for (const [error, headers, status, code, field, reason] of cases) {
      // Wrapped by Nest (a body parser's refusal) and bare (Fastify's frameworkErrors) alike.
      for (const thrown of [wrapped(error), error]) {
        const { request, reply, sent } = exchange('/v1/finance/fraud-scores', headers);
        limited.respond(thrown, request, reply);
        const body = sent.body as { code: string; title: string; type: string; detail: string; errors: unknown };
        assert.equal(sent.status, status, code);
        assert.equal(body.code, code);
        assert.equal(body.type, `urn:gateway:problem:${code.toLowerCase().replace(/_/g, '-')}`);
        assert.deepEqual(body.errors, [{ field, reason }]);
        assert.ok(body.detail.endsWith(reason), body.detail);
        assert.doesNotMatch(JSON.stringify(body), /FST_|Bad Request|Payload Too Large/, code);
      }
    }
  });

  it("answers what @fastify/static and a cut-short body refuse with the gateway's codes", () => {
    const docs = (error: Error & { statusCode: number }, headers: Record<string, string> = {}) => {
      const { request, reply, sent } = exchange('/docs/swagger-ui.css', headers);
      // What Nest makes of an http-errors refusal: an HttpException with it as the cause.
      filter.respond(new HttpException(error.message, error.statusCode, { cause: error }), request, reply);
      return sent;
    };
    const httpError = (statusCode: number, message: string) =>
      Object.assign(new Error(message), { statusCode, status: statusCode, expose: true });
    const precondition = docs(httpError(412, 'Precondition Failed'), { 'if-match': '"x"' });
    assert.equal(precondition.status, 412);
    assert.deepEqual(precondition.body, {
      type: 'urn:gateway:problem:precondition-failed',
      title: 'Precondition failed',
      status: 412,
      detail: 'If-Match: is not met by the file at this path',
      code: 'PRECONDITION_FAILED',
      instance: '/docs/swagger-ui.css',
      requestId: 'req-1',
      errors: [{ field: 'If-Match', reason: 'is not met by the file at this path' }],
    });
    const since = docs(httpError(412, 'Precondition Failed'), {
      'if-unmodified-since': 'Thu, 01 Jan 1970 00:00:00 GMT',
    });
    assert.deepEqual((since.body as { errors: Array<{ field: string }> }).errors[0].field, 'If-Unmodified-Since');
    // http-errors keeps the Content-Range @fastify/send would have sent as the error's headers.
    const unsatisfiable = Object.assign(httpError(416, 'Range Not Satisfiable'), {
      headers: { 'Content-Range': 'bytes */2048' },
    });
    const range = docs(unsatisfiable, { range: 'bytes=99999999-' });
    assert.equal(range.status, 416);
    assert.equal(range.headers['content-range'], 'bytes */2048');
    assert.equal((range.body as { code: string }).code, 'RANGE_NOT_SATISFIABLE');
    assert.deepEqual((range.body as { errors: unknown }).errors, [
      { field: 'Range', reason: 'asks for no byte the file at this path holds' },
    ]);
    const forbidden = Object.assign(new Error('Forbidden'), {
      name: 'FastifyError',
      code: 'FST_STATIC_FORBIDDEN_PATH',
      statusCode: 403,
    });
    const path = docs(forbidden);
    assert.equal(path.status, 400);
    assert.equal((path.body as { code: string }).code, 'PATH_INVALID');
    assert.equal((path.body as { errors: Array<{ field: string }> }).errors[0].field, '(path)');
    // No Bearer challenge: the path was refused, not the caller.
    assert.equal(path.headers['www-authenticate'], undefined);
    // A body whose connection ended before it was whole: Fastify hands on the socket's error as a 400.
    const cut = exchange('/v1/finance/fraud-scores');
    filter.respond(
      Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 }),
      cut.request,
      cut.reply,
    );
    assert.equal(cut.sent.status, 400);
    assert.equal((cut.sent.body as { code: string }).code, 'HTTP_PARSE_ERROR');
    assert.deepEqual((cut.sent.body as { errors: unknown }).errors, [
      { field: '(request)', reason: 'the connection ended before the whole request arrived' },
    ]);
  });

  it("answers Fastify's 415 as the gateway's own UNSUPPORTED_MEDIA_TYPE naming Content-Type, not FST_ERR_*", () => {
    const wrapped = (error: Error & { statusCode?: number }) =>
      new HttpException(error.message, error.statusCode ?? 500, { cause: error });
    const media = exchange('/v1/finance/fraud-scores', { 'content-type': 'application/xml; charset=utf-8' });
    filter.respond(wrapped(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE()), media.request, media.reply);
    assert.equal(media.sent.status, 415);
    assert.equal(media.sent.headers['content-type'], 'application/problem+json');
    const reason = '"application/xml" is not a media type this route reads';
    assert.deepEqual(media.sent.body, {
      type: 'urn:gateway:problem:unsupported-media-type',
      title: 'Unsupported media type',
      status: 415,
      detail: `Content-Type: ${reason}`,
      code: 'UNSUPPORTED_MEDIA_TYPE',
      instance: '/v1/finance/fraud-scores',
      requestId: 'req-1',
      errors: [{ field: 'Content-Type', reason }],
    });
    // Unwrapped too (Fastify's own error handler), and a body sent with no Content-Type at all.
    const none = exchange('/dicomweb/studies');
    filter.respond(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(), none.request, none.reply);
    assert.equal(none.sent.status, 415);
    assert.deepEqual((none.sent.body as { code: string; errors: unknown }).code, 'UNSUPPORTED_MEDIA_TYPE');
    assert.deepEqual((none.sent.body as { errors: unknown }).errors, [
      { field: 'Content-Type', reason: 'is missing: a request with a body must name its media type' },
    ]);
    // The OIP routes keep their own shape, the field leading the string.
    const oip = exchange('/v2/models/x/infer', { 'content-type': 'text/plain' });
    filter.respond(wrapped(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE()), oip.request, oip.reply);
    assert.equal(oip.sent.status, 415);
    assert.equal(oip.sent.headers['content-type'], 'application/json');
    assert.deepEqual(oip.sent.body, { error: 'Content-Type: "text/plain" is not a media type this route reads' });
  });

  it('speaks the OIP error shape under /v2', () => {
    const { request, reply, sent } = exchange('/v2/models/x/infer');
    filter.respond(new AppError('MODEL_NOT_FOUND', 'no model named "x"'), request, reply);
    assert.equal(sent.status, 404);
    assert.equal(sent.headers['content-type'], 'application/json');
    assert.deepEqual(sent.body, { error: 'no model named "x"' });
    // The protocol's body has no `errors` member: the field a body parser's refusal names leads its string.
    const large = exchange('/v2/models/x/infer');
    const tooLarge = new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE();
    const limited = new ProblemFilter(() => ({ setting: 'BODY_LIMIT_BYTES', bytes: 2048 }));
    limited.respond(new HttpException(tooLarge.message, 413, { cause: tooLarge }), large.request, large.reply);
    assert.equal(large.sent.status, 413);
    assert.deepEqual(large.sent.body, {
      error: '(body): Request body is too large: the limit is 2048 bytes (BODY_LIMIT_BYTES)',
    });
    const named = exchange('/v2/models/x/infer');
    filter.respond(
      new AppError('VALIDATION_FAILED', 'inputs[0].data: required', {
        fields: [{ field: 'inputs[0].data', reason: 'required' }],
      }),
      named.request,
      named.reply,
    );
    assert.deepEqual(named.sent.body, { error: 'inputs[0].data: required' });
  });
  it('gives a 401 or 403 the Bearer challenge of RFC 6750 3, in /v1 and /v2 alike', () => {
    const header = (url: string, error: AppError): string | undefined => {
      const { request, reply, sent } = exchange(url);
      filter.respond(error, request, reply);
      return sent.headers['www-authenticate'];
    };
    for (const url of ['/v1/audit/events', '/v2/models/m/infer']) {
      assert.equal(
        header(url, new AppError('UNAUTHENTICATED', 'missing bearer token', { challenge: {} })),
        'Bearer realm="inference-gateway"',
      );
      assert.equal(
        header(url, new AppError('UNAUTHENTICATED', 'token expired', { challenge: { error: 'invalid_token' } })),
        'Bearer realm="inference-gateway", error="invalid_token", error_description="token expired"',
      );
      assert.equal(
        header(
          url,
          new AppError('UNAUTHENTICATED', 'malformed bearer token', { challenge: { error: 'invalid_request' } }),
        ),
        'Bearer realm="inference-gateway", error="invalid_request", error_description="malformed bearer token"',
      );
      assert.equal(
        header(
          url,
          new AppError('FORBIDDEN', 'requires permission audit:read', {
            challenge: { error: 'insufficient_scope', scope: 'audit:read' },
          }),
        ),
        'Bearer realm="inference-gateway", error="insufficient_scope", error_description="requires permission audit:read", scope="audit:read"',
      );
      // A 403 a handler gives is for want of what the token grants too.
      assert.equal(
        header(url, new AppError('FORBIDDEN', 'needs a token that names no tenant')),
        'Bearer realm="inference-gateway", error="insufficient_scope", error_description="needs a token that names no tenant"',
      );
      assert.equal(header(url, new AppError('RATE_LIMITED', 'slow down')), undefined);
    }
    // Only what RFC 6750 lets error_description hold: no double quote, backslash, control or non-ASCII character.
    assert.equal(
      header('/v1/x', new AppError('UNAUTHENTICATED', 'a "b" \\ c\u00e9\n', { challenge: { error: 'invalid_token' } })),
      'Bearer realm="inference-gateway", error="invalid_token", error_description="a \'b\' ? c??"',
    );
  });
});
