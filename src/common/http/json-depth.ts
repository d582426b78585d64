import { AppError } from '../errors/app-error';

/**
 * How deeply a JSON body may nest arrays and objects. The deepest body a route reads is an Open
 * Inference Protocol tensor written as nested arrays (a handful of levels); the code that walks a
 * body (the card-number scan, the audit digest's canonical form, class-transformer) recurses, and
 * a body of tens of thousands of levels would overflow its stack.
 */
export const MAX_JSON_DEPTH = 64;

/** What one walk over a parsed JSON value finds: its depth against a limit, and its objects' own keys. */
export interface JsonShape {
  /** Nests arrays and objects more than the limit deep (the walk stopped there: `keys` is then partial). */
  tooDeep: boolean;
  /** Own keys of every object in the value (compared with the member names of its text: json-duplicate-keys). */
  keys: number;
  /**
   * Holds a number past Number.MAX_SAFE_INTEGER either way, whose digits as sent a double may not keep (a card number
   * of 17-19 digits: json-lost-digits reads them from the text). Counted only as far as the walk went.
   */
  unsafeNumbers: boolean;
}

/** Whether a JSON value is a number a double may hold with other digits than were sent. */
function unsafeNumber(value: unknown): boolean {
  return typeof value === 'number' && (value > Number.MAX_SAFE_INTEGER || value < -Number.MAX_SAFE_INTEGER);
}

/**
 * Whether a parsed JSON value nests arrays and objects more than `max` levels deep (a scalar is at level 0,
 * the members of a top-level object at level 1), how many keys its objects have, and whether it holds an unsafe
 * number, in one walk: the JSON parser needs all three for every body. Iterative, so no body can overflow it.
 */
export function jsonShape(value: unknown, max: number): JsonShape {
  if (typeof value !== 'object' || value === null)
    return { tooDeep: false, keys: 0, unsafeNumbers: unsafeNumber(value) };
  let keys = 0;
  let unsafeNumbers = false;
  const stack: object[] = [value];
  const levels: number[] = [1];
  while (stack.length > 0) {
    const node = stack.pop()!;
    const level = levels.pop()!;
    if (level > max) return { tooDeep: true, keys, unsafeNumbers };
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const item: unknown = node[i];
        if (typeof item === 'object' && item !== null) {
          stack.push(item);
          levels.push(level + 1);
        } else if (unsafeNumber(item)) unsafeNumbers = true;
      }
      continue;
    }
    for (const key in node) {
      keys++;
      const member = (node as Record<string, unknown>)[key];
      if (typeof member === 'object' && member !== null) {
        stack.push(member);
        levels.push(level + 1);
      } else if (unsafeNumber(member)) unsafeNumbers = true;
    }
  }
  return { tooDeep: false, keys, unsafeNumbers };
}

/** Whether a parsed JSON value nests arrays and objects more than `max` levels deep (jsonShape). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  return jsonShape(value, max).tooDeep;
}

/** Why a value nested deeper than MAX_JSON_DEPTH is refused (an HTTP body, an MQTT message). */
export const TOO_DEEP_REASON = `nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`;

/** The 400 for a body nested deeper than MAX_JSON_DEPTH. */
export function tooDeepError(field = '(body)'): AppError {
  return new AppError('VALIDATION_FAILED', `${field}: ${TOO_DEEP_REASON}`, {
    fields: [{ field, reason: TOO_DEEP_REASON }],
  });
}
