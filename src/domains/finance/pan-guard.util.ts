import { AppError } from '../../common/errors/app-error';

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

/**
 * Paths of every field in a request body whose value looks like a card number: strings, and
 * integers of 13 to 19 digits. A raw PAN must never reach the gateway's storage or logs.
 */
export function panFields(value: unknown, path = ''): string[] {
  if (typeof value === 'string') return containsPan(value) ? [path] : [];
  if (typeof value === 'number') {
    return Number.isInteger(value) && Math.abs(value) >= 1e12 && containsPan(String(value)) ? [path] : [];
  }
  if (Array.isArray(value)) return value.flatMap((v, i) => panFields(v, `${path}[${i}]`));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => panFields(v, path ? `${path}.${k}` : k));
  }
  return [];
}

/** The refusal (422 PAN_DETECTED, each field named) for a body carrying a card number, if it does. */
export function panRefusal(body: unknown): AppError | undefined {
  const fields = panFields(body);
  if (fields.length === 0) return undefined;
  return new AppError('PAN_DETECTED', "a card number is not accepted; send the vault's card token instead", {
    fields: fields.map((field) => ({ field, reason: 'looks like a card number (PAN); never send one' })),
  });
}
