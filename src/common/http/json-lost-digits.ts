import { containsPan } from '../pan';

/**
 * Integers a JSON body spells with digits a double cannot keep. JSON.parse reads every number as a double, exact
 * only up to 2^53 (16 digits): a 17 to 19 digit card number sent as a number (`6011000990139000007`, or
 * `6011000990139000007.0`, `6.011000990139000007e18`) came out of the parse with other last digits, so the card
 * number scan, which reads the parsed value, saw digits that fail the Luhn check and let the field through to
 * validation, a log line's neighbour. The digits as sent are read back from the text, only for a body whose parsed
 * value holds such a number (jsonShape's unsafeNumbers), and kept beside the object or array that holds each.
 */

/** Longer integers are no card number; the scan of a text keeps no others. */
const MAX_DIGITS = 19;

/**
 * The digits kept per body: far more than a refusal lists (MAX_FIELD_ERRORS), so a body past it is one built to
 * carry card numbers as numbers. Each kept number cost a Map entry and a string: a body of a million kept a million.
 */
export const MAX_KEPT_DIGITS = 1024;

/**
 * Per object or array of a parsed body, the digits as sent of each member (or index) the parse lost digits of, where
 * they tell the card number scan another verdict than the parsed value does (any other is judged the same by either).
 */
const lost = new WeakMap<object, Map<string | number, string>>();

/**
 * Objects and arrays of a body past MAX_KEPT_DIGITS holding a number whose digits as sent are a card number and
 * whose parsed value is none: one mark for all such numbers of each (not a Map entry and a string for each), read by
 * the scan as "every integer past 2^53 here may be a card number" (unkeptDigitsIn), so that no refusal is lost; a
 * batch item past the cap is refused as before, not scored.
 */
const unkept = new WeakSet<object>();

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
/** What ends a number, `true`, `false` or `null` in a JSON text: a comma, a closing bracket or brace, white space. */
const endsValue = (c: number): boolean => c === 0x2c || c === 0x5d || c === 0x7d || isSpace(c);

const NUMBER = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/**
 * The digits of the integer a JSON number spells exactly, whatever its spelling (`4111111111111111`,
 * `4111111111111111.00`, `4.111111111111111e15`), without its sign; undefined for a number with a fraction, for 0,
 * or for one of more than `maxDigits` digits. Worked out on the text, so no digit is lost on the way.
 */
export function exactIntegerDigits(token: string, maxDigits = MAX_DIGITS): string | undefined {
  const match = NUMBER.exec(token);
  if (!match) return undefined;
  const sent = match[1] + (match[2] ?? '');
  const digits = sent.replace(/^0+/, '');
  // Where the decimal point falls in `digits`: an exponent of any size is a number here, never a loop.
  const point = match[1].length + Number(match[3] ?? 0) - (sent.length - digits.length);
  if (digits === '' || point < 1 || point > maxDigits) return undefined;
  if (/[^0]/.test(digits.slice(point))) return undefined;
  return digits.slice(0, point).padEnd(point, '0');
}

/**
 * Reads a valid JSON text again beside its parsed value and keeps, for each number the value holds with other
 * digits than the text's (past 2^53) that the text spells as an integer of up to 19 digits, the text's digits
 * (lostDigitsOf). A walk by hand, like firstDuplicateMember's: only for a body jsonShape found such a number in.
 * A number that is the whole body has no holder: see keepBodyDigits.
 */
export function noteLostDigits(text: string, parsed: unknown): void {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let kept = 0;
  // Character codes, not one-character strings: a body of a million numbers is read here in well under a second.
  const space = (): void => {
    while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  };
  const skipString = (): number => {
    const start = i;
    for (i++; text.charCodeAt(i) !== QUOTE; i++) if (text.charCodeAt(i) === BACKSLASH) i++;
    i++;
    return start;
  };
  const string = (): string => JSON.parse(text.slice(skipString(), i)) as string;
  /** Reads the value at i, which the parse made `current`, member `key` of `holder`. */
  const value = (current: unknown, holder?: object, key?: string | number): void => {
    space();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      space();
      if (text[i] === close) {
        i++;
        return;
      }
      const node = current as Record<string, unknown> & unknown[];
      for (let index = 0; ; index++) {
        if (close === '}') {
          space();
          const name = string();
          space();
          i++; // the colon
          value(node[name], node, name);
        } else value(node[index], node, index);
        space();
        if (text[i++] === close) return;
      }
    }
    if (c === '"') {
      skipString();
      return;
    }
    const start = i;
    while (i < text.length && !endsValue(text.charCodeAt(i))) i++;
    if (holder === undefined || key === undefined || typeof current !== 'number') return;
    // Past 2^53 and spelt with at least 16 characters: fewer digits a double keeps (String(current) says them).
    if (Number.isSafeInteger(current) || i - start < 16) return;
    const digits = exactIntegerDigits(text.slice(start, i));
    if (digits === undefined || digits === String(Math.abs(current))) return;
    // As panScan reads a number: by its digits as sent if kept, else by String() of its parsed value.
    const sentIsPan = containsPan(digits);
    if (sentIsPan === containsPan(String(current))) return;
    if (kept < MAX_KEPT_DIGITS) {
      kept++;
      lost.set(holder, (lost.get(holder) ?? new Map<string | number, string>()).set(key, digits));
    } else if (sentIsPan) unkept.add(holder);
    // Past the cap, a number whose parsed value reads as a card number and whose digits as sent do not is refused
    // as one: a body of over a thousand such numbers is no transaction nor application.
  };
  value(parsed);
}

/** Per request, the digits as sent of a body that is one number the parse lost digits of. */
const bodies = new WeakMap<object, string>();

/**
 * A body that is itself one number past 2^53 spelt as an integer of up to 19 digits (`6011000990139000007`): it has
 * no holder to keep its digits beside, so they are kept beside `request` (lostBodyDigits), for the card number scan
 * to refuse it as one (it was told `(body): must be object`).
 */
export function keepBodyDigits(request: object, text: string, parsed: unknown): void {
  if (typeof parsed !== 'number' || Number.isSafeInteger(parsed)) return;
  const digits = exactIntegerDigits(text.replace(/^\uFEFF/, '').trim());
  if (digits !== undefined && digits !== String(Math.abs(parsed))) bodies.set(request, digits);
}

/** The digits as sent of `request`'s body, where it is one number the parse lost digits of (keepBodyDigits). */
export function lostBodyDigits(request: object): string | undefined {
  return bodies.get(request);
}

/**
 * The digits as sent of member `key` of `holder` (an object or array of a parsed body), where the parse lost some that
 * tell the card number scan another verdict than its parsed value (and no more than MAX_KEPT_DIGITS per body).
 */
export function lostDigitsOf(holder: object, key: string | number): string | undefined {
  return lost.get(holder)?.get(key);
}

/**
 * Whether `holder` (an object or array of a parsed body) holds a card number sent as a number past 2^53 whose digits
 * were not kept (MAX_KEPT_DIGITS): each of its integers past 2^53 without kept digits is then taken for one.
 */
export function unkeptDigitsIn(holder: object): boolean {
  return unkept.has(holder);
}
