import { containsPan } from './pan';
import { storableText } from './storable-text';

/** What an error names a key that looks like a card number by: never the key itself. */
export const CARD_NUMBER_KEY = '(card number)';

const ECHOED_KEY_CHARS = 100;

/**
 * A request key as errors may name it, on every route (the shared ValidationPipe's unknown fields, the fraud routes'
 * compiled schemas, the finance routes' query parameters): one that looks like a card number is not repeated, NUL and
 * lone surrogates become U+FFFD (an answer is kept for its Idempotency-Key, and PostgreSQL refuses them), and a long
 * one is cut between two characters, never between the halves of one (an emoji past U+FFFF): a cut half is a lone
 * surrogate, which the answer sent carried and its kept copy, made storable, replayed as U+FFFD.
 */
export function echoedKey(key: string): string {
  if (containsPan(key)) return CARD_NUMBER_KEY;
  const text = storableText(key);
  if (text.length <= ECHOED_KEY_CHARS) return text;
  const end = isHighSurrogate(text.charCodeAt(ECHOED_KEY_CHARS - 1)) ? ECHOED_KEY_CHARS - 1 : ECHOED_KEY_CHARS;
  return `${text.slice(0, end)}…`;
}

/** The most characters of a header's value a refusal quotes back. */
const ECHOED_HEADER_CHARS = 64;

/**
 * A request header's value (a Content-Type, a charset, a Content-Encoding) as a refusal quotes it: its first 64
 * characters (or `maxChars`), never a card number. One sent in such a header came back in the 415 that named it, which the project
 * never does; it is named CARD_NUMBER_KEY as a key is. The cut text is looked at too: cutting a longer run of digits
 * can leave one that is a card number.
 */
export function echoedHeaderValue(value: string, maxChars = ECHOED_HEADER_CHARS): string {
  const clipped = value.slice(0, maxChars);
  return containsPan(value) || containsPan(clipped) ? CARD_NUMBER_KEY : clipped;
}

/**
 * A request path as a problem's `instance` gives it back: as sent, unless it holds a card number (read with its
 * percent-escapes decoded: `%34111...` is one too). Then each segment that holds one is named CARD_NUMBER_KEY
 * (`/v1/cards/(card number)`); where the card number spans segments (`/4111/1111/1111/1111`), each segment with a
 * digit; and the whole path where even that is not enough (digits NFKC makes of other characters).
 */
export function echoedPath(path: string): string {
  if (!holdsPan(path)) return path;
  const segments = path.split('/');
  const bySegment = segments.map((segment) => (holdsPan(segment) ? CARD_NUMBER_KEY : segment)).join('/');
  if (!holdsPan(bySegment)) return bySegment;
  const byDigit = segments.map((segment) => (/\d/.test(decoded(segment)) ? CARD_NUMBER_KEY : segment)).join('/');
  return holdsPan(byDigit) ? CARD_NUMBER_KEY : byDigit;
}

/** containsPan of a path as sent or with its percent-escapes decoded. */
function holdsPan(path: string): boolean {
  return containsPan(path) || containsPan(decoded(path));
}

/** A path with its percent-escapes decoded, or as it is where they are not UTF-8. */
function decoded(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
