/* OpenAPI documentation of the error answers (RFC 9457 problem details); the filter builds them (problem.ts). */
import { ApiProperty } from '@nestjs/swagger';
import { ERROR_CODES, type FieldError } from './app-error';
import type { Problem } from './problem';

export class FieldErrorDto implements FieldError {
  /** Path of the offending field in the request, e.g. `inputs[0].shape`, or a header such as `Content-Type`. */
  field!: string;

  reason!: string;
}

/** RFC 9457 problem details, with the gateway's extension members `code`, `requestId` and `errors`. */
export class ProblemDto implements Problem {
  /** A URN naming the problem, `urn:gateway:problem:<code>`. */
  @ApiProperty({ example: 'urn:gateway:problem:validation-failed' })
  type!: string;

  title!: string;

  /** The HTTP status code, repeated. */
  @ApiProperty({ type: 'integer', example: 400 })
  status!: number;

  /** What went wrong, safe to show: never a stack trace, a path on disk or SQL. */
  detail!: string;

  /** The request path; a segment that holds a card number is given as `(card number)`. */
  instance?: string;

  /** The error code, e.g. VALIDATION_FAILED, FORBIDDEN, QUEUE_FULL; stable for clients to branch on, one of these. */
  @ApiProperty({ enum: ERROR_CODES, enumName: 'ErrorCode', example: 'VALIDATION_FAILED' })
  code!: string;

  /** The request id (also the X-Request-Id header), as found in the gateway's logs. */
  requestId?: string;

  /**
   * Field-level reasons, when the request had invalid fields: at most 100, then one entry with field `(more)` saying
   * how many more there were.
   */
  errors?: FieldErrorDto[];
}
