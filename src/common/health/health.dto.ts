import { ApiExtraModels, ApiProperty, getSchemaPath } from '@nestjs/swagger';

export class LivenessDto {
  @ApiProperty({ enum: ['ok', 'failing'] })
  status!: 'ok' | 'failing';
  /** With `failing`: the components that only a restart can bring back (`models`: no inference worker for WORKER_OUTAGE_LIVENESS_MS). */
  failing?: string[];
}

/** One component's readiness, as /health/ready shows it. */
export class ReadinessCheckDto {
  ready!: boolean;
  /**
   * Only to a bearer token that grants models:read: what the component reports (models and versions, workers,
   * why it is not ready).
   */
  @ApiProperty({ required: false, oneOf: [{ type: 'object' }, { type: 'string' }] })
  detail?: unknown;
}

@ApiExtraModels(ReadinessCheckDto)
export class ReadinessDto {
  @ApiProperty({ enum: ['ready', 'not-ready'] })
  status!: 'ready' | 'not-ready';
  /**
   * Per component (database, models, audit, mqtt, alarm-notifications, shutdown): whether it is ready; with a bearer token that grants
   * models:read, also its detail (models and versions, workers, why it is not ready).
   */
  @ApiProperty({ type: 'object', additionalProperties: { $ref: getSchemaPath(ReadinessCheckDto) } })
  checks!: Record<string, ReadinessCheckDto>;
}
