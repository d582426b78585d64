import { FieldError } from './app-error';

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
