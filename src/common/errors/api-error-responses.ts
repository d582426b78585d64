import { applyDecorators, Type } from '@nestjs/common';
import { ApiExtraModels, ApiResponse, getSchemaPath } from '@nestjs/swagger';
import { ProblemDto } from './problem.dto';
import { PROBLEM_CONTENT_TYPE } from './problem';

/** A 403's description; the OpenAPI document replaces it with the permission the route needs (openapi.ts). */
export const FORBIDDEN_DESCRIPTION = "The token's roles do not grant this route's permission";

const DESCRIPTIONS: Readonly<Record<number, string>> = {
  400: 'The request is invalid (fields named in `errors`)',
  401: 'No valid bearer token (WWW-Authenticate says why)',
  403: FORBIDDEN_DESCRIPTION,
  404: 'Not found',
  406: 'None of the media types in Accept can be answered',
  409: 'Conflict with a request in progress; retry after Retry-After seconds',
  413: 'The body is larger than the limit',
  415: 'The Content-Type is not one this route reads',
  422: 'Understood but refused (the `code` says why)',
  429: 'Rate limit reached for this subject; retry after Retry-After seconds',
  500: 'Internal error; quote the request id',
  503: 'Temporarily unable (queue full, model not ready, audit trail or database unavailable, too many uploads, shutting down); retry after Retry-After seconds when given',
  504: 'The request waited past its deadline and was not run',
};

const RETRY_AFTER = {
  'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } },
};

/** The Bearer challenge (RFC 6750 3) every 401 and 403 carries (src/common/errors/problem.filter.ts). */
const WWW_AUTHENTICATE = {
  'WWW-Authenticate': {
    description:
      'The Bearer challenge (RFC 6750 3): the realm; where a token was sent, also `error` (invalid_request, ' +
      'invalid_token, insufficient_scope) and `error_description`; on a 403 for a permission, `scope` names it',
    schema: {
      type: 'string',
      example:
        'Bearer realm="inference-gateway", error="insufficient_scope", error_description="requires permission ' +
        'audit:read", scope="audit:read"',
    },
  },
};

/** Statuses whose answers carry WWW-Authenticate wherever they are declared. */
const CHALLENGE_STATUSES: ReadonlySet<number> = new Set([401, 403]);

/** The error statuses every protected route can answer: auth, rate limit, audit trail down, internal error. */
export const PROTECTED_ROUTE_ERRORS = [401, 403, 429, 500, 503] as const;

/** What Fastify refuses before a JSON body reaches the route: unreadable JSON, too large, another media type, the upload budget. */
export const JSON_BODY_ERRORS = [400, 413, 415, 503] as const;

/**
 * Statuses whose problem answers carry Retry-After wherever they are declared: 409 (IDEMPOTENCY_IN_PROGRESS, the
 * only code answered 409), 429, 503 (the readiness answers, declared apart, carry none).
 */
const RETRY_AFTER_STATUSES: ReadonlySet<number> = new Set([409, 429, 503]);

/**
 * Declares error answers of `statuses`, each as `mediaType` with the schema of `model`. A class or a
 * method decorator; a status declared on a method with its own description keeps it. With `also`, each
 * status's description goes on to say when else it is answered. With `retryAfter`, each is also declared with
 * Retry-After, `retryAfter` saying why after the status's description.
 */
export function ApiErrorResponses(
  mediaType: string,
  model: Type,
  statuses: readonly number[],
  options: { retryAfter?: string; also?: string } = {},
): MethodDecorator & ClassDecorator {
  const unique = [...new Set(statuses)].sort((a, b) => a - b);
  const { retryAfter, also } = options;
  return applyDecorators(
    ApiExtraModels(model),
    ...unique.map((status) =>
      ApiResponse({
        status,
        description: [DESCRIPTIONS[status] ?? 'Error', also, retryAfter].filter(Boolean).join('\n\n'),
        content: { [mediaType]: { schema: { $ref: getSchemaPath(model) } } },
        ...headersOf(status, retryAfter !== undefined),
      }),
    ),
  );
}

function headersOf(status: number, retryAfter: boolean): { headers?: Record<string, object> } {
  const headers = {
    ...(retryAfter || RETRY_AFTER_STATUSES.has(status) ? RETRY_AFTER : {}),
    ...(CHALLENGE_STATUSES.has(status) ? WWW_AUTHENTICATE : {}),
  };
  return Object.keys(headers).length > 0 ? { headers } : {};
}

/** RFC 9457 problem+json answers for `statuses`. */
export const ApiProblems = (...statuses: number[]): MethodDecorator & ClassDecorator =>
  ApiErrorResponses(PROBLEM_CONTENT_TYPE, ProblemDto, statuses);

/** An RFC 9457 problem+json answer of `status` that this route also gives for a reason of its own, `also`. */
export const ApiProblemAlso = (status: number, also: string): MethodDecorator & ClassDecorator =>
  ApiErrorResponses(PROBLEM_CONTENT_TYPE, ProblemDto, [status], { also });

/**
 * RFC 9457 problem+json answers for `statuses` that this route sends with Retry-After (those of RETRY_AFTER_STATUSES
 * have it everywhere), `why` saying what the client may count on when it retries.
 */
export const ApiRetriableProblems = (statuses: readonly number[], why: string): MethodDecorator & ClassDecorator =>
  ApiErrorResponses(PROBLEM_CONTENT_TYPE, ProblemDto, statuses, { retryAfter: why });
