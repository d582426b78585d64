import { ApiProperty } from '@nestjs/swagger';
import { ValidateBy, ValidationArguments } from 'class-validator';
import { AppError } from './errors/app-error';
import { BEFORE_EARLIEST_TIME, EARLIEST_STORABLE_TIME } from './storable-text';

/**
 * ISO 8601 as the gateway reads a time from a client: a date and time always with `Z` or an offset, since
 * one without would be read in the server's own time zone (`Date.parse` takes it as local time), and a
 * year of 4 digits or of 6 with a sign. `new Date` alone also takes `1` as 2001 and `March 7` as a date in 2001.
 * `T` and `Z` may be lower case, as RFC 3339 (5.6) allows. No flags: it is also the OpenAPI document's pattern.
 */
export const ISO_INSTANT =
  /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}[Tt]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})$/;

/** A query bound: an ISO_INSTANT, or a date alone (midnight UTC). */
export const ISO_TIME_OR_DATE =
  /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}(?:[Tt]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2}))?$/;

/** The reason a time without a zone is refused, for the messages that name the field. */
export const NEEDS_ZONE = 'must be an ISO 8601 time with Z or an offset, e.g. 2026-12-05T10:00:00Z';

/** The reason a time of the right form that is not on the calendar or the clock is refused. */
export const NO_SUCH_TIME =
  'must be a date and time that exists: not 2026-02-30, 24:00, a leap second, an offset past 23:59 or the year -000000';

/**
 * The reason for a time that is one with a space where its offset's (or its year's) `+` goes: what a URL query's
 * `+01:00` becomes, as a query reads `+` as a space. Told NEEDS_ZONE alone, a client that sent an offset was told to
 * send one.
 */
export const PLUS_AS_SPACE = `${NEEDS_ZONE}; it has a space where a + sign goes (in a URL query, send + as %2B)`;

/**
 * ISO_TIME_OR_DATE's fields: year, month, day, and hour, minute, second, fraction, offset sign, hours and minutes
 * when given.
 */
const FIELDS =
  /^(\d{4}|[+-]\d{6})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:[Zz]|([+-])(\d{2}):?(\d{2})))?$/;

/** ECMAScript's largest time value (TimeClip): 100,000,000 days either side of 1970. */
const MAX_TIME_MS = 8.64e15;

const DAY_MS = 86_400_000;

/**
 * Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's days_from_civil), for any
 * year: Date.UTC would read years 0-99 as 1900-1999.
 */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

