import { AppError } from './errors/app-error';

/**
 * ISO 8601 as the gateway reads a time from a client: a date and time always with `Z` or an offset, since
 * one without would be read in the server's own time zone (`Date.parse` takes it as local time), and a
 * year of 4 digits or of 6 with a sign. `new Date` alone also takes `1` as 2001 and `March 7` as a date in 2001.
 */
export const ISO_INSTANT =
  /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/;

/** A query bound: an ISO_INSTANT, or a date alone (midnight UTC). */
export const ISO_TIME_OR_DATE =
  /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2}))?$/;

/** The reason a time without a zone is refused, for the messages that name the field. */
export const NEEDS_ZONE = 'must be an ISO 8601 time with Z or an offset, e.g. 2026-12-05T10:00:00Z';

/** A query's time range: 400 naming `from` when it comes after `to` (either may be absent). */
export function checkTimeRange(from: Date | undefined, to: Date | undefined): void {
  if (from && to && from > to) {
    throw new AppError('VALIDATION_FAILED', 'from must not be after to', {
      fields: [{ field: 'from', reason: 'after to' }],
    });
  }
}
