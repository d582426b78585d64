import { containsPan } from '../pan';
import { AppError } from '../errors/app-error';
import { jsonShape } from './json-depth';

/**
 * Duplicate member names in a JSON object. JSON.parse keeps the last value of a repeated name without a word,
 * so `{"cardToken": "4111 1111 1111 1111", "cardToken": "tok_a"}` was scored as `tok_a`, while a proxy, a WAF or
 * a log in front of the gateway that reads the first value saw another request than the one decided, and the
 * audit digest covered only what was kept. RFC 8259 leaves such objects to each parser; I-JSON (RFC 7493 2.3)
 * forbids them. The gateway refuses them with 400 naming the member.
 *
 * How, at little cost for the bodies that are fine: the member names of the text are counted in one pass over
 * its bytes (a string followed by a colon is a name; the text is known to be valid JSON, so outside strings a
 * quote always opens one), and the parsed value's own keys are counted; they differ exactly when a name was
 * repeated. About 0.7 ms for a batch of 1,000 transactions; only then is the text read again, slowly, to name it.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

/** Member names in a valid JSON text (its UTF-8 bytes): strings followed, after any whitespace, by a colon. */
export function memberNamesIn(bytes: Uint8Array): number {
  let names = 0;
  const n = bytes.length;
  for (let i = 0; i < n; i++) {
    if (bytes[i] !== QUOTE) continue;
    for (i++; i < n; i++) {
      const c = bytes[i];
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) break;
    }
    let k = i + 1;
    while (k < n && (bytes[k] === 0x20 || bytes[k] === 0x0a || bytes[k] === 0x0d || bytes[k] === 0x09)) k++;
    if (bytes[k] === COLON) names++;
    i = k - 1;
  }
  return names;
}

/** Own keys of every object in a parsed JSON value. Iterative: any depth. */
export function keysIn(value: unknown): number {
  return jsonShape(value, Infinity).keys;
}

/**
 * The path (`transactions[3].cardToken`) of the first member whose name its object already has, in a valid JSON
 * text; undefined if none. Slow (a walk by hand), so only for a text memberNamesIn and keysIn disagree on.
 */
export function firstDuplicateMember(text: string): string | undefined {
  let i = 0;
  const space = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const string = (): string => {
    const start = i;
    for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  /** Reads one value at i; returns the duplicate's path within it, if any. */
  const value = (path: string): string | undefined => {
    space();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      space();
      if (text[i] === '}') {
        i++;
        return undefined;
      }
      for (;;) {
        space();
        const name = string();
        const at = path ? `${path}.${name}` : name;
        if (seen.has(name)) return at;
        seen.add(name);
        space();
        i++; // the colon
        const inner = value(at);
        if (inner !== undefined) return inner;
        space();
        if (text[i++] === '}') return undefined;
      }
    }
    if (c === '[') {
      i++;
      space();
      if (text[i] === ']') {
        i++;
        return undefined;
      }
      for (let index = 0; ; index++) {
        const inner = value(`${path}[${index}]`);
        if (inner !== undefined) return inner;
        space();
        if (text[i++] === ']') return undefined;
      }
    }
    if (c === '"') {
      string();
      return undefined;
    }
    while (i < text.length && !',]}'.includes(text[i]) && !' \t\n\r'.includes(text[i])) i++;
    return undefined;
  };
  return value('');
}

export const DUPLICATE_MEMBER_REASON = 'is given twice in the same object (member names must be unique)';

/**
 * The 400 for a parsed JSON body whose text repeated a member name, or undefined when it did not. `text` is read
 * only when one was repeated. A name that looks like a card number is not repeated back. `keys`: keysIn(parsed),
 * when a walk over it (jsonShape) has already counted them.
 */
export function duplicateMemberError(
  bytes: Uint8Array,
  parsed: unknown,
  text: () => string,
  keys = keysIn(parsed),
): AppError | undefined {
  if (memberNamesIn(bytes) === keys) return undefined;
  let field = '(body)';
  let reason = 'has an object with a member name given twice (member names must be unique)';
  try {
    const path = firstDuplicateMember(text().replace(/^\uFEFF/, ''));
    if (path !== undefined && !containsPan(path)) {
      field = path;
      reason = DUPLICATE_MEMBER_REASON;
    }
  } catch {
    // Named as the body's: the counts already told.
  }
  return new AppError('VALIDATION_FAILED', `${field}: ${reason}`, { fields: [{ field, reason }] });
}
