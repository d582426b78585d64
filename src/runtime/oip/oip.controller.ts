import {
  applyDecorators,
  Body,
  Controller,
  Get,
  Headers,
  HttpCode,
  Param,
  Post,
  Req,
  Res,
  VERSION_NEUTRAL,
} from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiExtraModels,
  ApiHeader,
  ApiOkResponse,
  ApiOperation,
  ApiServiceUnavailableResponse,
  ApiTags,
  getSchemaPath,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuditNote, noteAudit, Public, RequirePermission } from '../../common/access';
import { ApiErrorResponses, JSON_BODY_ERRORS, PROTECTED_ROUTE_ERRORS } from '../../common/errors/api-error-responses';
import { ApiMoreRequestContent } from '../../common/http/api-request-content';
import {
  OipInferRequestDto,
  OipErrorDto,
  OipInferResponseDto,
  OipLiveDto,
  OipModelListDto,
  OipModelMetadataDto,
  OipReadyDto,
  OipServerMetadataDto,
} from './oip.dto';
import { HEADER_LENGTH } from './oip-binary';
import { OipAnswer, OipService } from './oip.service';

/**
 * The outputs as JSON, or (binary tensor data extension, when the request asks for binary outputs) a JSON
 * header of Inference-Header-Content-Length bytes followed by the outputs' raw bytes.
 */
const ApiInferResponse = (): MethodDecorator =>
  applyDecorators(
    ApiExtraModels(OipInferResponseDto),
    ApiOkResponse({
      description:
        'The outputs; as application/octet-stream when binary outputs are asked for (binary_data, binary_data_output): ' +
        'the JSON response header, Inference-Header-Content-Length bytes long, then the raw tensors',
      content: {
        'application/json': { schema: { $ref: getSchemaPath(OipInferResponseDto) } },
        'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
      },
      headers: {
        'Inference-Header-Content-Length': {
          description: 'With application/octet-stream: the length of the JSON header that starts the body',
          schema: { type: 'integer' },
        },
      },
    }),
  );

/**
 * The infer request: JSON, or the binary tensor data extension (a JSON header of Inference-Header-Content-Length
 * bytes, then the raw tensors), as application/octet-stream or, with the header, labelled application/json or
 * unlabelled (Triton's Python client sends it so).
 */
const ApiInferRequest = (): MethodDecorator =>
  applyDecorators(
    ApiBody({
      type: OipInferRequestDto,
      description:
        'The request as JSON; or, with Inference-Header-Content-Length, the binary tensor data extension: the JSON ' +
        'request (the header) in the first Inference-Header-Content-Length bytes, each input that gives ' +
        "`parameters.binary_data_size` without `data`, then those inputs' values as raw little-endian bytes, one " +
        'input after another in the order of `inputs`, each `binary_data_size` bytes. Such a body may be labelled ' +
        'application/octet-stream or application/json, or not at all; application/octet-stream without the header ' +
        'is read as the JSON request.',
    }),
    ApiMoreRequestContent({ 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } }),
    ApiHeader({
      name: 'Inference-Header-Content-Length',
      required: false,
      description: 'With binary tensor data: the length in bytes of the JSON header that starts the body',
      schema: { type: 'integer', minimum: 0 },
    }),
  );

/**
 * A model-ready route answers 503 with its readiness body while no worker serves the model (one is being
 * replaced), besides the error any protected route can answer 503 with (audit trail down).
 */
const ApiModelNotReady = (): MethodDecorator =>
  applyDecorators(
    ApiExtraModels(OipReadyDto, OipErrorDto),
    ApiServiceUnavailableResponse({
      // Joined to the description OipErrors gives 503.
      description:
        'Or, with `ready: false` and no Retry-After: no inference worker has the model loaded (one is being replaced)',
      content: {
        'application/json': {
          schema: { oneOf: [{ $ref: getSchemaPath(OipReadyDto) }, { $ref: getSchemaPath(OipErrorDto) }] },
        },
      },
      headers: {
        'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } },
      },
    }),
  );

/** Errors of a protected /v2 route, and those of `more`: `{"error": "..."}` as application/json. */
const OipErrors = (...more: number[]): MethodDecorator & ClassDecorator =>
  ApiErrorResponses('application/json', OipErrorDto, [...PROTECTED_ROUTE_ERRORS, ...more]);

/**
 * Open Inference Protocol v2 (KServe / Triton compatible REST). Errors are `{"error": "..."}`.
 * Health is public; metadata needs models:read; raw inference needs models:admin, since it
 * bypasses the domain APIs' validation (it is the ML engineers' door, not the business one).
 * `@ApiBearerAuth()` goes on each protected route, not on the class: OpenAPI must not ask for a
 * token on the public health routes.
 */
@ApiTags('open-inference-protocol')
@Controller({ path: 'v2', version: VERSION_NEUTRAL })
export class OipController {
  constructor(private readonly oip: OipService) {}

  @Get()
  @RequirePermission('models:read', 'server.metadata')
  @ApiBearerAuth()
  @ApiOperation({ summary: 'Server metadata' })
  @ApiOkResponse({ type: OipServerMetadataDto })
  @OipErrors()
  server(): OipServerMetadataDto {
    return this.oip.serverMetadata();
  }

