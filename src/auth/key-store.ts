import { createPrivateKey, createPublicKey, createSecretKey, KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/app-config';
import { DEV_KID, ensureDevKeyPair } from './dev-keys';

export type JwtAlgorithm = 'RS256' | 'ES256' | 'HS256';

export interface VerificationKey {
  kid: string | undefined;
  algorithm: JwtAlgorithm;
  key: KeyObject;
}

export class KeyConfigError extends Error {}

const JWKS_RECHECK_MS = 1000;

/**
 * The keys tokens are verified with: PEM files and a JWKS file (RS256/ES256, by kid) and, when
 * enabled, one HS256 secret. The JWKS file is re-read when it changes, so a new key can be added
 * and an old one retired without a restart.
 */
export class KeyStore {
  private readonly logger = new Logger('Auth');
  private readonly allowed: Set<JwtAlgorithm>;
  private pemKeys: VerificationKey[] = [];
  private jwksKeys: VerificationKey[] = [];
  private hmacKey: VerificationKey | undefined;
  private jwksMtimeMs = -1;
  private keysVersion = 0;
  private jwksCheckedAt = 0;

  constructor(private readonly config: AppConfig) {
    this.allowed = new Set(config.AUTH_ALGORITHMS.split(',') as JwtAlgorithm[]);
    if (this.allowed.has('HS256')) {
      if (!config.AUTH_HS256_SECRET)
        throw new KeyConfigError('AUTH_ALGORITHMS has HS256 but AUTH_HS256_SECRET is unset');
      this.hmacKey = {
        kid: undefined,
        algorithm: 'HS256',
        key: createSecretKey(Buffer.from(config.AUTH_HS256_SECRET)),
      };
    }
    for (const entry of (config.AUTH_PUBLIC_KEYS ?? '').split(',').filter((e) => e.trim() !== '')) {
      const [kid, path] = entry.includes('=') ? entry.split('=', 2) : [basename(entry, extname(entry)), entry];
      let pem: string;
      try {
        pem = readFileSync(path.trim(), 'utf8');
      } catch (error) {
        throw new KeyConfigError(
          `AUTH_PUBLIC_KEYS: cannot read ${path.trim()} (${(error as NodeJS.ErrnoException).code})`,
        );
      }
      this.pemKeys.push(this.asymmetric(kid.trim(), pem, `AUTH_PUBLIC_KEYS ${path}`));
    }
    if (config.AUTH_JWKS_FILE) this.reloadJwks(true);
    const configured = this.pemKeys.length > 0 || this.jwksKeys.length > 0 || this.hmacKey !== undefined;
    if (!configured) {
      if (config.NODE_ENV === 'production') {
        throw new KeyConfigError(
          'no token verification keys: set AUTH_PUBLIC_KEYS or AUTH_JWKS_FILE (or AUTH_HS256_SECRET with HS256 in AUTH_ALGORITHMS)',
        );
      }
      const paths = ensureDevKeyPair(config.DATA_DIR);
      this.pemKeys.push(this.asymmetric(DEV_KID, readFileSync(paths.publicKey, 'utf8'), paths.publicKey));
      this.logger.warn({
        msg: 'no keys configured: development key pair in use; `npm run token -- --role <role>` signs tokens for it',
        publicKey: paths.publicKey,
      });
    }
    const usable = [...this.pemKeys, ...this.jwksKeys].filter((k) => this.allowed.has(k.algorithm));
    if (usable.length === 0 && !this.hmacKey) {
      throw new KeyConfigError(`none of the configured keys is usable with AUTH_ALGORITHMS=${config.AUTH_ALGORITHMS}`);
    }
  }

  isAllowed(algorithm: string): algorithm is JwtAlgorithm {
    return this.allowed.has(algorithm as JwtAlgorithm);
  }

  /** Changes whenever the set of keys does (a JWKS file reload). */
  get version(): number {
    return this.keysVersion;
  }

  /** Re-reads the JWKS file if it changed (checked at most once a second). */
  refresh(): void {
    this.reloadJwks(false);
  }

  /** The key for a token header, or undefined (unknown kid, or no key for that algorithm). */
  find(algorithm: JwtAlgorithm, kid: string | undefined): VerificationKey | undefined {
    if (algorithm === 'HS256') return this.hmacKey;
    this.reloadJwks(false);
    const candidates = [...this.pemKeys, ...this.jwksKeys].filter((k) => k.algorithm === algorithm);
    if (kid !== undefined) return candidates.find((k) => k.kid === kid);
    return candidates.length === 1 ? candidates[0] : undefined;
  }

  private reloadJwks(atBoot: boolean): void {
    const path = this.config.AUTH_JWKS_FILE;
    if (!path) return;
    const now = Date.now();
    if (!atBoot && now - this.jwksCheckedAt < JWKS_RECHECK_MS) return;
    this.jwksCheckedAt = now;
    try {
      const mtime = statSync(path).mtimeMs;
      if (mtime === this.jwksMtimeMs) return;
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as { keys?: unknown };
      if (!Array.isArray(parsed.keys)) throw new Error('no "keys" array');
      const keys = parsed.keys.map((jwk: Record<string, unknown>, i) => {
        if (typeof jwk.kid !== 'string') throw new Error(`keys[${i}] has no kid`);
        if (jwk.use !== undefined && jwk.use !== 'sig') throw new Error(`keys[${i}] is not a signing key`);
        if (PRIVATE_JWK_MEMBERS.some((m) => m in jwk)) throw new Error(`keys[${i}] is a private key: ${PUBLIC_ONLY}`);
        return this.asymmetric(jwk.kid, createPublicKey({ key: jwk as never, format: 'jwk' }), `keys[${i}]`);
      });
      this.jwksKeys = keys;
      this.jwksMtimeMs = mtime;
      this.keysVersion++;
      this.logger.log({ msg: 'JWKS loaded', file: path, kids: keys.map((k) => k.kid) });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (atBoot) throw new KeyConfigError(`AUTH_JWKS_FILE ${path}: ${reason}`);
      // Keep serving with the keys already loaded; a half-written file is re-read on the next check.
      this.logger.error({ msg: 'JWKS file unreadable; keeping the previous keys', file: path, reason });
    }
  }

  private asymmetric(kid: string, source: string | KeyObject, where: string): VerificationKey {
    // createPublicKey derives the public half of a private key without a word.
    if (typeof source === 'string' && isPrivateKey(source)) {
      throw new KeyConfigError(`${where}: a private key: ${PUBLIC_ONLY}`);
    }
    let key: KeyObject;
    try {
      key = typeof source === 'string' ? createPublicKey(source) : source;
    } catch (error) {
      throw new KeyConfigError(
        `${where}: not a public key (${error instanceof Error ? error.message : String(error)})`,
      );
    }
    if (key.asymmetricKeyType === 'rsa') {
      if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
        throw new KeyConfigError(`${where}: RSA key under 2048 bits`);
      return { kid, algorithm: 'RS256', key };
    }
    if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
      return { kid, algorithm: 'ES256', key };
    }
    throw new KeyConfigError(`${where}: only RSA (RS256) and EC P-256 (ES256) public keys are supported`);
  }
}

/** Members only a private (or symmetric) JWK has (RFC 7518 6.2.2, 6.3.2, 6.4). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const PUBLIC_ONLY = 'the gateway only verifies tokens and must not hold a signing key; give it the public key alone';

function isPrivateKey(pem: string): boolean {
  try {
    createPrivateKey(pem);
    return true;
  } catch {
    return false;
  }
}
