/**
 * The bytes of a large JSON body, by the object parsed from them: work that needs the body's canonical form
 * (the audit trail's keyed digest of a batch) can read them again on another thread instead of walking the
 * object on the event loop. Kept only from RAW_JSON_FROM_BYTES bytes, and only while the parsed object
 * lives (a WeakMap); the route must not change the object, or the bytes no longer say what it holds. The
 * bytes rather than the text: a large body is parsed without decoding it into one string (json-in-pieces).
 */
const bodies = new WeakMap<object, Buffer>();

/** Below this a body's digest on the event loop costs less than handing its bytes to another thread. */
export const RAW_JSON_FROM_BYTES = 64 * 1024;

/** Digests of large bodies begun from their bytes before the parse (see DIGEST_JSON_BODY), by the parsed object. */
const digestsBegun = new WeakMap<object, Promise<string>>();

/**
 * Fastify route config key (@AddRouteConfig({ [DIGEST_JSON_BODY]: true })) of a route that digests
 * its whole JSON body for the audit trail (bodyDigestAsync): a large body's digest is begun on the
 * digest thread as soon as its bytes have arrived, while the event loop parses them, so that it is done
 * before the model runs instead of taking a core from it (or, with an Idempotency-Key, before the
 * key's check needs it).
 */
export const DIGEST_JSON_BODY = 'digestJsonBody';

/**
 * Begins a body's digest from its bytes; `parsed()` is the parsed body once there is one (the digest's
 * fallback should the digest thread fail).
 */
export type BeginJsonDigest = (bytes: Buffer, parsed: () => unknown) => Promise<string>;

/** `bytes` must not change afterwards (Fastify's JSON body buffer is a copy of what was read, kept by no one else). */
export function keepRawJson(parsed: unknown, bytes: Buffer, digest?: Promise<string>): void {
  if (bytes.length < RAW_JSON_FROM_BYTES || typeof parsed !== 'object' || parsed === null) return;
  bodies.set(parsed, bytes);
  if (digest) digestsBegun.set(parsed, digest);
}

/** Whether a body of this size to this route has its digest begun before the parse. */
export function digestsBodyEarly(routeConfig: unknown, bytes: Buffer): boolean {
  return (
    bytes.length >= RAW_JSON_FROM_BYTES &&
    typeof routeConfig === 'object' &&
    routeConfig !== null &&
    (routeConfig as Record<string, unknown>)[DIGEST_JSON_BODY] === true
  );
}

/** The digest begun from `body`'s bytes before it was parsed, if one was. */
export function digestBegunOf(body: unknown): Promise<string> | undefined {
  return typeof body === 'object' && body !== null ? digestsBegun.get(body) : undefined;
}

/** The bytes `body` was parsed from, when the JSON parser kept them. */
export function rawJsonOf(body: unknown): Buffer | undefined {
  return typeof body === 'object' && body !== null ? bodies.get(body) : undefined;
}
