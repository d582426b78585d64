/**
 * Prints a development token signed with the dev key pair the gateway generates in DATA_DIR:
 *   npm run -s token -- --role risk-engine [--role auditor] [--sub alice] [--tenant bank-a] [--ttl 3600]
 * Only for development: production verifies tokens from the organisation's identity provider.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/app-config';
import { signDevToken } from './dev-keys';
import { tenantRefusal } from './jwt-verifier';
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
  const tenantRefused = values.tenant === undefined ? undefined : tenantRefusal(values.tenant);
  if (tenantRefused !== undefined) throw new Error(`--tenant: the gateway would refuse it (${tenantRefused})`);
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error('--ttl must be a positive number of seconds');
  const token = signDevToken(config, {
    roles,
    subject: values.sub ?? `dev-${roles[0]}`,
    tenant: values.tenant,
    ttlSeconds: ttl,
  });
  process.stdout.write(`${token}\n`);
}

try {
  main();
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}
