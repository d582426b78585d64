import { AuditEventEntity } from '../audit/audit-event.entity';
import { IdempotencyKeyEntity } from '../domains/finance/idempotency/idempotency-key.entity';
import { AssetEntity } from '../domains/manufacturing/assets/asset.entity';
import { AlarmEntity } from '../domains/manufacturing/records/alarm.entity';
import { DeadLetterEntity } from '../domains/manufacturing/records/dead-letter.entity';
import { HeldReadingEntity } from '../domains/manufacturing/records/held-reading.entity';
import { OpeningRowEntity } from '../domains/manufacturing/records/opening-row.entity';
import { PredictionEntity } from '../domains/manufacturing/records/prediction.entity';
import { MedicalFindingEntity } from '../domains/medical/findings/medical-finding.entity';

/**
 * Every TypeORM entity, for the gateway's DataSource and the migration CLI alike. The one file of
 * src/database that names tables of the layers above it (the composition root for entities).
 */
export const ENTITIES = [
  AuditEventEntity,
  IdempotencyKeyEntity,
  MedicalFindingEntity,
  AssetEntity,
  PredictionEntity,
  AlarmEntity,
  DeadLetterEntity,
  HeldReadingEntity,
  OpeningRowEntity,
];
