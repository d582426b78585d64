import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';

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
  return SwaggerModule.createDocument(app, config);
}

/** Swagger UI at /docs, the document at /docs/openapi.json. */
export function setupOpenApi(app: INestApplication): void {
  SwaggerModule.setup('docs', app, buildOpenApiDocument(app), { jsonDocumentUrl: 'docs/openapi.json' });
}
