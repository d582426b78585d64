import type { FastifyInstance } from 'fastify';
import type { AppError } from '../errors/app-error';
import { varyOn } from './vary';

/**
 * Fastify route config key (@AddRouteConfig({ [BODY_MEDIA_TYPE]: rule })) of a route that reads its body as one
 * media type only (a DICOM instance, a STOW-RS multipart body). Another Content-Type is refused with the rule's
 * 415 before the body is read: a DICOM file labelled application/json went to the JSON parser, which read all
 * of it and answered "not valid JSON" (or 413 past the JSON body limit), where any other wrong type got the
 * route's 415 naming Content-Type.
 */
export const BODY_MEDIA_TYPE = 'bodyMediaType';

export interface BodyMediaTypeRule {
  /** Whether the route reads a body of this Content-Type (the header as sent, undefined when there is none). */
  accepts(contentType: string | undefined): boolean;
  /** The route's 415 naming Content-Type and the type it takes. */
  refusal(): AppError;
  /** A request header that chooses the route's answers (Accept): its refusals say so to caches as its others do. */
  vary?: string;
}

/** Refuses, before any content-type parser reads the body, a Content-Type its route's BODY_MEDIA_TYPE rule does not accept. */
export function refuseOtherBodyMediaTypes(fastify: FastifyInstance): void {
  fastify.addHook('preParsing', (request, reply, payload, done) => {
    const config = request.routeOptions.config as unknown as Record<string, unknown> | undefined;
    const rule = config?.[BODY_MEDIA_TYPE] as BodyMediaTypeRule | undefined;
    if (rule && !rule.accepts(request.headers['content-type'])) {
      if (rule.vary) varyOn(reply, rule.vary);
      return done(rule.refusal());
    }
    done(null, payload);
  });
}
