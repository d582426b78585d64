import type { FastifyInstance } from 'fastify';

const DICOM_INSTANCE = 'application/dicom';
const DICOM_STUDY = /^multipart\/related(\s*;.*)?$/i;

/**
 * DICOM bodies arrive as bytes: one instance (`application/dicom`) or a STOW-RS study
 * (`multipart/related`). Fastify stops reading at MEDICAL_MAX_BODY_BYTES (413) while the body
 * streams in, so an oversized upload never sits whole in memory.
 */
export function registerDicomBodies(fastify: FastifyInstance, bodyLimit: number): void {
  const raw = (_request: unknown, body: Buffer | string, done: (error: Error | null, body?: unknown) => void): void =>
    done(null, body);
  fastify.addContentTypeParser(DICOM_INSTANCE, { parseAs: 'buffer', bodyLimit }, raw);
  fastify.addContentTypeParser(DICOM_STUDY, { parseAs: 'buffer', bodyLimit }, raw);
}

/** Whether Fastify hands a body of this Content-Type to the DICOM parsers above (and their body limit). */
export function isDicomBody(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  // Fastify matches the parsers against the media type, before any parameter.
  const mediaType = contentType.split(';', 1)[0].trim().toLowerCase();
  return mediaType === DICOM_INSTANCE || DICOM_STUDY.test(mediaType);
}
