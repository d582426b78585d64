import { createPrivateKey, createPublicKey, createSecretKey, JsonWebKeyInput, KeyObject } from 'node:crypto';
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
  /** Why each member of the JWKS file left out at its last load was (`keys[1] (kid a): ...`). */
  private jwksSkipped: string[] = [];
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
      // The kid ends at the first `=`: `split('=', 2)` dropped what followed a second one, so a path holding `=` was
      // read cut short (a base64-named key file, `kid=/keys/a=b.pem` read as /keys/a).
      const at = entry.indexOf('=');
      const [kid, path] =
        at >= 0 ? [entry.slice(0, at), entry.slice(at + 1)] : [basename(entry, extname(entry)), entry];
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
    if (!configured && config.AUTH_JWKS_FILE) {
      const why = this.jwksSkipped.length > 0 ? ` (${this.jwksSkipped.join('; ')})` : '';
      if (config.NODE_ENV === 'production') {
        throw new KeyConfigError(`AUTH_JWKS_FILE ${config.AUTH_JWKS_FILE}: no key the gateway can use${why}`);
      }
      // Outside production too, the key set named is the one trusted: every token is refused until it has a key the
      // gateway can use (reloaded as it changes), never verified with the development key pair in its place.
      this.logger.warn({
        msg: 'AUTH_JWKS_FILE has no key the gateway can use: every token is refused until it has one',
        file: config.AUTH_JWKS_FILE,
        ...(why ? { skipped: this.jwksSkipped } : {}),
      });
      return;
    }
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

  /**
   * The keys a token header may have been signed with: every key of its algorithm with its kid, in the order
   * configured (AUTH_PUBLIC_KEYS, then the JWKS file), since a set may publish one kid for several keys (an old
   * and a new one during a rotation); without kid, the only key of its algorithm. Empty for an unknown kid.
   */
  candidates(algorithm: JwtAlgorithm, kid: string | undefined): VerificationKey[] {
    if (algorithm === 'HS256') return this.hmacKey ? [this.hmacKey] : [];
    this.reloadJwks(false);
    const ofAlgorithm = [...this.pemKeys, ...this.jwksKeys].filter((k) => k.algorithm === algorithm);
    if (kid !== undefined) return ofAlgorithm.filter((k) => k.kid === kid);
    return ofAlgorithm.length === 1 ? ofAlgorithm : [];
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
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      if (!isRecord(parsed) || !Array.isArray(parsed.keys)) throw new Error('no "keys" array');
      const members: unknown[] = parsed.keys;
      // The whole set is refused for one private key: the file is not one the gateway should have been given.
      const secret = members.findIndex((jwk) => isRecord(jwk) && PRIVATE_JWK_MEMBERS.some((m) => m in jwk));
      if (secret >= 0) throw new Error(`keys[${secret}] is a private key: ${PUBLIC_ONLY}`);
      // RFC 7517 5: a member the gateway cannot use (another use, key type, curve or alg) is ignored, not the set.
      const keys: VerificationKey[] = [];
      const skipped: string[] = [];
      /** Where each kid was found: `AUTH_PUBLIC_KEYS` or `keys[i]`. */
      const kidAt = new Map<string, string[]>();
      const noteKid = (kid: string | undefined, where: string): void => {
        if (kid !== undefined) kidAt.set(kid, [...(kidAt.get(kid) ?? []), where]);
      };
      for (const pem of this.pemKeys) noteKid(pem.kid, 'AUTH_PUBLIC_KEYS');
      for (const [i, jwk] of members.entries()) {
        const key = fromJwk(jwk);
        if (typeof key !== 'string') {
          keys.push(key);
          noteKid(key.kid, `keys[${i}]`);
          continue;
        }
        const kid = isRecord(jwk) && typeof jwk.kid === 'string' ? jwk.kid : undefined;
        skipped.push(`keys[${i}]${kid === undefined ? '' : ` (kid ${kid})`}: ${key}`);
        this.logger.warn({ msg: 'JWKS key skipped', file: path, key: `keys[${i}]`, kid, reason: key });
      }
      // RFC 7517 4.5 asks for distinct kids, but IdPs rotating a key publish the old and the new one under one kid.
      for (const [kid, at] of kidAt) {
        if (at.length < 2 || at.every((where) => where === 'AUTH_PUBLIC_KEYS')) continue;
        this.logger.warn({
          msg: 'JWKS has several keys with one kid: a token with it is verified against each key of its algorithm',
          file: path,
          kid,
          keys: at,
        });
      }
      this.jwksKeys = keys;
      this.jwksSkipped = skipped;
      this.jwksMtimeMs = mtime;
      this.keysVersion++;
      this.logger.log({
        msg: 'JWKS loaded',
        file: path,
        kids: keys.map((k) => k.kid ?? null),
        skipped: skipped.length,
      });
      if (keys.length === 0) {
        this.logger.warn({ msg: 'JWKS has no key the gateway can use: its tokens are refused', file: path });
      }
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (atBoot) throw new KeyConfigError(`AUTH_JWKS_FILE ${path}: ${reason}`);
      // Keep serving with the keys already loaded; a half-written file is re-read on the next check.
      this.logger.error({ msg: 'JWKS file unreadable; keeping the previous keys', file: path, reason });
    }
  }

  private asymmetric(kid: string, pem: string, where: string): VerificationKey {
    // createPublicKey derives the public half of a private key without a word.
    if (isPrivateKey(pem)) throw new KeyConfigError(`${where}: a private key: ${PUBLIC_ONLY}`);
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch (error) {
      throw new KeyConfigError(`${where}: not a public key (${messageOf(error)})`);
    }
    const type = algorithmOf(key);
    if ('unusable' in type) throw new KeyConfigError(`${where}: ${type.unusable}`);
    return { kid, algorithm: type.algorithm, key };
  }
}

