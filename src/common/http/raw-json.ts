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

/** `bytes` must not change afterwards (Fastify's JSON body buffer is a copy of what was read, kept by no one else). */
export function keepRawJson(parsed: unknown, bytes: Buffer): void {
  if (bytes.length >= RAW_JSON_FROM_BYTES && typeof parsed === 'object' && parsed !== null) bodies.set(parsed, bytes);
}

/** The bytes `body` was parsed from, when the JSON parser kept them. */
export function rawJsonOf(body: unknown): Buffer | undefined {
  return typeof body === 'object' && body !== null ? bodies.get(body) : undefined;
}
