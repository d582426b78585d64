import { maxHeaderSize } from 'node:http';
import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, getSchemaPath, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import type {
  ContentObject,
  OperationObject,
  ParameterObject,
  RequestBodyObject,
  ResponseObject,
  SchemaObject,
} from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import { REQUIRED_PERMISSION_EXTENSION } from '../common/access';
import { FORBIDDEN_DESCRIPTION } from '../common/errors/api-error-responses';
import { PROBLEM_CONTENT_TYPE } from '../common/errors/problem';
import { ProblemDto } from '../common/errors/problem.dto';
import { OIP_PREFIX } from '../common/errors/problem.filter';
import { REQUEST_CONTENT_EXTENSION } from '../common/http/api-request-content';
import { MAX_PATH_PARAM_LENGTH } from '../common/http/path-params';
import { OipErrorDto } from '../runtime/oip/oip.dto';

export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Regulated inference gateway')
    .setDescription(
      'Inference for medical, finance and manufacturing on one ONNX Runtime engine. Domain APIs are URI-versioned (/v1/...); ' +
        'the Open Inference Protocol v2 lives under /v2. Errors are RFC 9457 application/problem+json, except on /v2 ' +
        'where they are {"error": "..."} as the protocol asks.\n\n' +
        'Any request, to any path, may also be answered before it is routed, and then the connection is closed: ' +
        `431 when its request line and headers are over ${maxHeaderSize} bytes, 408 when it is not received within ` +
        'HTTP_REQUEST_TIMEOUT_MS, 400 when it is not valid HTTP/1.1; as application/problem+json, on /v2 too. ' +
        'These are not listed under each operation.',
    )
    .setVersion('0.1.0')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
    .build();
  const document = SwaggerModule.createDocument(app, config);
  return declarePathRefusals(namePermissions(closeRequestSchemas(addRequestContent(document))));
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

/**
 * What the router answers for a path parameter before any route sees it: 400 for one that is not percent-encoded
 * UTF-8, 414 for one longer than MAX_PATH_PARAM_LENGTH (also the parameter's maxLength). Declared on every operation
 * with a path parameter, as errors on its path are answered ({"error"} under /v2, a problem elsewhere); an operation
 * without one gets neither (a bad path of its own is not its path: 400 before any route, as any path).
 */
export function declarePathRefusals(document: OpenAPIObject): OpenAPIObject {
  for (const { path, operation } of operationsOf(document)) {
    const parameters = (operation.parameters ?? []).filter((p): p is ParameterObject => 'in' in p && p.in === 'path');
    if (parameters.length === 0) continue;
    for (const parameter of parameters) {
      const schema = (parameter.schema ?? { type: 'string' }) as SchemaObject;
      parameter.schema = { ...schema, maxLength: Math.min(schema.maxLength ?? Infinity, MAX_PATH_PARAM_LENGTH) };
    }
    const oip = path === OIP_PREFIX || path.startsWith(`${OIP_PREFIX}/`);
    const content: ContentObject = oip
      ? { 'application/json': { schema: { $ref: getSchemaPath(OipErrorDto) } } }
      : { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: getSchemaPath(ProblemDto) } } };
    operation.responses['400'] ??= {
      description: 'A path parameter is not valid percent-encoded UTF-8',
      content,
    };
    operation.responses['414'] = {
      description: `A path parameter is longer than ${MAX_PATH_PARAM_LENGTH} characters`,
      content,
    };
    // In order of status, as the decorators' responses are (`default` last).
    const rank = (status: string): number => (/^\d+$/.test(status) ? Number(status) : 1000);
    operation.responses = Object.fromEntries(Object.entries(operation.responses).sort(([a], [b]) => rank(a) - rank(b)));
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
