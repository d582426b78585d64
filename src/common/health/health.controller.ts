import { Controller, Get, HttpStatus, Req, Res, VERSION_NEUTRAL } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiSecurity, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { callerOf, Public } from '../access';
import { LivenessDto, ReadinessDto } from './health.dto';
import { publicChecks, ReadinessService } from './readiness.service';

@ApiTags('health')
@Public()
@Controller({ path: 'health', version: VERSION_NEUTRAL })
export class HealthController {
  constructor(private readonly readiness: ReadinessService) {}

  /**
   * The process is up and its event loop answers; 503 once a component can only be brought back by a restart
   * (no inference worker has served for WORKER_OUTAGE_LIVENESS_MS).
   */
  @Get('live')
  @ApiOkResponse({ type: LivenessDto })
  @ApiServiceUnavailableResponse({ type: LivenessDto, description: 'A component only a restart can bring back' })
  live(@Res({ passthrough: true }) reply: FastifyReply): LivenessDto {
    const failing = this.readiness.failingLiveness();
    if (failing.length === 0) return { status: 'ok' };
    void reply.status(HttpStatus.SERVICE_UNAVAILABLE);
    return { status: 'failing', failing };
  }

  /** Ready to serve: every default model loaded and warm, and not shutting down (details with models:read). */
  @Get('ready')
  @Public({ identifies: true })
  // OpenAPI's optional authentication: no requirement at all, or a bearer token.
  @ApiSecurity({})
  @ApiBearerAuth()
  @ApiOkResponse({ type: ReadinessDto })
  @ApiServiceUnavailableResponse({ type: ReadinessDto })
  ready(@Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): ReadinessDto {
    const { ready, checks } = this.readiness.evaluate();
    void reply.status(ready ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE);
    // Public, for probes: each check says only whether it is ready. A bearer token that grants models:read also
    // gets each check's detail; one that does not verify is not refused, it gets the public answer.
    const detailed = callerOf(request)?.permissions.has('models:read') === true;
    return { status: ready ? 'ready' : 'not-ready', checks: detailed ? checks : publicChecks(checks) };
  }
}
