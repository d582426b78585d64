/** Everything a caller may be allowed to do. Roles map to these in src/auth/roles.ts. */
export const PERMISSIONS = [
  'medical:infer',
  'finance:score',
  'manufacturing:ingest',
  'manufacturing:read',
  'audit:read',
  'models:read',
  'models:admin',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

/** The verified caller, attached to the request by the auth guard. */
export interface Principal {
  /** `sub` of the token. */
  subject: string;
  roles: string[];
  /** The tenant claim, when the token carries one; it scopes audit queries. */
  tenant?: string;
  permissions: ReadonlySet<Permission>;
}
