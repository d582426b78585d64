import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import type {
  ContentObject,
  OperationObject,
  RequestBodyObject,
  ResponseObject,
  SchemaObject,
} from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import { REQUIRED_PERMISSION_EXTENSION } from '../common/access';
import { FORBIDDEN_DESCRIPTION } from '../common/errors/api-error-responses';
import { REQUEST_CONTENT_EXTENSION } from '../common/http/api-request-content';

export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Regulated inference gateway')
    .setDescription(
      'Inference for medical, finance and manufacturing on one ONNX Runtime engine. Domain APIs are URI-versioned (/v1/...); ' +
        'the Open Inference Protocol v2 lives under /v2. Errors are RFC 9457 application/problem+json, except on /v2 ' +
        'where they are {"error": "..."} as the protocol asks.',
    )
    .setVersion('0.1.0')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
    .build();
  return namePermissions(closeRequestSchemas(addRequestContent(SwaggerModule.createDocument(app, config))));
}

/** An operation with its vendor extensions (`x-...`), which the spec's type leaves out. */
type Operation = OperationObject & { [extension: `x-${string}`]: unknown };

/** Every operation of the document, with its path and method. */
function operationsOf(document: OpenAPIObject): Array<{ path: string; method: string; operation: Operation }> {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item as Record<string, Operation>).map(([method, operation]) => ({ path, method, operation })),
  );
}

/** The request body media types declared with ApiMoreRequestContent, moved from their extension into requestBody. */
export function addRequestContent(document: OpenAPIObject): OpenAPIObject {
  for (const { operation } of operationsOf(document)) {
    const extra = operation[REQUEST_CONTENT_EXTENSION] as ContentObject | undefined;
    if (!extra) continue;
    delete operation[REQUEST_CONTENT_EXTENSION];
    const body = (operation.requestBody ?? { content: {} }) as RequestBodyObject;
    operation.requestBody = { ...body, content: { ...body.content, ...extra } };
  }
  return document;
}

/**
 * The 403 of each operation whose route needs a permission names it: RequirePermission, the one declaration the
 * guard and the access hook read, also puts it in the operation as REQUIRED_PERMISSION_EXTENSION.
 */
export function namePermissions(document: OpenAPIObject): OpenAPIObject {
  for (const { operation } of operationsOf(document)) {
    const permission = operation[REQUIRED_PERMISSION_EXTENSION];
    const forbidden = operation.responses['403'] as ResponseObject | undefined;
    if (typeof permission !== 'string' || !forbidden) continue;
    // A copy: the operations of one controller share the response objects its class-level decorators made.
    operation.responses['403'] = {
      ...forbidden,
      description: forbidden.description.replace(
        FORBIDDEN_DESCRIPTION,
        `The token's roles do not grant the permission this route needs, \`${permission}\` (${REQUIRED_PERMISSION_EXTENSION})`,
      ),
    };
  }
  return document;
}

const SCHEMA_REF = /"#\/components\/schemas\/([^"]+)"/g;

/**
 * Every JSON request body is checked with unknown properties refused (the global ValidationPipe's
 * `forbidNonWhitelisted`, and the compiled schemas of the fraud and OIP bodies), which the document
 * states by `additionalProperties: false` on each object schema a request body reaches. Schemas that
 * declare their own `additionalProperties` (a map such as a reading's `values`) keep it.
 */
export function closeRequestSchemas(document: OpenAPIObject): OpenAPIObject {
  const schemas = (document.components?.schemas ?? {}) as Record<string, SchemaObject>;
  const pending: string[] = [];
  for (const path of Object.values(document.paths)) {
    for (const operation of Object.values(path) as Array<{ requestBody?: unknown }>) {
      const json = (operation?.requestBody as RequestBodyObject | undefined)?.content?.['application/json'];
      if (json) pending.push(...refsIn(json.schema));
    }
  }
  const closed = new Set<string>();
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    const schema = schemas[name];
    if (closed.has(name) || !schema) continue;
    closed.add(name);
    if (schema.type === 'object' && schema.properties && schema.additionalProperties === undefined) {
      schema.additionalProperties = false;
    }
    pending.push(...refsIn(schema));
  }
  return document;
}

function refsIn(schema: unknown): string[] {
  return [...JSON.stringify(schema ?? null).matchAll(SCHEMA_REF)].map((m) => m[1]);
}

/** Swagger UI at /docs, the document at /docs/openapi.json. */
export function setupOpenApi(app: INestApplication): void {
  // showExtensions: Swagger UI shows each operation's x-required-permission.
  SwaggerModule.setup('docs', app, buildOpenApiDocument(app), {
    jsonDocumentUrl: 'docs/openapi.json',
    swaggerOptions: { showExtensions: true },
  });
}
