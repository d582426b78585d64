import { STATUS_CODES } from 'node:http';
import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger, NotFoundException } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, FieldError, httpStatusOf } from './app-error';
import { auditNoteOf, noteAudit } from '../access/audit-note';
import { methodsAt } from '../http/route-catalog';
import { MAX_PATH_PARAM_LENGTH } from '../http/path-params';
import { Problem, PROBLEM_CONTENT_TYPE, problemType } from './problem';

export interface RenderedProblem {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Routes that speak the Open Inference Protocol answer errors as `{"error": "..."}`. */
export const OIP_PREFIX = '/v2';

/**
 * Maps every error to RFC 9457 problem+json (or the OIP error shape under /v2). Nothing internal
 * leaks: an unexpected error is logged with its request id and answered as a bare 500.
 */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly logger = new Logger('ProblemFilter');

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
    const problem = this.toProblem(exception, request);
    if (problem.status >= 500) {
      if (exception instanceof AppError) {
        // An answer given on purpose (queue full, audit down): its code says enough, no stack.
        this.logger.warn({ msg: 'request failed', requestId: request.id, code: problem.code });
      } else {
        this.logger.error({
          msg: 'request failed',
          requestId: request.id,
          code: problem.code,
          error: exception instanceof Error ? exception.stack : String(exception),
        });
      }
    }
    const note = auditNoteOf(request);
    // A refusal of the caller (401, 403) is recorded with the reason it was given, whoever refused it (the guard
    // notes its own); any other refusal with its code, as its detail may quote what the caller sent.
    if (note && note.reason === undefined) {
      noteAudit(request, { reason: problem.status === 401 || problem.status === 403 ? problem.detail : problem.code });
    }
    const headers: Record<string, string> = {};
    if (exception instanceof AppError && exception.retryAfterSeconds !== undefined) {
      headers['Retry-After'] = String(exception.retryAfterSeconds);
    }
    if (exception instanceof AppError && exception.allow) headers.Allow = exception.allow.join(', ');
    const challenge = bearerChallenge(exception, problem);
    if (challenge !== undefined) headers['WWW-Authenticate'] = challenge;
    const path = request.url.split('?')[0];
    if (path === OIP_PREFIX || path.startsWith(`${OIP_PREFIX}/`)) {
      headers['Content-Type'] = 'application/json';
      return { status: problem.status, headers, body: JSON.stringify({ error: oipError(problem) }) };
    }
    headers['Content-Type'] = PROBLEM_CONTENT_TYPE;
    return { status: problem.status, headers, body: JSON.stringify(problem) };
  }

  private toProblem(exception: unknown, request: FastifyRequest): Problem {
    const base = { instance: request.url.split('?')[0], requestId: String(request.id) };
    if (exception instanceof AppError) {
      const { status, title } = httpStatusOf(exception.code);
      return {
        type: problemType(exception.code),
        title,
        status,
        detail: exception.detail,
        code: exception.code,
        ...base,
        ...(exception.fields.length ? { errors: exception.fields } : {}),
      };
    }
    // Nest wraps what Fastify refuses before a handler (a body parser's 400 or 415) in an HttpException.
    if (exception instanceof HttpException && isClientFastifyError(exception.cause)) {
      return this.toProblem(exception.cause, request);
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const response = exception.getResponse();
      const message =
        typeof response === 'string'
          ? response
          : typeof response === 'object' && response !== null && 'message' in response
            ? String(response.message)
            : exception.message;
      const code = status === 404 ? 'NOT_FOUND' : `HTTP_${status}`;
      // The status's words, not the exception's class name (NotFoundException), which names the framework.
      const title = status === 404 ? httpStatusOf('NOT_FOUND').title : (STATUS_CODES[status] ?? 'Error');
      return { type: problemType(code), title, status, detail: message, code, ...base };
    }
    // Errors Fastify raises before a handler runs (bad JSON, body too large, wrong content type).
    const statusCode = (exception as { statusCode?: unknown })?.statusCode;
    if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
      const raw = (exception as { code?: unknown }).code;
      const fastifyCode = typeof raw === 'string' ? raw : `HTTP_${statusCode}`;
      // One code for every 415, the gateway's own: a client branching on `code` need not know Fastify's name.
      if (fastifyCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        return this.toProblem(unreadMediaType(request.headers['content-type']), request);
      }
      const { detail, field } = fastifyRefusal(
        fastifyCode,
        exception instanceof Error ? exception.message : 'bad request',
      );
      return {
        type: problemType(fastifyCode),
        title: STATUS_CODES[statusCode] ?? 'Bad request',
        status: statusCode,
        detail,
        code: fastifyCode,
        ...base,
        ...(field ? { errors: [field] } : {}),
      };
    }
    return {
      type: problemType('INTERNAL'),
      title: 'Internal error',
      status: 500,
      detail: `internal error; quote request id ${String(request.id)}`,
      code: 'INTERNAL',
      ...base,
    };
  }
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
function bearerChallenge(exception: unknown, problem: Problem): string | undefined {
  if (problem.status !== 401 && problem.status !== 403) return undefined;
  const said = exception instanceof AppError ? exception.challenge : undefined;
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

/**
 * What a refusal Fastify raised itself names: the field it is about, where there is one, and the reason. A body
 * parser's refusal names the body with Fastify's words (its 415 is the gateway's own: unreadMediaType); a path
 * Fastify cannot decode, refused before any route reads it, or with a parameter over the router's length, names
 * the path with its own (Fastify's quote the URL back).
 */
function fastifyRefusal(code: string, message: string): { detail: string; field?: FieldError } {
  if (code === 'FST_ERR_BAD_URL') {
    return { detail: `(path): ${BAD_PATH_REASON}`, field: { field: '(path)', reason: BAD_PATH_REASON } };
  }
  if (code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return { detail: `(path): ${LONG_PARAM_REASON}`, field: { field: '(path)', reason: LONG_PARAM_REASON } };
  }
  if (!code.startsWith('FST_ERR_CTP_')) return { detail: message };
  return { detail: message, field: { field: '(body)', reason: message } };
}

/**
 * Fastify's 415 (no body parser reads the Content-Type, or a body came with none) as the gateway's own 415 names
 * it: UNSUPPORTED_MEDIA_TYPE naming Content-Type, saying which type (its essence, clipped) was not read.
 */
function unreadMediaType(contentType: string | undefined): AppError {
  const essence = contentType?.split(';')[0].trim();
  const reason = essence
    ? `${JSON.stringify(essence.slice(0, 64))} is not a media type this route reads`
    : 'is missing: a request with a body must name its media type';
  return new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Type: ${reason}`, {
    fields: [{ field: 'Content-Type', reason }],
  });
}

const BAD_PATH_REASON = 'is not valid percent-encoded UTF-8 (each % followed by two hex digits, together UTF-8)';

const LONG_PARAM_REASON = `holds a parameter longer than ${MAX_PATH_PARAM_LENGTH} characters`;

/** A 4xx error Fastify raised itself (FastifyError carries its HTTP status). */
function isClientFastifyError(error: unknown): boolean {
  if (!(error instanceof Error) || error.name !== 'FastifyError') return false;
  const status = (error as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && status >= 400 && status < 500;
}
