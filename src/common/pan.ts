/**
 * Card number (PAN) detection, shared by the finance domain's guard and the request id (a caller's
 * X-Request-Id lands in every log line and audit row, on every route).
 */

/** A run of 13 to 19 digits, optionally split by spaces or dashes, as card numbers are written. */
const CANDIDATE = /(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)/g;

/** Cheap pre-check: at least 13 digits in a row, allowing separators. */
const QUICK = /\d[\d -]{11,}\d/;

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

/** Whether a string contains something that looks like a primary account number (PAN). */
export function containsPan(text: string): boolean {
  if (!QUICK.test(text)) return false;
  for (const match of text.matchAll(CANDIDATE)) {
    const digits = match[0].replace(/[ -]/g, '');
    if (digits.length >= 13 && digits.length <= 19 && luhnValid(digits)) return true;
  }
  return false;
}
