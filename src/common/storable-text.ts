import { ApiProperty } from '@nestjs/swagger';
import { ValidateBy } from 'class-validator';

/**
 * Text as PostgreSQL can store it and as it will read back: NUL (which PostgreSQL refuses in text and
 * jsonb) and lone UTF-16 surrogates (which have no UTF-8 form, so the stored text would differ from
 * the text in hand: a hash over it would not match) become U+FFFD.
 */
export function storableText(value: string): string {
  // eslint-disable-next-line no-control-regex
  return (value.includes('\u0000') ? value.replace(/\u0000/g, '\uFFFD') : value).toWellFormed();
}

/** A JSON value with every key and string made storable (dates and other scalars kept). */
export function storableJson<T>(value: T): T {
  if (typeof value === 'string') return storableText(value) as T;
  if (Array.isArray(value)) return value.map(storableJson) as T;
  if (typeof value !== 'object' || value === null || value instanceof Date) return value;
  const out: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) out[storableText(key)] = storableJson(member);
  return out as T;
}

/**
 * JSON.stringify escapes NUL and lone surrogates as \u0000 and \udXXX: what storableJson mends. Also matches such an
 * escape after an escaped backslash (text that spells one out): that body only takes the slower way.
 */
const UNSTORABLE_ESCAPE = /\\u(?:0000|d[89a-f])/i;

/**
 * The JSON text of storableJson(value), for a JSON column: JSON.stringify(value) itself where that holds
 * nothing to mend, which is almost always (a 1,000-result fraud batch's answer: its copy by storableJson took
 * about a seventh of the event loop's time for a batch with an Idempotency-Key).
 */
export function storableJsonText(value: unknown): string {
  const text = JSON.stringify(value);
  return UNSTORABLE_ESCAPE.test(text) ? JSON.stringify(storableJson(value)) : text;
}

/** Whether PostgreSQL stores the text as it is: no NUL, no lone UTF-16 surrogate. For checks that refuse rather than mend. */
export function isStorableText(value: string): boolean {
  return !value.includes('\u0000') && value.isWellFormed();
}

/**
 * The earliest time the gateway accepts where the database is asked: 1 January 4713 BC (year -4712),
 * just after the start of PostgreSQL's timestamptz range (24 November 4714 BC). JavaScript dates reach
 * further back, and PostgreSQL would refuse them with an error instead of a 400.
 */
export const EARLIEST_STORABLE_TIME = new Date(Date.UTC(-4712, 0, 1));

/** The reason a query gets for a time before EARLIEST_STORABLE_TIME. */
export const BEFORE_EARLIEST_TIME = 'must not be before 4713 BC';

/** The largest value of PostgreSQL's bigint, the type of the row ids that paged answers give as cursors. */
export const MAX_BIGINT = 9223372036854775807n;

/** A row id's digits: a positive integer of at most 19 digits (and, checked apart, at most MAX_BIGINT). */
export const ROW_CURSOR = /^[1-9]\d{0,18}$/;

/** A row id as a cursor (a `nextCursor` the API gave): a positive integer that fits PostgreSQL's bigint. */
export function isRowCursor(value: unknown): value is string {
  return typeof value === 'string' && ROW_CURSOR.test(value) && BigInt(value) <= MAX_BIGINT;
}

/** The reason a query gets for a cursor that is not one. */
export const NOT_A_CURSOR = 'must be a nextCursor returned by this endpoint';

/**
 * A query DTO's `cursor`: a row id this API returned as `nextCursor` (isRowCursor), else NOT_A_CURSOR; documented with
 * ROW_CURSOR's pattern.
 */
export function IsRowCursor(): PropertyDecorator {
  const check = ValidateBy({
    name: 'isRowCursor',
    validator: { validate: isRowCursor, defaultMessage: () => `cursor ${NOT_A_CURSOR}` },
  });
  const doc = ApiProperty({ pattern: ROW_CURSOR.source });
  return (target, property) => {
    check(target, property);
    doc(target, property);
  };
}
