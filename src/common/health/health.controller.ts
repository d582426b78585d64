import { Controller, Get, HttpStatus, Res, VERSION_NEUTRAL } from '@nestjs/common';
import { ApiOkResponse, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { Public } from '../access';
import type { FastifyReply } from 'fastify';
import { ReadinessCheck, ReadinessService } from './readiness.service';

export class LivenessDto {
  status!: 'ok';
}

export class ReadinessDto {
  status!: 'ready' | 'not-ready';
  /** Per component: whether it is ready, and why not. */
  checks!: Record<string, ReadinessCheck>;
}

@ApiTags('health')
@Public()
@Controller({ path: 'health', version: VERSION_NEUTRAL })
export class HealthController {
  constructor(private readonly readiness: ReadinessService) {}

  /** The process is up and its event loop answers. */
  @Get('live')
  @ApiOkResponse({ type: LivenessDto })
  live(): LivenessDto {
    return { status: 'ok' };
  }

  /** Ready to serve: every default model loaded and warm, and not shutting down. */
  @Get('ready')
  @ApiOkResponse({ type: ReadinessDto })
  @ApiServiceUnavailableResponse({ type: ReadinessDto })
  ready(@Res({ passthrough: true }) reply: FastifyReply): ReadinessDto {
    const { ready, checks } = this.readiness.evaluate();
    void reply.status(ready ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE);
    return { status: ready ? 'ready' : 'not-ready', checks };
  }
}
