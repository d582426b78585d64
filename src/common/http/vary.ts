import type { FastifyReply } from 'fastify';

/**
 * Adds `header` to the answer's Vary (RFC 9110 12.5.5): an answer whose form a request header chose (JSON or a DICOM
 * SR by Accept) must not be served by a cache to a request that would have chosen the other. Kept with any name
 * already listed; `*` already covers it.
 */
export function varyOn(reply: FastifyReply, header: string): void {
  const current = reply.getHeader('vary');
  const names = String(current ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  if (names.some((name) => name === '*' || name.toLowerCase() === header.toLowerCase())) return;
  void reply.header('vary', [...names, header].join(', '));
}
