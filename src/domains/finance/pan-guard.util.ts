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
 * integers of 13 to 19 digits. A raw PAN must never reach the gateway's storage or logs. A path is
 * spelt out only for a field that is found (bodies of 10,000 transactions are walked whole).
 */
export function panFields(value: unknown, path = ''): string[] {
  const found: string[] = [];
  const trail: Array<string | number> = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      if (containsPan(v)) found.push(pathOf(path, trail));
    } else if (typeof v === 'number') {
      if (Number.isInteger(v) && Math.abs(v) >= 1e12 && containsPan(String(v))) found.push(pathOf(path, trail));
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        trail.push(i);
        walk(v[i]);
        trail.pop();
      }
    } else if (v !== null && typeof v === 'object') {
      const record = v as Record<string, unknown>;
      for (const key of Object.keys(record)) {
        trail.push(key);
        walk(record[key]);
        trail.pop();
      }
    }
  };
  walk(value);
  return found;
}

function pathOf(root: string, trail: ReadonlyArray<string | number>): string {
  let path = root;
  for (const step of trail) {
    if (typeof step === 'number') path += `[${step}]`;
    else path = path ? `${path}.${step}` : step;
  }
  return path;
}

/** The refusal (422 PAN_DETECTED, each field named) for a body carrying a card number, if it does. */
export function panRefusal(body: unknown): AppError | undefined {
  const fields = panFields(body);
  if (fields.length === 0) return undefined;
  return new AppError('PAN_DETECTED', "a card number is not accepted; send the vault's card token instead", {
    fields: fields.map((field) => ({ field, reason: 'looks like a card number (PAN); never send one' })),
  });
}
