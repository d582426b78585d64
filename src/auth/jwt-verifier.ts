import { Injectable } from '@nestjs/common';
import jwt from 'jsonwebtoken';
import type { Principal } from '../common/access';
import { keysIn, memberNamesIn } from '../common/http/json-duplicate-keys';
import { AppConfig } from '../config/app-config';
import { KeyStore, type VerificationKey } from './key-store';
import { permissionsOf, ROLE_PERMISSIONS } from './roles';

const TOKEN_CACHE_SIZE = 10_000;

/** The audit trail's actor and tenant columns (varchar(256)): a longer identity could not be recorded as it is. */
const MAX_IDENTITY_LENGTH = 256;

/** Why a token was refused: said to the caller and recorded in the audit trail; names no key or secret. */
export class TokenRejected extends Error {}

/**
 * Verifies `Authorization: Bearer` tokens with jsonwebtoken against the KeyStore. The algorithm is
 * pinned twice: the header's `alg` must be in AUTH_ALGORITHMS, and the key found for it must be of
 * that algorithm's type, so a token "signed" with a public key as an HMAC secret never verifies.
 */
@Injectable()
export class JwtVerifier {
  /**
   * Tokens already verified, until they expire: a risk engine sends thousands of requests with one
   * token, and an ES256 or RS256 check per request costs more than the inference it guards.
   * Emptied whenever the key set changes, so a retired key stops working at once.
   */
  private readonly cache = new Map<string, { principal: Principal; exp: number; nbf: number }>();
  private cachedKeysVersion = -1;

  constructor(
    private readonly config: AppConfig,
    private readonly keys: KeyStore,
  ) {}

  verify(token: string): Principal {
    const now = Date.now() / 1000;
    const skew = this.config.AUTH_CLOCK_SKEW_S;
    this.keys.refresh();
    if (this.keys.version !== this.cachedKeysVersion) {
      this.cache.clear();
      this.cachedKeysVersion = this.keys.version;
    }
    const hit = this.cache.get(token);
    if (hit) {
      if (now > hit.exp + skew) {
        this.cache.delete(token);
        throw new TokenRejected('token expired');
      }
      if (now + skew >= hit.nbf) return hit.principal;
    }
    return this.verifyFully(token);
  }

