/**
 * Every error the gateway answers has a code from this list, whoever refused the request: layers below HTTP
 * (the runtime, domain logic) throw AppError with a code, one exception filter maps codes to HTTP, and what
 * Fastify, its plugins or Node's HTTP parser refuse is answered with one of these too (problem.filter.ts,
 * client-errors.ts), so that a client branching on `code` meets no framework's name.
 */
export const ERROR_CODES = [
  'VALIDATION_FAILED',
  'INVALID_TENSOR',
  'MODEL_NOT_FOUND',
  'MODEL_VERSION_NOT_FOUND',
  'MODEL_NOT_READY',
  'QUEUE_FULL',
  'DEADLINE_EXCEEDED',
  'SHUTTING_DOWN',
  'INFERENCE_FAILED',
  'OUTPUT_NOT_FINITE',
  'OUTPUT_NOT_REPRESENTABLE',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'RATE_LIMITED',
  'AUDIT_UNAVAILABLE',
  'PAN_DETECTED',
  'DUPLICATE_TRANSACTION_ID',
  'DUPLICATE_APPLICATION_ID',
  'TIME_OUT_OF_RANGE',
  'IDEMPOTENCY_KEY_REUSED',
  'IDEMPOTENCY_IN_PROGRESS',
  'DICOM_INVALID',
  'DICOM_UNSUPPORTED',
  'UNSUPPORTED_MEDIA_TYPE',
  'NOT_ACCEPTABLE',
  'UPLOADS_BUSY',
  'STORAGE_UNAVAILABLE',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'MALFORMED_JSON',
  'BODY_TOO_LARGE',
  'CONTENT_LENGTH_MISMATCH',
  'PATH_INVALID',
  'URI_TOO_LONG',
  'PRECONDITION_FAILED',
  'RANGE_NOT_SATISFIABLE',
  'HTTP_PARSE_ERROR',
  'HEADERS_TOO_LARGE',
  'REQUEST_TIMEOUT',
  'REQUEST_REFUSED',
  'EXPECTATION_FAILED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface FieldError {
  /** Path of the offending field in the request, e.g. `inputs[0].shape`. */
  field: string;
  reason: string;
}

/**
 * The most field errors an answer lists: a body of 500,000 card numbers was answered with as many errors (3.9 s, tens
 * of megabytes), one of 100,000 unknown keys with 8.8 MB. The first this many are listed, then MORE_FIELDS says how
 * many more there were.
 */
export const MAX_FIELD_ERRORS = 100;

/** What the entry after the first MAX_FIELD_ERRORS names: not a field, the count of those not listed. */
export const MORE_FIELDS = '(more)';

/** The entry that stands for `count` field errors not listed. */
export function moreFields(count: number): FieldError {
  return { field: MORE_FIELDS, reason: `${count} more not listed (at most ${MAX_FIELD_ERRORS} are)` };
}

/**
 * `fields` as an answer lists them: the first MAX_FIELD_ERRORS, then one MORE_FIELDS entry counting the rest. A list
 * already cut so (its last entry MORE_FIELDS, right after the first MAX_FIELD_ERRORS) is returned as it is.
 */
export function capFields(fields: FieldError[]): FieldError[] {
  if (fields.length <= MAX_FIELD_ERRORS) return fields;
  if (fields.length === MAX_FIELD_ERRORS + 1 && fields[MAX_FIELD_ERRORS].field === MORE_FIELDS) return fields;
  return [...fields.slice(0, MAX_FIELD_ERRORS), moreFields(fields.length - MAX_FIELD_ERRORS)];
}

/** The detail of a refusal that lists field errors: `field: reason` of each one listed (capFields), `; ` between. */
export function summariseFields(fields: FieldError[]): string {
  return capFields(fields)
    .map((f) => `${f.field}: ${f.reason}`)
    .join('; ');
}

