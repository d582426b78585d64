import { AuditEvents1795472127353 } from './1795472127353-AuditEvents';

/** Every migration, in order. `npm run migrations:generate -- migrations/<Name>` writes a new one; list it here. */
export const MIGRATIONS = [AuditEvents1795472127353];
