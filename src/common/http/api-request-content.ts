import { ApiExtension } from '@nestjs/swagger';
import type { ContentObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';

/** The operation extension that buildOpenApiDocument (src/openapi) moves into the operation's requestBody.content. */
export const REQUEST_CONTENT_EXTENSION = 'x-request-content';

/**
 * Media types the request body may also come as, each with its own schema: ApiBody gives every media type of the
 * operation one schema (an OIP infer body is JSON, or binary tensor data after a JSON header). Held as an
 * extension of the operation until the document is built.
 */
export const ApiMoreRequestContent = (content: ContentObject): MethodDecorator =>
  ApiExtension(REQUEST_CONTENT_EXTENSION, content);