  private remember(token: string, principal: Principal, payload: jwt.JwtPayload): void {
    if (this.cache.size >= TOKEN_CACHE_SIZE) {
      // Drop the oldest entry (Map keeps insertion order).
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(token, { principal, exp: payload.exp ?? 0, nbf: payload.nbf ?? 0 });
  }

  /**
   * The payload of a token whose signature one of the candidates verifies (several when a key set gives one kid
   * to more than one key, as jose's createLocalJWKSet lets a caller try each). A signature is checked before any
   * claim, so a claim is refused only by the key that verified the signature; without one, the signature is.
   */
  private verifiedPayload(token: string, candidates: VerificationKey[]): jwt.JwtPayload {
    let refusal: unknown;
    for (const candidate of candidates) {
      try {
        return jwt.verify(token, candidate.key, {
          algorithms: [candidate.algorithm],
          issuer: this.config.AUTH_ISSUER,
          audience: this.config.AUTH_AUDIENCE,
          clockTolerance: this.config.AUTH_CLOCK_SKEW_S,
        }) as jwt.JwtPayload;
      } catch (error) {
        if (!isBadSignature(error)) throw new TokenRejected(reasonOf(error));
        refusal = error;
      }
    }
    throw new TokenRejected(reasonOf(refusal));
  }

  private verifyFully(token: string): Principal {
    let decoded: jwt.Jwt | null;
    try {
      decoded = jwt.decode(token, { complete: true });
    } catch {
      // jws throws (rather than answering null) for a header of `"typ": "JWT"` over a payload that is not JSON.
      throw new TokenRejected('malformed token');
    }
    // RFC 7519 7.2 (10): the claims set is a JSON object; an array's refusal named the audience it lacked.
    if (!decoded || typeof decoded.payload !== 'object' || decoded.payload === null || Array.isArray(decoded.payload)) {
      throw new TokenRejected('malformed token');
    }
    // RFC 7515 4.1.11: extensions listed in `crit` must be understood, and this verifier understands none.
    if ((decoded.header as { crit?: unknown }).crit !== undefined) {
      throw new TokenRejected('token header crit not supported');
    }
    const { alg, kid } = decoded.header;
    if (!this.keys.isAllowed(alg)) throw new TokenRejected('token algorithm not allowed');
    const candidates = this.keys.candidates(alg, kid);
    if (candidates.length === 0) throw new TokenRejected(kid === undefined ? 'token has no kid' : 'unknown key id');
    const payload = this.verifiedPayload(token, candidates);
    // RFC 7519 4 lets a verifier keep the last of a claim named twice, or refuse the token: refused, as a body naming
    // a member twice is, since a proxy in front that keeps the first `tenant` or `sub` (or the first `alg` of the
    // header) would have read another token than the one decided here.
    if (namesTwice(token, decoded.header, payload)) throw new TokenRejected('token names a claim twice');
    if (typeof payload.exp !== 'number') throw new TokenRejected('token has no exp');
    // JSON reads `1e999` as Infinity, which jsonwebtoken takes as a number: an exp that never comes, an nbf before
    // every time. RFC 7519 2 makes them NumericDates, finite seconds; either out of that is refused.
    if (!Number.isFinite(payload.exp)) throw new TokenRejected('token exp malformed');
    if (payload.nbf !== undefined && !Number.isFinite(payload.nbf)) throw new TokenRejected('token nbf malformed');
    if (typeof payload.sub !== 'string' || payload.sub === '') throw new TokenRejected('token has no sub');
    if (!isRecordableIdentity(payload.sub)) throw new TokenRejected('token sub claim malformed');
    const roles = rolesOf(claim(payload, this.config.AUTH_ROLES_CLAIM));
    // A tenant claim scopes what the caller sees: one that is present but unusable must not read as "no tenant".
    const tenant = claim(payload, this.config.AUTH_TENANT_CLAIM);
    const refusal = tenant === undefined ? undefined : tenantRefusal(tenant);
    if (refusal !== undefined) throw new TokenRejected(refusal);
    const principal: Principal = {
      subject: payload.sub,
      roles,
      ...(tenant !== undefined ? { tenant: tenant as string } : {}),
      permissions: permissionsOf(roles),
      validUntil: (payload.exp + this.config.AUTH_CLOCK_SKEW_S) * 1000,
    };
    this.remember(token, principal, payload);
    return principal;
  }
}

/**
 * Why a tenant claim is refused (the 401's reason), or undefined: the claim scopes what its caller sees, so one that is
 * present but unusable must not read as "no tenant", nor two spellings of one name as two tenants. Shared with
 * `npm run token`, which refuses to print a token the gateway would refuse.
 */
export function tenantRefusal(tenant: unknown): string | undefined {
  if (!(isRecordableIdentity(tenant) && isWellFormed(tenant))) return 'token tenant claim malformed';
  // NFC and NFD spell one name two ways (`café` as é, or as e and a combining acute): compared as stored, they
  // would be two tenants, each with its own rows, cursors and findings. Recorded as stated, so refused, not mapped.
  // `bank-a ` is shown as `bank-a` and was another tenant; a tenant of spaces alone (an IdP mapping with nothing to
  // fill in) put every token given it in one tenant, each reading the others' rows, where an empty one is refused.
  if (INVISIBLE_EDGE.test(tenant))
    return 'token tenant claim starts or ends with white space or an invisible character';
  if (tenant.normalize('NFC') !== tenant) return 'token tenant claim not in Unicode normalization form C (NFC)';
  return undefined;
}

/**
 * An identity the audit trail records and filters on exactly as the token states it: a non-empty
 * string that fits its column, with no control characters (PostgreSQL refuses NUL in text).
 */
function isRecordableIdentity(value: unknown): value is string {
  return typeof value === 'string' && value !== '' && value.length <= MAX_IDENTITY_LENGTH && !/\p{Cc}/u.test(value);
}

/**
 * No lone surrogate (a JSON `\ud800` escape): the database stores one as U+FFFD, as it does every caller string
 * (storable-text.ts), so `bank-\ud800`, `bank-\udc00` and `bank-\ufffd` would be one tenant there, each reading the
 * others' audit rows and opening their sealed cursors (whose key binds the tenant's UTF-8 form). The sub may hold
 * one: it only labels a row, and is kept apart where it counts (idempotency scopes, rate limits key it as JSON).
 */
const LONE_SURROGATE = /\p{Cs}/u;

/** White space (Unicode's, U+FEFF included) or a format character (U+200B, U+2060) at either end. */
const INVISIBLE_EDGE = /^[\s\p{Cf}]|[\s\p{Cf}]$/u;
const isWellFormed = (value: string): boolean => !LONE_SURROGATE.test(value);

/** Whether the token's header or claims set, as sent (base64url JSON), names a member twice in one object. */
function namesTwice(token: string, header: object, payload: object): boolean {
  const [headerText, payloadText] = token.split('.', 2).map((segment) => Buffer.from(segment, 'base64url'));
  return memberNamesIn(headerText) !== keysIn(header) || memberNamesIn(payloadText) !== keysIn(payload);
}

const isBadSignature = (error: unknown): boolean => error instanceof Error && error.message === 'invalid signature';

const JWT_REFUSALS: Readonly<Record<string, string>> = {
  /** exp not a number (`"99999999999"`, `null`, `true`). */
  'invalid exp value': 'token exp malformed',
  'invalid nbf value': 'token nbf malformed',
  /** `header.payload.` with nothing after the last dot. */
  'jwt signature is required': 'token has no signature',
  'jwt malformed': 'malformed token',
};

function reasonOf(error: unknown): string {
  if (error instanceof jwt.TokenExpiredError) return 'token expired';
  if (error instanceof jwt.NotBeforeError) return 'token not yet valid';
  const message = error instanceof Error ? error.message : '';
  if (message.startsWith('jwt audience invalid')) return 'token audience not accepted';
  if (message.startsWith('jwt issuer invalid')) return 'token issuer not accepted';
  if (message === 'invalid signature') return 'invalid signature';
  // What jsonwebtoken says of a claim or part it cannot read, in the words the verifier's own checks use: each was
  // `invalid token`, which told an integrator nothing of what to fix.
  return JWT_REFUSALS[message] ?? 'invalid token';
}

/**
 * The claim named `name`: the payload's own member of that name first, so that a collision-resistant name
 * (RFC 7519 4.2: `https://bank.example/tenant`, as Auth0 requires for custom claims) is read whole; only
 * without one does `a.b` reach into nested claims (Keycloak's `realm_access.roles`).
 */
function claim(payload: jwt.JwtPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let value: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/**
 * The token's roles, each once, those the gateway knows (ROLE_PERMISSIONS) first: the audit row keeps a token's
 * first 32 roles, and an identity provider that puts every group of a user in the claim listed 40 groups before
 * `auditor`, so the row of a read it granted named no role that grants it.
 */
function rolesOf(value: unknown): string[] {
  let roles: string[] = [];
  if (Array.isArray(value)) roles = value.filter((r): r is string => typeof r === 'string');
  else if (typeof value === 'string') roles = value.split(' ').filter((r) => r !== '');
  const unique = [...new Set(roles)];
  const known = (role: string): boolean => Object.hasOwn(ROLE_PERMISSIONS, role);
  return [...unique.filter(known), ...unique.filter((role) => !known(role))];
}
