/**
 * Card number (PAN) detection, shared by the finance domain's guard and the request id (a caller's
 * X-Request-Id lands in every log line and audit row, on every route).
 */

/**
 * Digits as card numbers are written: runs of digits split by up to three separators (spaces, tabs and line
 * breaks, dashes, dots, slashes, colons, underscores, no-break spaces). A card number is any stretch of whole runs
 * of such a chain with 13 to 19 digits (see containsPan), so that one written beside other digits (an expiry date, a
 * CVV, a reference) is found too.
 */
const CHAIN = /\d+(?:[ \t\n\v\f\r\-./:_\u00a0]{1,3}\d+)*/g;
const RUN = /\d+/g;

/** Cheap pre-check: at least 13 digits in a row, allowing separators. */
const QUICK = /\d[\d \t\n\v\f\r\-./:_\u00a0]{11,}\d/;

/**
 * Characters NFKC leaves as they are that still print as a gap or as nothing between digits: spaces and line or
 * paragraph separators (U+1680, U+2028, ...) and format characters (a zero-width space, a soft hyphen, a word
 * joiner, a BOM). Read as a space, so a card number split by them is written in groups as any other.
 */
const INVISIBLE_OR_SPACE = /[\p{Z}\p{Cf}]/gu;
/**
 * Dashes NFKC leaves as they are (U+2010 hyphen, U+2011 non-breaking hyphen, U+2012 figure dash, U+2013 en dash,
 * U+2014 em dash, U+2015, the minus sign U+2212, ...): a word processor or a form's autocorrect writes `4111–1111`
 * for `4111-1111`. Read as a dash, so a card number split by them is found as one split by dashes.
 */
const OTHER_DASH = /[\p{Pd}\u2212]/gu;
/** Decimal digits of other scripts (Arabic-Indic, Devanagari, ...), which NFKC does not turn into ASCII ones. */
const OTHER_DIGIT = /[^\d\P{Nd}]/gu;
const DECIMAL_DIGIT = /^\p{Nd}$/u;

/**
 * The ASCII digit a decimal digit of another script stands for: Unicode gives each script's digits as runs of ten
 * code points, 0 to 9 (a run of twenty, U+116D0, is two such), so its value is its distance from the run's start.
 */
function asciiDigit(digit: string): string {
  const code = digit.codePointAt(0) ?? 0;
  let start = code;
  while (DECIMAL_DIGIT.test(String.fromCodePoint(start - 1))) start--;
  return String((code - start) % 10);
}

/** Plain digits, or digits split by single spaces or dashes (the forms people and terminals type). */
const SIMPLY_SPLIT = /^\d+(?:[ -]\d+)*$/;

/**
 * Digits in the groups a card number is printed in: fours (the last group may be shorter), or an Amex's
 * 4-6-5. Other separators (dots, slashes, underscores, several spaces) count only there, so that a time
 * such as `05.12.2026 10.00.00` is not taken for a card number.
 */
function grouped(candidate: string): boolean {
  const groups = candidate.split(/\D+/);
  if (groups.length === 3 && groups[0].length === 4 && groups[1].length === 6 && groups[2].length === 5) return true;
  return (
    groups.length >= 3 && groups.slice(0, -1).every((g) => g.length === 4) && groups[groups.length - 1].length <= 4
  );
}

/** The Luhn checksum every payment card number satisfies. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** Shorter text cannot hold 13 digits, whatever its characters (see containsPan). */
export const MIN_PAN_TEXT_LENGTH = 5;

/** Whether a string contains something that looks like a primary account number (PAN). */
export function containsPan(text: string): boolean {
  // 13 digits need at least 5 UTF-16 code units even after NFKC: no character gives more than three
  // (U+2152 VULGAR FRACTION ONE TENTH is "1⁄10"). Most keys and codes of a request are this short.
  if (text.length < MIN_PAN_TEXT_LENGTH) return false;
  // Full-width and other compatibility digits, and other scripts' digits, read as the digits they are; a gap
  // that is not ASCII as a space, a dash that is not ASCII as `-`.
  // eslint-disable-next-line no-control-regex
  if (/[^\u0000-\u007f]/.test(text)) {
    text = text
      .normalize('NFKC')
      .replace(INVISIBLE_OR_SPACE, ' ')
      .replace(OTHER_DASH, '-')
      .replace(OTHER_DIGIT, asciiDigit);
  }
  if (!QUICK.test(text)) return false;
  for (const chain of text.matchAll(CHAIN)) {
    if (chain[0].length >= 13 && chainHoldsPan(chain[0])) return true;
  }
  return false;
}

/**
 * Whether some stretch of whole digit runs of `chain` (never part of a run: a run longer than 19 digits
 * is no card number) holds 13 to 19 digits that pass Luhn and are written as card numbers are.
 */
function chainHoldsPan(chain: string): boolean {
  const runs = [...chain.matchAll(RUN)].map((m) => ({ at: m.index, end: m.index + m[0].length, digits: m[0] }));
  for (let first = 0; first < runs.length; first++) {
    let digits = '';
    for (let last = first; last < runs.length; last++) {
      digits += runs[last].digits;
      if (digits.length > 19) break;
      if (digits.length < 13 || !luhnValid(digits)) continue;
      const candidate = chain.slice(runs[first].at, runs[last].end);
      if (SIMPLY_SPLIT.test(candidate) || grouped(candidate)) return true;
    }
  }
  return false;
}
