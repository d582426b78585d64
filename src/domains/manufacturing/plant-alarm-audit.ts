import { randomUUID } from 'node:crypto';
import { Injectable, OnModuleInit } from '@nestjs/common';
import { AuditUnavailable, AuditWriter } from '../../audit/audit-writer.service';
import { PlantStream } from './plant-stream.service';

/**
 * One audit row per alarm raised or cleared (the decision a plant acts on), committed before the alarm is stored,
 * published or streamed: while the audit trail cannot be written, no alarm takes effect (its reading is kept and
 * predicted again, and the caller told 503 AUDIT_UNAVAILABLE). Per-reading predictions
 * are counted in metrics and kept in the predictions table, not audited row by row: at thousands of
 * readings a second the trail would be the bottleneck and hold nothing a reviewer reads.
 */
@Injectable()
export class PlantAlarmAudit implements OnModuleInit {
  constructor(
    private readonly stream: PlantStream,
    private readonly audit: AuditWriter,
  ) {}

  onModuleInit(): void {
    this.stream.auditAlarms(async (event) => {
      await this.audit
        .record({
          occurredAt: new Date(),
          actor: 'gateway:manufacturing',
          roles: [],
          tenant: null,
          action: event.state === 'raised' ? 'manufacturing.alarm-raised' : 'manufacturing.alarm-cleared',
          modelName: event.model.name,
          modelVersion: event.model.version,
          requestId: randomUUID(),
          clientAddress: '',
          inputDigest: null,
          outputSummary: { ...event },
          outcome: 'ok',
          statusCode: 200,
          latencyMs: 0,
        })
        .catch((error: unknown) => {
          if (!(error instanceof AuditUnavailable)) throw error;
          throw error.answer("the alarm's audit row");
        });
    });
  }
}
