import { AuditEvents1795472127353 } from './1795472127353-AuditEvents';
import { IdempotencyKeys1795475313902 } from './1795475313902-IdempotencyKeys';
import { MedicalFindings1795478801694 } from './1795478801694-MedicalFindings';
import { ManufacturingAssets1795481375135 } from './1795481375135-ManufacturingAssets';
import { PredictionsNaturalKey1795486195239 } from './1795486195239-PredictionsNaturalKey';
import { IdempotencyPendingLease1796454952900 } from './1796454952900-IdempotencyPendingLease';
import { IdempotencyAnswerAsSent1796473655000 } from './1796473655000-IdempotencyAnswerAsSent';
import { MedicalFindingsTenant1796475320409 } from './1796475320409-MedicalFindingsTenant';
import { ManufacturingWindowsKept1796542953485 } from './1796542953485-ManufacturingWindowsKept';
import { MedicalFindingsRetention1796552027451 } from './1796552027451-MedicalFindingsRetention';
import { AuditEventsChecks1796565569661 } from './1796565569661-AuditEventsChecks';
import { AuditEventsHashVersion1796574667332 } from './1796574667332-AuditEventsHashVersion';
import { AuditHashCheckCheaper1796575250764 } from './1796575250764-AuditHashCheckCheaper';
import { AuditHashVersionKnown1796585889947 } from './1796585889947-AuditHashVersionKnown';
import { ManufacturingAlarmsAsStreamed1796586086442 } from './1796586086442-ManufacturingAlarmsAsStreamed';
import { ManufacturingAlarmsClosed1796608919378 } from './1796608919378-ManufacturingAlarmsClosed';
import { ManufacturingOpeningRows1796618239720 } from './1796618239720-ManufacturingOpeningRows';
import { ManufacturingAssetIncarnations1796638018646 } from './1796638018646-ManufacturingAssetIncarnations';

/** Every migration, in order. `npm run migrations:generate -- migrations/<Name>` writes a new one; list it here. */
export const MIGRATIONS = [
  AuditEvents1795472127353,
  IdempotencyKeys1795475313902,
  MedicalFindings1795478801694,
  ManufacturingAssets1795481375135,
  PredictionsNaturalKey1795486195239,
  IdempotencyPendingLease1796454952900,
  IdempotencyAnswerAsSent1796473655000,
  MedicalFindingsTenant1796475320409,
  ManufacturingWindowsKept1796542953485,
  MedicalFindingsRetention1796552027451,
  AuditEventsChecks1796565569661,
  AuditEventsHashVersion1796574667332,
  AuditHashCheckCheaper1796575250764,
  AuditHashVersionKnown1796585889947,
  ManufacturingAlarmsAsStreamed1796586086442,
  ManufacturingAlarmsClosed1796608919378,
  ManufacturingOpeningRows1796618239720,
  ManufacturingAssetIncarnations1796638018646,
];
