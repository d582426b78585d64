import { Controller, Get, Query, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { principalOf, RequirePermission } from '../common/access';
import { ApiProblemAlso, ApiProblems, PROTECTED_ROUTE_ERRORS } from '../common/errors/api-error-responses';
import { NoQueryDto } from '../common/http/no-query';
import { AuditEventPageDto, AuditEventsQueryDto, AuditVerifyDto } from './audit.dto';
import { AuditQueryService } from './audit-query.service';

@ApiTags('audit')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS)
@Controller('audit')
export class AuditController {
  constructor(private readonly audit: AuditQueryService) {}

  /** Audit events, newest first, filtered; within the caller's tenant when its token names one, and then without their place in the hash chains, which span all tenants (no id, writerId, seq, prevHash or hash; an opaque nextCursor). */
  @Get('events')
  @RequirePermission('audit:read', 'audit.events')
  @ApiOkResponse({ type: AuditEventPageDto })
  @ApiProblems(400)
  events(@Query() query: AuditEventsQueryDto, @Req() request: FastifyRequest): Promise<AuditEventPageDto> {
    return this.audit.events(query, principalOf(request));
  }

  /** Recomputes every writer's hash chain, every row of it, and names each chain's first broken link (firstBroken: the first of them), and holds each chain, broken or not, to its anchored head (anchorBreaks: rows cut off, a rewritten chain, an altered anchor line); a token naming a tenant gets 403: the chains span all tenants. */
  @Get('verify')
  @RequirePermission('audit:read', 'audit.verify')
  @ApiOkResponse({ type: AuditVerifyDto })
  @ApiProblems(400)
  @ApiProblemAlso(403, 'Also when the token names a tenant: the hash chains span every tenant')
  verify(@Query() _query: NoQueryDto, @Req() request: FastifyRequest): Promise<AuditVerifyDto> {
    return this.audit.verify(principalOf(request));
  }
}
