/** Everything a caller may be allowed to do. Roles map to these in src/auth/roles.ts. */
export const PERMISSIONS = [
  'medical:infer',
  'finance:score',
  'manufacturing:ingest',
  'manufacturing:read',
  'audit:read',
  'models:read',
  'models:admin',
  'metrics:read',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

/** The verified caller, attached to the request by the auth guard. */
export interface Principal {
  /** `sub` of the token. */
  subject: string;
  /** The token's roles, each once, those the gateway grants permissions to first (the audit row keeps 32). */
  roles: string[];
  /** The tenant claim, when the token carries one; it scopes audit queries. */
  tenant?: string;
  permissions: ReadonlySet<Permission>;
  /**
   * When the token stops being accepted (its `exp` plus AUTH_CLOCK_SKEW_S), in ms since the epoch: a
   * connection it opened (an alarm stream) must not outlive it (untilTokenExpires).
   */
  validUntil: number;
}
