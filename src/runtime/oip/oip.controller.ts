import { Body, Controller, Get, HttpCode, Param, Post, Res, VERSION_NEUTRAL } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import {
  OipInferRequestDto,
  OipInferResponseDto,
  OipLiveDto,
  OipModelListDto,
  OipModelMetadataDto,
  OipReadyDto,
  OipServerMetadataDto,
} from './oip.dto';
import { OipService } from './oip.service';

/** Open Inference Protocol v2 (KServe / Triton compatible REST). Errors are `{"error": "..."}`. */
@ApiTags('open-inference-protocol')
@Controller({ path: 'v2', version: VERSION_NEUTRAL })
export class OipController {
  constructor(private readonly oip: OipService) {}

  @Get()
  @ApiOperation({ summary: 'Server metadata' })
  @ApiOkResponse({ type: OipServerMetadataDto })
  server(): OipServerMetadataDto {
    return this.oip.serverMetadata();
  }

  @Get('health/live')
  @ApiOkResponse({ type: OipLiveDto })
  live(): OipLiveDto {
    return { live: true };
  }

  @Get('health/ready')
  @ApiOkResponse({ type: OipReadyDto })
  ready(@Res({ passthrough: true }) reply: FastifyReply): OipReadyDto {
    const ready = this.oip.serverReady();
    void reply.status(ready ? 200 : 503);
    return { ready };
  }

  @Get('models')
  @ApiOperation({ summary: 'Every model with its live versions (gateway extension)' })
  @ApiOkResponse({ type: OipModelListDto })
  models(): OipModelListDto {
    return this.oip.listModels();
  }

  @Get('models/:name')
  @ApiOkResponse({ type: OipModelMetadataDto })
  metadata(@Param('name') name: string): OipModelMetadataDto {
    return this.oip.metadata(name);
  }

  @Get('models/:name/versions/:version')
  @ApiOkResponse({ type: OipModelMetadataDto })
  versionMetadata(@Param('name') name: string, @Param('version') version: string): OipModelMetadataDto {
    return this.oip.metadata(name, version);
  }

  @Get('models/:name/ready')
  @ApiOkResponse({ type: OipReadyDto })
  modelReady(@Param('name') name: string): OipReadyDto {
    return this.oip.modelReady(name);
  }

  @Get('models/:name/versions/:version/ready')
  @ApiOkResponse({ type: OipReadyDto })
  versionReady(@Param('name') name: string, @Param('version') version: string): OipReadyDto {
    return this.oip.modelReady(name, version);
  }

  @Post('models/:name/infer')
  @HttpCode(200)
  @ApiOperation({ summary: 'Run the default version of a model' })
  @ApiOkResponse({ type: OipInferResponseDto })
  infer(@Param('name') name: string, @Body() body: OipInferRequestDto): Promise<OipInferResponseDto> {
    return this.oip.infer(name, undefined, body);
  }

  @Post('models/:name/versions/:version/infer')
  @HttpCode(200)
  @ApiOperation({ summary: 'Run a pinned version of a model' })
  @ApiOkResponse({ type: OipInferResponseDto })
  inferVersion(
    @Param('name') name: string,
    @Param('version') version: string,
    @Body() body: OipInferRequestDto,
  ): Promise<OipInferResponseDto> {
    return this.oip.infer(name, version, body);
  }
}
