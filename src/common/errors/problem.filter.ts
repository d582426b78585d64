import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger, NotFoundException } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { echoedHeaderValue, echoedPath } from '../echoed-key';
import { AppError, malformedJson } from './app-error';
import { auditNoteOf, noteAudit } from '../access/audit-note';
import { methodsAt } from '../http/route-catalog';
import { MAX_PATH_PARAM_LENGTH } from '../http/path-params';
import { requestCutShort } from '../http/client-errors';
import { Problem, PROBLEM_CONTENT_TYPE, problemOf } from './problem';

export interface RenderedProblem {
  status: number;
  headers: Record<string, string>;
  /** Bytes under /v2: Fastify appends `; charset=utf-8` to a JSON type sent as a string (see render). */
  body: string | Buffer;
}

/** The body limit a request was held to, and the setting that names it (README's configuration table). */
export interface BodyLimit {
  setting: string;
  bytes: number;
}

/** Routes that speak the Open Inference Protocol answer errors as `{"error": "..."}`. */
export const OIP_PREFIX = '/v2';

/**
 * Maps every error to RFC 9457 problem+json (or the OIP error shape under /v2), with a code of the gateway's own
 * (ErrorCode): what Fastify or its plugins refused is answered as the gateway's refusal of the same thing, never
 * with their names. Nothing internal leaks: an unexpected error is logged with its request id and answered as a
 * bare 500; a client error no code here names (a 4xx) is a 400 REQUEST_REFUSED, logged so that it gets one.
 */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly logger = new Logger('ProblemFilter');

  /** `bodyLimitOf`: the body limit a request was held to, which a 413 names. */
  constructor(private readonly bodyLimitOf: (request: FastifyRequest) => BodyLimit | undefined = () => undefined) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    this.respond(exception, ctx.getRequest<FastifyRequest>(), ctx.getResponse<FastifyReply>());
  }

  /** Also Fastify's error handler, for errors raised before Nest routes a request (body parsing). */
  respond(exception: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const answer = this.render(exception, request);
    for (const [name, value] of Object.entries(answer.headers)) void reply.header(name, value);
    void reply.status(answer.status).send(answer.body);
  }

  /** The answer for an error, for callers that must build it themselves (an onSend hook). */
  render(thrown: unknown, request: FastifyRequest): RenderedProblem {
    const exception = methodRefusal(thrown, request) ?? thrown;
    const known = this.appErrorOf(exception, request);
    const unnamed = known === undefined ? unnamedRefusal(exception) : undefined;
    const error =
      known ?? unnamed ?? new AppError('INTERNAL', `internal error; quote request id ${String(request.id)}`);
    const path = request.url.split('?')[0];
    // The path is the client's own, but a card number in it is not repeated (echoedPath).
    const problem = problemOf(error, { instance: echoedPath(path), requestId: String(request.id) });
    if (unnamed !== undefined) {
      // A client's error still (never a 500 for what it sent), but one no code here names yet: to be named.
      this.logger.warn({
        msg: 'refusal without a gateway code',
        requestId: request.id,
        status: statusOf(exception),
        code: (exception as { code?: unknown }).code,
      });
    } else if (known === undefined) {
      this.logger.error({
        msg: 'request failed',
        requestId: request.id,
        code: problem.code,
        error: exception instanceof Error ? exception.stack : String(exception),
      });
    } else if (problem.status >= 500) {
      // An answer given on purpose (queue full, audit down): its code says enough, no stack.
      this.logger.warn({ msg: 'request failed', requestId: request.id, code: problem.code });
    }
    const note = auditNoteOf(request);
    // A refusal of the caller (401, 403) is recorded with the reason it was given, whoever refused it (the guard
    // notes its own); any other refusal with its code, as its detail may quote what the caller sent.
    if (note && note.reason === undefined) {
      noteAudit(request, { reason: problem.status === 401 || problem.status === 403 ? problem.detail : problem.code });
    }
    const headers: Record<string, string> = {};
    if (error.retryAfterSeconds !== undefined) headers['Retry-After'] = String(error.retryAfterSeconds);
    if (error.allow) headers.Allow = error.allow.join(', ');
    // RFC 9110 15.5.17: a 416 to a byte-range request should say the size of what was asked.
    if (error.completeLength !== undefined) headers['Content-Range'] = `bytes */${error.completeLength}`;
    const challenge = bearerChallenge(error, problem);
    if (challenge !== undefined) headers['WWW-Authenticate'] = challenge;
    if (path === OIP_PREFIX || path.startsWith(`${OIP_PREFIX}/`)) {
      // Exactly application/json, as Triton and KServe answer: KServe's InferenceRESTClient reads `error` only from a
      // Content-Type equal to it, and raised with the reason left out. Sent as bytes, since Fastify appends
      // `; charset=utf-8` to a JSON type sent as a string.
      headers['Content-Type'] = 'application/json';
      return { status: problem.status, headers, body: Buffer.from(JSON.stringify({ error: oipError(problem) })) };
    }
    headers['Content-Type'] = PROBLEM_CONTENT_TYPE;
    return { status: problem.status, headers, body: JSON.stringify(problem) };
  }

  /**
   * The gateway's AppError for what was thrown: itself, Nest's 404, or what Fastify, its plugins or the request's
   * stream refused, as the gateway names it; undefined for anything else (a bug, or a refusal nobody named).
   */
  private appErrorOf(exception: unknown, request: FastifyRequest): AppError | undefined {
    if (exception instanceof AppError) return exception;
    if (exception instanceof HttpException) {
      // Nest wraps what Fastify or a plugin refuses before a handler (a body parser's 400, a static file's 416).
      const refusal = exception.cause === undefined ? undefined : this.refusalOf(exception.cause, request);
      if (refusal || exception.getStatus() !== 404) return refusal;
      // Nest's words (`Cannot GET /v1/...`) quote the path back, and a path can carry a patient's or a card's
      // identifier: the method is enough, the path is the client's own (and the problem's `instance`).
      return new AppError('NOT_FOUND', `No route matches ${request.method} on this path`);
    }
    // Errors Fastify raises before a handler runs (an unreadable URL, through frameworkErrors), or a body's stream.
    return this.refusalOf(exception, request);
  }

  /**
   * What Fastify, @fastify/static (the files under /docs) or a request's body stream refused before a handler ran
   * (a 4xx error that carries its status as `statusCode`), as the gateway's own refusal of the same thing, naming
   * the field it is about; undefined for any other error. A body parser's refusal names the body with Fastify's
   * words; a path Fastify cannot decode, or with a parameter over the router's length, names the path with the
   * gateway's (Fastify's quote the URL back).
   */
  private refusalOf(error: unknown, request: FastifyRequest): AppError | undefined {
    const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
    if (typeof status !== 'number' || status < 400 || status >= 500) return undefined;
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : '';
    switch (code) {
      // One code for every 415, the gateway's own: a client branching on `code` need not know Fastify's name.
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return unreadMediaType(request.headers['content-type']);
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return malformedJson(message);
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return bodyTooLarge(this.bodyLimitOf(request));
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return new AppError('CONTENT_LENGTH_MISMATCH', message, {
          fields: [{ field: 'Content-Length', reason: message }],
        });
      case 'FST_ERR_BAD_URL':
        return pathRefusal('PATH_INVALID', BAD_PATH_REASON);
      case 'FST_ERR_MAX_PARAM_LENGTH':
        return pathRefusal('URI_TOO_LONG', LONG_PARAM_REASON);
      // @fastify/static's 403 for a path it will not map to a file: `..`, `.` or empty segments, a NUL, another case.
      case 'FST_STATIC_FORBIDDEN_PATH':
        return pathRefusal('PATH_INVALID', NOT_A_FILE_PATH_REASON);
      // The request's body stopped coming: Fastify's body reader hands on the socket's error as a 400.
      case 'ECONNRESET':
        return requestCutShort(request.raw.socket);
    }
    // @fastify/send's refusals of a static file's conditional or ranged GET (http-errors: a status, no code).
    if (status === 412) {
      const field = request.headers['if-match'] !== undefined ? 'If-Match' : 'If-Unmodified-Since';
      const reason = 'is not met by the file at this path';
      return new AppError('PRECONDITION_FAILED', `${field}: ${reason}`, { fields: [{ field, reason }] });
    }
    if (status === 416) {
      const reason = 'asks for no byte the file at this path holds';
      return new AppError('RANGE_NOT_SATISFIABLE', `Range: ${reason}`, {
        fields: [{ field: 'Range', reason }],
        completeLength: completeLengthOf(error),
      });
    }
    return undefined;
  }
}

