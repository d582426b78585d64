import { Controller, Get, Header, Query, Req, VERSION_NEUTRAL } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { noteAudit, principalOf, RequirePermission } from '../access';
import { ApiProblems, PROTECTED_ROUTE_ERRORS } from '../errors/api-error-responses';
import { NoQueryDto } from '../http/no-query';
import { MetricsService } from './metrics.service';

@ApiTags('metrics')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS)
@Controller({ path: 'metrics', version: VERSION_NEUTRAL })
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  /**
   * Prometheus text exposition: counts and timings, never request content, but the models, their versions and each
   * route's traffic, so it needs metrics:read (role `monitoring`). Scrapes are audited as one summary row per
   * scraper and window (their count, first and last time), not a row each, and answered without waiting for it: a
   * scrape decides nothing, and the audit trail's own failure series stay readable while it cannot be written.
   */
  @Get()
  @RequirePermission('metrics:read', 'metrics.read')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  @ApiProduces('text/plain')
  @ApiOkResponse({ description: 'Prometheus text format 0.0.4', schema: { type: 'string' } })
  @ApiProblems(400)
  scrape(@Query() _query: NoQueryDto, @Req() request: FastifyRequest): Promise<string> {
    noteAudit(request, { aggregate: { group: `scraper ${principalOf(request)?.subject ?? ''}` } });
    return this.metrics.metrics();
  }
}
