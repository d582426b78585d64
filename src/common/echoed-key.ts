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

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
