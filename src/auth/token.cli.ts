/**
 * Prints a development token signed with the dev key pair the gateway generates in DATA_DIR:
 *   npm run -s token -- --role risk-engine [--role auditor] [--sub alice] [--tenant bank-a] [--ttl 3600]
 * Only for development: production verifies tokens from the organisation's identity provider.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import jwt from 'jsonwebtoken';
import { loadConfig } from '../config/app-config';
import { DEV_KID, ensureDevKeyPair } from './dev-keys';
import { ROLES } from './roles';

function main(): void {
  const { values } = parseArgs({
    options: {
      role: { type: 'string', multiple: true },
      sub: { type: 'string' },
      tenant: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
    },
  });
  const config = loadConfig();
  if (config.NODE_ENV === 'production') throw new Error('npm run token is for development; NODE_ENV is production');
  const roles = values.role ?? [];
  const unknown = roles.filter((r) => !ROLES.includes(r));
  if (roles.length === 0 || unknown.length > 0) {
    throw new Error(
      `--role must be one or more of: ${ROLES.join(', ')}${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`,
    );
  }
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error('--ttl must be a positive number of seconds');
  const paths = ensureDevKeyPair(config.DATA_DIR);
  const claims: Record<string, unknown> = {};
  setClaim(claims, config.AUTH_ROLES_CLAIM, roles);
  if (values.tenant) setClaim(claims, config.AUTH_TENANT_CLAIM, values.tenant);
  const token = jwt.sign(claims, readFileSync(paths.privateKey, 'utf8'), {
    algorithm: 'ES256',
    keyid: DEV_KID,
    subject: values.sub ?? `dev-${roles[0]}`,
    issuer: config.AUTH_ISSUER,
    audience: config.AUTH_AUDIENCE,
    expiresIn: ttl,
  });
  process.stdout.write(`${token}\n`);
}

/** `a.b` writes a nested claim, as the verifier reads it. */
function setClaim(claims: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let target = claims;
  for (const part of parts.slice(0, -1)) target = (target[part] ??= {}) as Record<string, unknown>;
  target[parts[parts.length - 1]] = value;
}

try {
  main();
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}
