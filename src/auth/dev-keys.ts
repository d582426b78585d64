import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { makeDirSync } from '../common/make-dir';
import type { AppConfig } from '../config/app-config';

/** Key id of the development key pair; `npm run token` signs with it. */
export const DEV_KID = 'dev';

export interface DevKeyPaths {
  privateKey: string;
  publicKey: string;
}

export function devKeyPaths(dataDir: string): DevKeyPaths {
  const dir = join(dataDir, 'dev-keys');
  return { privateKey: join(dir, 'dev-es256.private.pem'), publicKey: join(dir, 'dev-es256.public.pem') };
}

/** Creates the development ES256 key pair in the data directory unless it is already there. */
export function ensureDevKeyPair(dataDir: string): DevKeyPaths {
  const paths = devKeyPaths(dataDir);
  if (!existsSync(paths.privateKey) || !existsSync(paths.publicKey)) {
    makeDirSync(join(dataDir, 'dev-keys'), 0o700);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(paths.privateKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(paths.publicKey, publicKey.export({ type: 'spki', format: 'pem' }));
  }
  return paths;
}

export interface DevTokenOptions {
  roles: string[];
  subject: string;
  tenant?: string;
  ttlSeconds: number;
}

/**
 * A token signed with the development key pair in the config's DATA_DIR (made if missing), with
 * the issuer, audience and claim names the gateway under that config expects. `npm run token` and
 * the benchmarks use it; production tokens come from the organisation's identity provider.
 */
export function signDevToken(config: AppConfig, options: DevTokenOptions): string {
  const paths = ensureDevKeyPair(config.DATA_DIR);
  const claims: Record<string, unknown> = {};
  setClaim(claims, config.AUTH_ROLES_CLAIM, options.roles);
  if (options.tenant) setClaim(claims, config.AUTH_TENANT_CLAIM, options.tenant);
  return jwt.sign(claims, readFileSync(paths.privateKey, 'utf8'), {
    algorithm: 'ES256',
    keyid: DEV_KID,
    subject: options.subject,
    issuer: config.AUTH_ISSUER,
    audience: config.AUTH_AUDIENCE,
    expiresIn: options.ttlSeconds,
  });
}

/** `a.b` writes a nested claim, as the verifier reads it. */
function setClaim(claims: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let target = claims;
  for (const part of parts.slice(0, -1)) target = (target[part] ??= {}) as Record<string, unknown>;
  target[parts[parts.length - 1]] = value;
}
