import type { FastifyInstance } from 'fastify';

/**
 * DICOM bodies arrive as bytes: one instance (`application/dicom`) or a STOW-RS study
 * (`multipart/related`). Fastify stops reading at MEDICAL_MAX_BODY_BYTES (413) while the body
 * streams in, so an oversized upload never sits whole in memory.
 */
export function registerDicomBodies(fastify: FastifyInstance, bodyLimit: number): void {
  const raw = (_request: unknown, body: Buffer | string, done: (error: Error | null, body?: unknown) => void): void =>
    done(null, body);
  fastify.addContentTypeParser('application/dicom', { parseAs: 'buffer', bodyLimit }, raw);
  fastify.addContentTypeParser(/^multipart\/related(\s*;.*)?$/i, { parseAs: 'buffer', bodyLimit }, raw);
}
