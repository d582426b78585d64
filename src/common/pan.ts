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
const SEPARATORS: ReadonlySet<number> = new Set([...' \t\n\v\f\r-./:_\u00a0'].map((c) => c.charCodeAt(0)));
/** A stretch of a card number holds at most this many digits, so at most this many runs. */
const MAX_PAN_DIGITS = 19;

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
  return holdsPan(text);
}

const isDigit = (code: number): boolean => code >= 48 && code <= 57;

/** Whether the 1 to 3 characters between two runs of digits (from `end` to `at`) are all separators. */
function joined(text: string, end: number, at: number): boolean {
  if (at - end > 3) return false;
  for (let i = end; i < at; i++) if (!SEPARATORS.has(text.charCodeAt(i))) return false;
  return true;
}

/**
 * Whether some stretch of whole digit runs of a chain (never part of a run: a run longer than 19 digits is no card
 * number) holds 13 to 19 digits that pass Luhn and are written as card numbers are. One pass over the text, each run
 * looked at with the few before it in its chain that a stretch can reach, the Luhn sum carried from run to run: a
 * regular expression over the chains and a list of every run of each took seconds for a few megabytes of `1 1 1 ...`
 * and overflowed the stack on more (a 500 for a body field or key).
 */
function holdsPan(text: string): boolean {
  const runs: Array<{ at: number; end: number }> = [];
  let i = 0;
  while (i < text.length) {
    if (!isDigit(text.charCodeAt(i))) {
      i++;
      continue;
    }
    const at = i;
    while (i < text.length && isDigit(text.charCodeAt(i))) i++;
    if (runs.length > 0 && !joined(text, runs[runs.length - 1].end, at)) runs.length = 0;
    runs.push({ at, end: i });
    if (runs.length > MAX_PAN_DIGITS) runs.shift();
    if (stretchEndingHereIsPan(text, runs)) return true;
  }
  return false;
}

/** Whether a stretch of `runs` that ends with the last one is a card number (chainHoldsPan's check, from the right). */
function stretchEndingHereIsPan(text: string, runs: ReadonlyArray<{ at: number; end: number }>): boolean {
  const last = runs[runs.length - 1];
  let digits = 0;
  let sum = 0;
  let double = false;
  for (let first = runs.length - 1; first >= 0; first--) {
    const run = runs[first];
    digits += run.end - run.at;
    if (digits > MAX_PAN_DIGITS) return false;
    for (let k = run.end - 1; k >= run.at; k--) {
      let d = text.charCodeAt(k) - 48;
      if (double) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
      double = !double;
    }
    if (digits < 13 || sum % 10 !== 0) continue;
    const candidate = text.slice(run.at, last.end);
    if (SIMPLY_SPLIT.test(candidate) || grouped(candidate)) return true;
  }
  return false;
}