/**
 * What the Bearer challenge (WWW-Authenticate, RFC 6750 3) of a 401 or 403 says beyond the realm: the error,
 * absent where the request carried no bearer token (3.1: then no error is named), and for a 403 the permission
 * it wanted (`scope`).
 */
export interface BearerChallenge {
  error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope';
  scope?: string;
}

export interface AppErrorOptions {
  fields?: FieldError[];
  /** Seconds a client should wait before retrying (sent as Retry-After). */
  retryAfterSeconds?: number;
  /** The methods the path answers, for a 405 (sent as Allow). */
  allow?: readonly string[];
  /** A refusal of the bearer token (sent as WWW-Authenticate); a FORBIDDEN without one is insufficient_scope. */
  challenge?: BearerChallenge;
  /** For a 416, the size in bytes of what the Range asked past (sent as `Content-Range: bytes *\/<size>`). */
  completeLength?: number;
  cause?: unknown;
}

export class AppError extends Error {
  readonly fields: FieldError[];
  readonly retryAfterSeconds?: number;
  readonly allow?: readonly string[];
  readonly challenge?: BearerChallenge;
  readonly completeLength?: number;

  constructor(
    readonly code: ErrorCode,
    /** Safe to show to the caller: never a stack, a path on disk or SQL. */
    readonly detail: string,
    options: AppErrorOptions = {},
  ) {
    super(`${code}: ${detail}`, { cause: options.cause });
    this.name = 'AppError';
    // However many a caller found, an answer lists at most MAX_FIELD_ERRORS.
    this.fields = capFields(options.fields ?? []);
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.allow = options.allow;
    this.challenge = options.challenge;
    this.completeLength = options.completeLength;
  }
}

/**
 * The gateway is stopping (503 with Retry-After: 1; another instance, or this one restarted, will answer).
 * `hint` tells the client what to send again where it cannot tell by itself: the request it pipelined,
 * the upload it was still sending.
 */
export function shuttingDown(hint?: string): AppError {
  const detail = hint === undefined ? 'the gateway is shutting down' : `the gateway is shutting down; ${hint}`;
  return new AppError('SHUTTING_DOWN', detail, { retryAfterSeconds: 1 });
}

/**
 * A JSON body that is no JSON, or empty where Content-Type announced JSON: MALFORMED_JSON naming `(body)`, in words
 * that never quote the body (it may hold a card number or a patient's name).
 */
export function malformedJson(detail: string): AppError {
  return new AppError('MALFORMED_JSON', detail, { fields: [{ field: '(body)', reason: detail }] });
}

