import { type AppError, FieldError, httpStatusOf } from './app-error';

/** RFC 9457 problem details, with the gateway's extension members. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  code: string;
  requestId?: string;
  errors?: FieldError[];
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export function problemType(code: string): string {
  return `urn:gateway:problem:${code.toLowerCase().replace(/_/g, '-')}`;
}

/**
 * The problem an AppError is answered with; `request` gives its path (`instance`) and request id, absent where no
 * request was read (what Node's HTTP parser refused).
 */
export function problemOf(error: AppError, request?: { instance: string; requestId: string }): Problem {
  const { status, title } = httpStatusOf(error.code);
  return {
    type: problemType(error.code),
    title,
    status,
    detail: error.detail,
    code: error.code,
    ...request,
    ...(error.fields.length ? { errors: error.fields } : {}),
  };
}
