import type { Permission } from '../common/access';

/**
 * Who may do what. A token's roles (claim AUTH_ROLES_CLAIM) grant the union of their permissions;
 * an unknown role grants nothing.
 */
export const ROLE_PERMISSIONS: Readonly<Record<string, readonly Permission[]>> = {
  /** A hospital PACS or modality router posting studies. */
  'pacs-integration': ['medical:infer'],
  /** Reads findings and the models behind them. */
  radiologist: ['medical:infer', 'models:read'],
  /** A bank's risk engine scoring transactions and applications. */
  'risk-engine': ['finance:score'],
  /** Investigates scores and reason codes. */
  'risk-analyst': ['finance:score', 'models:read'],
  /** A plant's SCADA or historian streaming sensor readings. */
  scada: ['manufacturing:ingest'],
  /** Watches asset health and alarms. */
  'plant-operator': ['manufacturing:read'],
  /** Reads and verifies the audit trail (within its tenant when the token names one). */
  auditor: ['audit:read', 'models:read'],
  /** Ships models: metadata and raw inference through the Open Inference Protocol, and watches them run (/metrics). */
  'ml-admin': ['models:read', 'models:admin', 'metrics:read'],
  /** Prometheus or another scraper of /metrics. */
  monitoring: ['metrics:read'],
};

export const ROLES = Object.keys(ROLE_PERMISSIONS);

export function permissionsOf(roles: readonly string[]): Set<Permission> {
  const granted = new Set<Permission>();
  for (const role of roles) {
    if (Object.hasOwn(ROLE_PERMISSIONS, role)) for (const p of ROLE_PERMISSIONS[role]) granted.add(p);
  }
  return granted;
}
