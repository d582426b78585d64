import { AuditEvents1795472127353 } from './1795472127353-AuditEvents';
import { IdempotencyKeys1795475313902 } from './1795475313902-IdempotencyKeys';

/** Every migration, in order. `npm run migrations:generate -- migrations/<Name>` writes a new one; list it here. */
export const MIGRATIONS = [AuditEvents1795472127353, IdempotencyKeys1795475313902];
