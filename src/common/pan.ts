/**
 * Card number (PAN) detection, shared by the finance domain's guard and the request id (a caller's
 * X-Request-Id lands in every log line and audit row, on every route).
 */

/**
 * A run of 13 to 19 digits, as card numbers are written: plain, split by single spaces or dashes
 * anywhere, or in groups split by short runs of other separators (see `grouped`).
 */
const CANDIDATE = /(?<!\d)(?:\d[ \-./_\u00a0]{0,3}){12,18}\d(?!\d)/g;

/** Cheap pre-check: at least 13 digits in a row, allowing separators. */
const QUICK = /\d[\d \-./_\u00a0]{11,}\d/;

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
  // Full-width and other compatibility digits read as the digits they are.
  // eslint-disable-next-line no-control-regex
  if (/[^\u0000-\u007f]/.test(text)) text = text.normalize('NFKC');
  if (!QUICK.test(text)) return false;
  for (const match of text.matchAll(CANDIDATE)) {
    const candidate = match[0];
    const digits = candidate.replace(/\D/g, '');
    if (digits.length < 13 || digits.length > 19 || !luhnValid(digits)) continue;
    if (SIMPLY_SPLIT.test(candidate) || grouped(candidate)) return true;
  }
  return false;
}
