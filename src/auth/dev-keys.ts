import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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
    mkdirSync(join(dataDir, 'dev-keys'), { recursive: true, mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(paths.privateKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(paths.publicKey, publicKey.export({ type: 'spki', format: 'pem' }));
  }
  return paths;
}
