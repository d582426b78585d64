import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { containsPan } from '../pan';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;
export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * Keeps a caller's X-Request-Id when it is safe to log, otherwise mints one. One that looks like a
 * card number is replaced too (not refused: it is only the caller's correlation id), so it never
 * reaches a log line or the append-only audit trail.
 */
export function requestIdFor(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && SAFE_ID.test(given) && !containsPan(given) ? given : randomUUID();
}