export function httpStatusOf(code: ErrorCode): { status: number; title: string } {
  switch (code) {
    case 'VALIDATION_FAILED':
      return { status: 400, title: 'Request validation failed' };
    case 'INVALID_TENSOR':
      return { status: 400, title: 'Invalid input tensor' };
    case 'MODEL_NOT_FOUND':
      return { status: 404, title: 'Model not found' };
    case 'MODEL_VERSION_NOT_FOUND':
      return { status: 404, title: 'Model version not found' };
    case 'MODEL_NOT_READY':
      return { status: 503, title: 'Model not ready' };
    case 'QUEUE_FULL':
      return { status: 503, title: 'Inference queue full' };
    case 'DEADLINE_EXCEEDED':
      return { status: 504, title: 'Inference deadline exceeded' };
    case 'SHUTTING_DOWN':
      return { status: 503, title: 'Gateway shutting down' };
    case 'INFERENCE_FAILED':
      return { status: 500, title: 'Inference failed' };
    case 'OUTPUT_NOT_FINITE':
      return { status: 422, title: 'Model output not representable as JSON' };
    case 'OUTPUT_NOT_REPRESENTABLE':
      // An INT64 output outside JSON's exact integers; binary_data output carries it exactly.
      return { status: 422, title: 'Model output not representable as JSON' };
    case 'UNAUTHENTICATED':
      return { status: 401, title: 'Authentication required' };
    case 'FORBIDDEN':
      return { status: 403, title: 'Permission denied' };
    case 'RATE_LIMITED':
      return { status: 429, title: 'Too many requests' };
    case 'AUDIT_UNAVAILABLE':
      return { status: 503, title: 'Audit trail unavailable' };
    case 'PAN_DETECTED':
      return { status: 422, title: 'Card number refused' };
    case 'DUPLICATE_TRANSACTION_ID':
      // Today only a fraud batch item's error (the batch itself is answered 200).
      return { status: 422, title: 'Transaction id already sent in this batch' };
    case 'DUPLICATE_APPLICATION_ID':
      // Today only a credit batch item's error (the batch itself is answered 200).
      return { status: 422, title: 'Application id already sent in this batch' };
    case 'TIME_OUT_OF_RANGE':
      // A well-formed time before the earliest the route takes (FINANCE_EARLIEST_TIME: a placeholder date) or
      // further ahead of the clock than it allows (FINANCE_FUTURE_TOLERANCE_MS: a time that has not come yet).
      return { status: 422, title: 'Time outside the accepted range' };
    case 'IDEMPOTENCY_KEY_REUSED':
      return { status: 422, title: 'Idempotency key reused with a different request' };
    case 'IDEMPOTENCY_IN_PROGRESS':
      return { status: 409, title: 'A request with this idempotency key is in progress' };
    case 'DICOM_INVALID':
      return { status: 400, title: 'Not a readable DICOM instance' };
    case 'DICOM_UNSUPPORTED':
      return { status: 422, title: 'DICOM instance not accepted' };
    case 'UNSUPPORTED_MEDIA_TYPE':
      return { status: 415, title: 'Unsupported media type' };
    case 'NOT_ACCEPTABLE':
      return { status: 406, title: 'Not acceptable' };
    case 'UPLOADS_BUSY':
      return { status: 503, title: 'Too many uploads in progress' };
    case 'STORAGE_UNAVAILABLE':
      return { status: 503, title: 'Database unavailable' };
    case 'NOT_FOUND':
      return { status: 404, title: 'Not found' };
    case 'METHOD_NOT_ALLOWED':
      return { status: 405, title: 'Method not allowed' };
    case 'MALFORMED_JSON':
      // Bytes that are no JSON, or none where a JSON body was announced.
      return { status: 400, title: 'Malformed JSON body' };
    case 'BODY_TOO_LARGE':
      return { status: 413, title: 'Request body too large' };
    case 'CONTENT_LENGTH_MISMATCH':
      return { status: 400, title: 'Body size does not match Content-Length' };
    case 'PATH_INVALID':
      return { status: 400, title: 'Path not readable' };
    case 'URI_TOO_LONG':
      return { status: 414, title: 'URI too long' };
    case 'PRECONDITION_FAILED':
      // Only the static files under /docs read If-Match and If-Unmodified-Since.
      return { status: 412, title: 'Precondition failed' };
    case 'RANGE_NOT_SATISFIABLE':
      // Only the static files under /docs read Range.
      return { status: 416, title: 'Range not satisfiable' };
    case 'HTTP_PARSE_ERROR':
      // Node's HTTP parser refused the request before any route saw it (client-errors.ts).
      return { status: 400, title: 'Not valid HTTP/1.1' };
    case 'HEADERS_TOO_LARGE':
      return { status: 431, title: 'Request headers too large' };
    case 'REQUEST_TIMEOUT':
      return { status: 408, title: 'Request not received in time' };
    case 'REQUEST_REFUSED':
      // A client error (4xx) raised by a framework or plugin that no code above names yet (problem.filter.ts).
      return { status: 400, title: 'Request refused' };
    case 'EXPECTATION_FAILED':
      // An Expect other than 100-continue (host-header.ts).
      return { status: 417, title: 'Expectation failed' };
    case 'INTERNAL':
      // Says only its request id; the error is in the logs under it.
      return { status: 500, title: 'Internal error' };
  }
}