/**
 * The file's size that @fastify/send gives its 416 (http-errors keeps the `Content-Range: bytes *\/<size>` it
 * would have sent as the error's `headers`), or undefined where it gives none.
 */
function completeLengthOf(error: unknown): number | undefined {
  const headers = (error as { headers?: unknown }).headers;
  const value =
    typeof headers === 'object' && headers !== null ? (headers as Record<string, unknown>)['Content-Range'] : undefined;
  const size = typeof value === 'string' ? /^bytes \*\/(\d{1,15})$/.exec(value)?.[1] : undefined;
  return size === undefined ? undefined : Number(size);
}

/** The HTTP status an error carries: an HttpException's, or the `statusCode` Fastify's and its plugins' errors carry. */
function statusOf(error: unknown): number | undefined {
  if (error instanceof HttpException) return error.getStatus();
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/**
 * A client error (4xx) that no code of the gateway names (none is known to reach here): 400 REQUEST_REFUSED in
 * words of the gateway's own, not a 500, since it is what the client sent that was refused; logged so that it gets
 * a code of its own. Its message is not passed on: it is a framework's, and may quote the request.
 */
function unnamedRefusal(error: unknown): AppError | undefined {
  const status = statusOf(error);
  if (status === undefined || status < 400 || status >= 500) return undefined;
  return new AppError('REQUEST_REFUSED', `the request was refused as sent (HTTP ${status})`);
}

/**
 * A request that no route took (Nest's NotFoundException from the router's 404) for a path the router serves with
 * other methods: 405 naming them, and Allow listing them (RFC 9110 asks for it), rather than a 404 that says
 * nothing is there. Where one of them is the request's own, that route answered and found nothing: a 404. The path is not quoted back (it may carry a study's UID).
 */
function methodRefusal(exception: unknown, request: FastifyRequest): AppError | undefined {
  if (!(exception instanceof NotFoundException) || !request.is404) return undefined;
  const allow = methodsAt(request.server, request.url.split('?')[0]);
  // A route that answers this method found nothing there (a missing file under /docs/*): a 404, not a 405.
  if (allow.length === 0 || allow.includes(request.method)) return undefined;
  const reason = `must be one of ${allow.join(', ')} on this path`;
  return new AppError(
    'METHOD_NOT_ALLOWED',
    `${request.method} is not allowed here; this path answers ${allow.join(', ')}`,
    {
      fields: [{ field: '(method)', reason }],
      allow,
    },
  );
}

/**
 * RFC 6750 3: a 401 or 403 carries a Bearer challenge. A request without a bearer token (none, or another
 * scheme) is told only the realm; a refused token gets its error (invalid_token, invalid_request for a header
 * that is not one bearer token) and a 403 insufficient_scope with the permission it wanted, each with the
 * reason the body gives as error_description.
 */
function bearerChallenge(refusal: AppError, problem: Problem): string | undefined {
  if (problem.status !== 401 && problem.status !== 403) return undefined;
  const said = refusal.challenge;
  const error = said?.error ?? (problem.status === 403 ? 'insufficient_scope' : undefined);
  const params = [`realm="${REALM}"`];
  if (error !== undefined) {
    params.push(`error="${error}"`, `error_description="${challengeText(problem.detail)}"`);
    if (said?.scope !== undefined) params.push(`scope="${challengeText(said.scope)}"`);
  }
  return `Bearer ${params.join(', ')}`;
}

const REALM = 'inference-gateway';

/**
 * A value RFC 6750 3 allows in error_description and scope (%x20-21 / %x23-5B / %x5D-7E): neither `"` nor `\`
 * can be quoted there, so a double quote becomes a single one and anything else outside the set a `?`.
 */
function challengeText(text: string): string {
  return text.replace(/"/g, "'").replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?');
}

/**
 * The protocol's one string, led by the field the refusal names (`field: reason`) where its detail does not
 * start with it: a body parser's refusal says only why (`Unsupported Media Type`), and an OIP client sees no
 * `errors` member to learn which field it was.
 */
function oipError(problem: Problem): string {
  const field = problem.errors?.[0]?.field;
  return field === undefined || problem.detail.startsWith(`${field}:`) ? problem.detail : `${field}: ${problem.detail}`;
}

/** A path refused before any route read it, naming `(path)` with the gateway's reason (Fastify's quotes the URL). */
function pathRefusal(code: 'PATH_INVALID' | 'URI_TOO_LONG', reason: string): AppError {
  return new AppError(code, `(path): ${reason}`, { fields: [{ field: '(path)', reason }] });
}

/** A body over the limit its request was held to, naming it and the setting that sets it. */
function bodyTooLarge(limit: BodyLimit | undefined): AppError {
  const reason =
    limit === undefined
      ? 'Request body is too large'
      : `Request body is too large: the limit is ${limit.bytes} bytes (${limit.setting})`;
  return new AppError('BODY_TOO_LARGE', reason, { fields: [{ field: '(body)', reason }] });
}

/**
 * Fastify's 415 (no body parser reads the Content-Type, or a body came with none) as the gateway's own 415 names
 * it: UNSUPPORTED_MEDIA_TYPE naming Content-Type, saying which type (its essence, clipped) was not read.
 */
export function unreadMediaType(contentType: string | undefined): AppError {
  const essence = contentType?.split(';')[0].trim();
  const reason = essence
    ? `${JSON.stringify(echoedHeaderValue(essence))} is not a media type this route reads`
    : 'is missing: a request with a body must name its media type';
  return new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Type: ${reason}`, {
    fields: [{ field: 'Content-Type', reason }],
  });
}

const BAD_PATH_REASON = 'is not valid percent-encoded UTF-8 (each % followed by two hex digits, together UTF-8)';

const LONG_PARAM_REASON = `holds a parameter longer than ${MAX_PATH_PARAM_LENGTH} characters`;

const NOT_A_FILE_PATH_REASON =
  'is not the exact path of a file (it holds a . or .. segment, an empty one or a NUL character, or spells a name otherwise)';
