/**
 * The text of a large JSON body, by the object parsed from it: work that needs the body's canonical form
 * (the audit trail's keyed digest of a batch) can read the text again on another thread instead of walking
 * the object on the event loop. Kept only from RAW_JSON_FROM_CHARS characters, and only while the parsed
 * object lives (a WeakMap); the route must not change the object, or the text no longer says what it holds.
 */
const texts = new WeakMap<object, string>();

/** Below this a body's digest on the event loop costs less than handing its text to another thread. */
export const RAW_JSON_FROM_CHARS = 64 * 1024;

export function keepRawJson(parsed: unknown, text: string): void {
  if (text.length >= RAW_JSON_FROM_CHARS && typeof parsed === 'object' && parsed !== null) texts.set(parsed, text);
}

/** The text `body` was parsed from, when the JSON parser kept it. */
export function rawJsonOf(body: unknown): string | undefined {
  return typeof body === 'object' && body !== null ? texts.get(body) : undefined;
}
