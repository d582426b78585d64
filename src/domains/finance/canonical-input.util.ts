import { canonicalJsonBytes } from '../../audit/audit-chain';
import type { AuditInputDigester } from '../../common/access';
import { BeginJsonDigest, digestBegunOf, rawJsonOf } from '../../common/http/raw-json';

/** The canonical bytes (JSON, keys sorted) of a validated request body, for the audit trail's keyed digest. */
export function canonicalBytes(body: unknown): Uint8Array {
  return canonicalJsonBytes(body);
}

/** Keyed digests already worked out, by the parsed body they are of (nothing changes a body once parsed). */
const digests = new WeakMap<object, string>();
/** Digests being worked out on the digest thread (bodyDigestAsync), by body. */
const digesting = new WeakMap<object, Promise<string>>();

/**
 * The keyed digest of a request body's canonical bytes, worked out once per body: a request with an
 * Idempotency-Key needs it for the key's check and again for its audit row, and for a batch it is the
 * largest piece of the request's own work (about 7 ms per 1,000 transactions).
 */
export function bodyDigest(digester: AuditInputDigester, body: unknown): string {
  const memo = typeof body === 'object' && body !== null;
  const known = memo ? digests.get(body) : undefined;
  if (known !== undefined) return known;
  const digest = digester.digest([canonicalBytes(body)]);
  if (memo) digests.set(body, digest);
  return digest;
}

/**
 * bodyDigest, the same answer, worked out on the digest thread from the bytes of a large body the JSON
 * parser kept (rawJsonOf), or begun there before the parse (a route with DIGEST_JSON_BODY): the event
 * loop checks and scores a batch's transactions meanwhile. A body without its bytes, or one already
 * digested, is answered here at once.
 */
export function bodyDigestAsync(digester: AuditInputDigester, body: unknown): Promise<string> {
  const json = rawJsonOf(body);
  if (json === undefined || digests.has(body as object)) return Promise.resolve(bodyDigest(digester, body));
  const key = body as object;
  let pending = digesting.get(key);
  if (!pending) {
    pending = (digestBegunOf(body) ?? digester.digestJson(json, () => canonicalBytes(body))).then((digest) => {
      digests.set(key, digest);
      return digest;
    });
    digesting.set(key, pending);
  }
  return pending;
}

/**
 * For the JSON parser (registerOipBinaryBodies): begins bodyDigestAsync's digest of a large body from its
 * bytes, before the body is parsed.
 */
export function beginBodyDigest(digester: AuditInputDigester): BeginJsonDigest {
  return (bytes, parsed) => digester.digestJson(bytes, () => canonicalBytes(parsed() ?? null));
}