/**
 * The key a JWKS member gives, or why the gateway cannot use it: a use other than `sig`, key_ops without
 * `verify`, a key type or curve other than RSA and P-256, or an `alg` other than the one its type is verified
 * with (RFC 7517 4.4, RFC 8725 3.1: an RSA key published for PS256 does not verify RS256). A member without
 * kid is kept, kid-less: it verifies a token without kid when it is the only key of its algorithm, as for
 * AUTH_PUBLIC_KEYS (KeyStore.candidates).
 */
function fromJwk(jwk: unknown): VerificationKey | string {
  if (!isRecord(jwk)) return 'not a JSON object';
  if (jwk.kid !== undefined && (typeof jwk.kid !== 'string' || jwk.kid === '')) return 'kid is not a non-empty string';
  if (jwk.use !== undefined && jwk.use !== 'sig') return `use ${shown(jwk.use)} is not "sig"`;
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
    return `key_ops ${shown(jwk.key_ops)} does not include "verify"`;
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk as JsonWebKeyInput['key'], format: 'jwk' });
  } catch (error) {
    return `not a public key (${messageOf(error)})`;
  }
  const type = algorithmOf(key);
  if ('unusable' in type) return type.unusable;
  if (jwk.alg !== undefined && jwk.alg !== type.algorithm) {
    return `alg ${shown(jwk.alg)} is not ${type.algorithm}, the algorithm the gateway verifies with this key`;
  }
  return { kid: typeof jwk.kid === 'string' ? jwk.kid : undefined, algorithm: type.algorithm, key };
}

/** The algorithm a public key verifies (RSA: RS256, EC P-256: ES256), or why the gateway cannot use it. */
function algorithmOf(key: KeyObject): { algorithm: 'RS256' | 'ES256' } | { unusable: string } {
  if (key.asymmetricKeyType === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return { unusable: 'RSA key under 2048 bits' };
    return { algorithm: 'RS256' };
  }
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    return { algorithm: 'ES256' };
  }
  return { unusable: 'only RSA (RS256) and EC P-256 (ES256) public keys are supported' };
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A JWKS member's value as a log line quotes it: JSON, cut short. */
function shown(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 40 ? `${json.slice(0, 40)}...` : json;
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

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