function daysIn(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * Epoch milliseconds of a time `pattern` (ISO_INSTANT or ISO_TIME_OR_DATE) takes, its fraction of a millisecond
 * cut off; NaN for anything else, for a date or time that does not exist (2026-02-30, 24:00, 23:59:60, an offset
 * of +25:00; `Date.parse` reads February 30th as March 2nd and 24:00 as the next day's midnight), for the year
 * -000000 (ECMAScript's date time string format forbids it) and past ECMAScript's range of times. Worked out from
 * the fields, not by `Date.parse`, whose reading of the offset without a colon (`+0100`) and of a lower-case `t`
 * the language leaves to each engine.
 */
export function isoTimeMs(value: unknown, pattern: RegExp = ISO_TIME_OR_DATE): number {
  const time = unclippedMs(value, pattern);
  return Math.abs(time) > MAX_TIME_MS ? NaN : time;
}

/** isoTimeMs before ECMAScript's range is applied (TimeClip): NaN only for what is no time. */
function unclippedMs(value: unknown, pattern: RegExp): number {
  if (typeof value !== 'string' || !pattern.test(value)) return NaN;
  const fields = FIELDS.exec(value);
  if (!fields) return NaN;
  const [, yearText, monthText, dayText, hourText, minuteText, secondText, fraction, sign, offsetH, offsetM] = fields;
  if (yearText === '-000000') return NaN;
  const year = Number(yearText);
  const month = Number(monthText);
  const day = Number(dayText);
  const [hour, minute, second, offsetHours, offsetMinutes] = [hourText, minuteText, secondText, offsetH, offsetM].map(
    (f) => (f === undefined ? 0 : Number(f)),
  );
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return NaN;
  if (hour > 23 || minute > 59 || second > 59 || offsetHours > 23 || offsetMinutes > 59) return NaN;
  const ms = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, '0'));
  const offset = (sign === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  return daysFromCivil(year, month, day) * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + ms - offset;
}

/** The reason a time past ECMAScript's last one (which PostgreSQL would hold, up to 294276 AD) is refused. */
export const AFTER_LATEST_TIME = 'must not be after +275760-09-13T00:00:00Z, the latest time the gateway reads';

/** The earliest time a field takes (a floor set by configuration), as epoch milliseconds and as configured. */
export interface TimeFloor {
  ms: number;
  text: string;
}

/** The times a field takes: from `floor` (set by configuration) to `aheadMs` past the gateway's clock. */
export interface TimeRange {
  floor: TimeFloor;
  aheadMs: number;
}

/**
 * Why a time that passed its field's checks is outside `range`, or undefined; `settings` name the floor's and the
 * allowance's configuration. The floor keeps out the placeholders systems write for "no date" (0001-01-01,
 * 1900-01-01, 1970-01-01), which are times that exist; the ceiling, times that have not come yet.
 */
export function timeRangeRefusal(
  value: unknown,
  pattern: RegExp,
  range: TimeRange,
  settings: { floor: string; ahead: string },
  now: number = Date.now(),
): string | undefined {
  const ms = isoTimeMs(value, pattern);
  if (ms < range.floor.ms) {
    return `must not be before ${range.floor.text} (${settings.floor}): a placeholder date such as 0001-01-01 or 1970-01-01 is not a real time`;
  }
  return ms > now + range.aheadMs
    ? `must not be more than ${range.aheadMs} ms ahead of the gateway's clock (${settings.ahead}): a time that has not come yet`
    : undefined;
}

/** Why a query bound or a field is not a time `pattern` takes that PostgreSQL holds; undefined when it is. */
export function isoTimeRefusal(value: unknown, pattern: RegExp = ISO_TIME_OR_DATE): string | undefined {
  if (typeof value !== 'string') return NEEDS_ZONE;
  if (!pattern.test(value)) return pattern.test(value.replaceAll(' ', '+')) ? PLUS_AS_SPACE : NEEDS_ZONE;
  const ms = unclippedMs(value, pattern);
  if (Number.isNaN(ms)) return NO_SUCH_TIME;
  // A time that exists but lies past ECMAScript's range is told so, not that it does not exist.
  if (ms > MAX_TIME_MS) return AFTER_LATEST_TIME;
  return ms < EARLIEST_STORABLE_TIME.getTime() ? BEFORE_EARLIEST_TIME : undefined;
}

/**
 * A time in a request (a query bound, a reading's timestamp): as `pattern` takes it (ISO_TIME_OR_DATE by default,
 * ISO_INSTANT where a date alone is no answer), on the calendar and the clock, not before what PostgreSQL holds;
 * refused naming the field otherwise. A Date is one a DTO's transform made of a time that passed (isoTimeMs).
 * `pattern` is also the property's pattern in the OpenAPI document, a string there whatever its type here (not
 * `format: date-time`, which takes no date alone and needs the seconds).
 */
export function IsIsoTime(pattern: RegExp = ISO_TIME_OR_DATE): PropertyDecorator {
  const doc = ApiProperty({ type: 'string', pattern: pattern.source });
  const check = ValidateBy({
    name: 'isIsoTime',
    constraints: [pattern],
    validator: {
      validate: (value: unknown) =>
        value instanceof Date ? !Number.isNaN(value.getTime()) : isoTimeRefusal(value, pattern) === undefined,
      defaultMessage: ({ property, value }: ValidationArguments) =>
        `${property} ${isoTimeRefusal(value, pattern) ?? NEEDS_ZONE}`,
    },
  });
  return (target, property) => {
    check(target, property);
    doc(target, property);
  };
}

/** A query's time range: 400 naming `from` when it comes after `to` (either may be absent). */
export function checkTimeRange(from: Date | undefined, to: Date | undefined): void {
  if (from && to && from > to) {
    throw new AppError('VALIDATION_FAILED', 'from must not be after to', {
      fields: [{ field: 'from', reason: 'after to' }],
    });
  }
}