  @Get('health/live')
  @Public()
  @ApiOkResponse({ type: OipLiveDto })
  @ApiServiceUnavailableResponse({
    type: OipLiveDto,
    description: 'Not live: no inference worker has served for WORKER_OUTAGE_LIVENESS_MS (restart the process)',
  })
  live(@Res({ passthrough: true }) reply: FastifyReply): OipLiveDto {
    const live = this.oip.serverLive();
    void reply.status(live ? 200 : 503);
    return { live };
  }

  @Get('health/ready')
  @Public()
  @ApiOkResponse({ type: OipReadyDto })
  @ApiServiceUnavailableResponse({ type: OipReadyDto, description: 'Not ready (models loading or shutting down)' })
  ready(@Res({ passthrough: true }) reply: FastifyReply): OipReadyDto {
    const ready = this.oip.serverReady();
    void reply.status(ready ? 200 : 503);
    return { ready };
  }

  @Get('models')
  @RequirePermission('models:read', 'model.list')
  @ApiBearerAuth()
  @ApiOperation({ summary: 'Every model with its live versions (gateway extension)' })
  @ApiOkResponse({ type: OipModelListDto })
  @OipErrors()
  models(): OipModelListDto {
    return this.oip.listModels();
  }

  @Get('models/:name')
  @RequirePermission('models:read', 'model.metadata')
  @ApiBearerAuth()
  @ApiOkResponse({ type: OipModelMetadataDto })
  @OipErrors(404)
  metadata(@Param('name') name: string): OipModelMetadataDto {
    return this.oip.metadata(name);
  }

  @Get('models/:name/versions/:version')
  @RequirePermission('models:read', 'model.metadata')
  @ApiBearerAuth()
  @ApiOkResponse({ type: OipModelMetadataDto })
  @OipErrors(404)
  versionMetadata(@Param('name') name: string, @Param('version') version: string): OipModelMetadataDto {
    return this.oip.metadata(name, version);
  }

  @Get('models/:name/ready')
  @RequirePermission('models:read', 'model.ready')
  @ApiBearerAuth()
  @ApiOkResponse({ type: OipReadyDto })
  @ApiModelNotReady()
  @OipErrors(404)
  modelReady(
    @Param('name') name: string,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): OipReadyDto {
    return readiness(this.oip.modelReady(name), request, reply);
  }

  @Get('models/:name/versions/:version/ready')
  @RequirePermission('models:read', 'model.ready')
  @ApiBearerAuth()
  @ApiOkResponse({ type: OipReadyDto })
  @ApiModelNotReady()
  @OipErrors(404)
  versionReady(
    @Param('name') name: string,
    @Param('version') version: string,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): OipReadyDto {
    return readiness(this.oip.modelReady(name, version), request, reply);
  }

  @Post('models/:name/infer')
  @RequirePermission('models:admin', 'model.infer')
  @ApiBearerAuth()
  @HttpCode(200)
  @ApiOperation({ summary: 'Run the default version of a model (JSON, or the binary tensor data extension)' })
  @ApiInferRequest()
  @ApiInferResponse()
  @OipErrors(...JSON_BODY_ERRORS, 404, 422, 504)
  async infer(
    @Param('name') name: string,
    @Body() body: unknown,
    @Headers(HEADER_LENGTH) headerLength: string | undefined,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<OipInferResponseDto | Buffer> {
    return send(await this.oip.infer(name, undefined, body, headerLength, auditInto(request)), reply);
  }

  @Post('models/:name/versions/:version/infer')
  @RequirePermission('models:admin', 'model.infer')
  @ApiBearerAuth()
  @HttpCode(200)
  @ApiOperation({ summary: 'Run a pinned version of a model (JSON, or the binary tensor data extension)' })
  @ApiInferRequest()
  @ApiInferResponse()
  @OipErrors(...JSON_BODY_ERRORS, 404, 422, 504)
  async inferVersion(
    @Param('name') name: string,
    @Param('version') version: string,
    @Body() body: unknown,
    @Headers(HEADER_LENGTH) headerLength: string | undefined,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<OipInferResponseDto | Buffer> {
    return send(await this.oip.infer(name, version, body, headerLength, auditInto(request)), reply);
  }
}

/**
 * The protocol's answer is the status: 200 is ready, anything else is not (Triton's and KServe's clients
 * read only the status). Not ready is 503, as /v2/health/ready answers, with the same body saying so.
 */
function readiness(answer: OipReadyDto, request: FastifyRequest, reply: FastifyReply): OipReadyDto {
  if (!answer.ready) {
    void reply.status(503);
    noteAudit(request, { reason: 'model not ready: no inference worker has it loaded' });
  }
  return answer;
}

function auditInto(request: FastifyRequest): (note: AuditNote) => void {
  return (note) => noteAudit(request, note);
}

/**
 * The answer's bytes as they are (its JSON is written already: OipService.infer), labelled: JSON exactly
 * `application/json`, as every /v2 answer is (labelOipJsonAnswers).
 */
function send(answer: OipAnswer, reply: FastifyReply): Buffer {
  if (answer.kind === 'json') {
    void reply.header('Content-Type', 'application/json');
    return answer.body;
  }
  void reply.header('Content-Type', 'application/octet-stream').header(HEADER_LENGTH, String(answer.headerLength));
  return answer.body;
}
