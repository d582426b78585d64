import { Body, Controller, Delete, Get, HttpCode, Param, Put, Query, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiNoContentResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { noteAudit, RequirePermission } from '../../../common/access';
import { AppError } from '../../../common/errors/app-error';
import { ApiProblems, JSON_BODY_ERRORS, PROTECTED_ROUTE_ERRORS } from '../../../common/errors/api-error-responses';
import { NoQueryDto } from '../../../common/http/no-query';
import { ApiAssetIdParam, AssetDto, AssetListDto } from './asset.dto';
import { AssetEntity } from './asset.entity';
import { AssetRegistry } from './asset-registry.service';

function toDto(a: AssetEntity): AssetDto {
  return {
    assetId: a.assetId,
    kind: a.kind,
    site: a.site,
    area: a.area,
    line: a.line,
    ...(a.cell ? { cell: a.cell } : {}),
    sensors: a.sensors,
    constants: a.constants,
    alarm: a.alarm,
  };
}

/** The asset registry: which model serves an asset, where it is, how its tags map, when it alarms. */
@ApiTags('manufacturing')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS)
@Controller('manufacturing/assets')
export class AssetController {
  constructor(private readonly registry: AssetRegistry) {}

  @Get()
  @RequirePermission('manufacturing:read', 'manufacturing.assets-list')
  @ApiOkResponse({ type: AssetListDto })
  @ApiProblems(400)
  list(@Query() _query: NoQueryDto): AssetListDto {
    return { assets: this.registry.list().map(toDto) };
  }

  @Get(':assetId')
  @RequirePermission('manufacturing:read', 'manufacturing.asset-read')
  @ApiAssetIdParam()
  @ApiOkResponse({ type: AssetDto })
  @ApiProblems(400, 404)
  get(@Param('assetId') assetId: string, @Query() _query: NoQueryDto): AssetDto {
    return toDto(this.registry.get(assetId));
  }

  /**
   * Creates or replaces an asset. Put as another kind (another model), its window and alarm start over, and an alarm
   * its old model left raised is closed (stored and sent as cleared, `reason` asset-kind-changed) before the answer.
   */
  @Put(':assetId')
  @HttpCode(200)
  @RequirePermission('models:admin', 'manufacturing.asset-put')
  @ApiAssetIdParam()
  @ApiOkResponse({ type: AssetDto })
  @ApiProblems(...JSON_BODY_ERRORS)
  async put(
    @Param('assetId') assetId: string,
    @Body() body: AssetDto,
    @Query() _query: NoQueryDto,
    @Req() request: FastifyRequest,
  ): Promise<AssetDto> {
    if (body.assetId !== assetId) {
      throw new AppError('VALIDATION_FAILED', 'assetId in the body must match the path', {
        fields: [{ field: 'assetId', reason: 'must match the path' }],
      });
    }
    noteAudit(request, { output: { assetId, kind: body.kind } });
    return toDto(await this.registry.put(body));
  }

  /** Removes an asset; an alarm it left raised is closed (stored and sent as cleared, `reason` asset-removed) before the answer. */
  @Delete(':assetId')
  @HttpCode(204)
  @RequirePermission('models:admin', 'manufacturing.asset-delete')
  @ApiAssetIdParam()
  @ApiNoContentResponse({ description: 'Deleted' })
  // No body is read, but one that is sent is parsed first (as on any route but GET and HEAD), and refused as on PUT.
  @ApiProblems(...JSON_BODY_ERRORS, 404)
  async remove(
    @Param('assetId') assetId: string,
    @Query() _query: NoQueryDto,
    @Req() request: FastifyRequest,
  ): Promise<void> {
    noteAudit(request, { output: { assetId } });
    await this.registry.remove(assetId);
  }
}
