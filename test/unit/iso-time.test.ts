import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AFTER_LATEST_TIME,
  ISO_INSTANT,
  isoTimeMs,
  isoTimeRefusal,
  NEEDS_ZONE,
  NO_SUCH_TIME,
  PLUS_AS_SPACE,
} from '../../src/common/iso-time';
import { BEFORE_EARLIEST_TIME } from '../../src/common/storable-text';

describe('ISO 8601 times from clients', () => {
  it('reads a time or a date with its zone, to the millisecond', () => {
    assert.equal(isoTimeMs('2026-11-23'), Date.UTC(2026, 10, 23));
    assert.equal(isoTimeMs('2026-11-23T10:00+0100'), Date.UTC(2026, 10, 23, 9));
    assert.equal(isoTimeMs('2026-11-23T10:00:00.123456789Z'), Date.UTC(2026, 10, 23, 10, 0, 0, 123));
    assert.equal(isoTimeMs('+002028-02-29T23:59:59Z'), Date.UTC(2028, 1, 29, 23, 59, 59));
    assert.equal(isoTimeMs('2000-02-29'), Date.UTC(2000, 1, 29));
    assert.ok(Number.isNaN(isoTimeMs('2026-11-23', ISO_INSTANT)), 'a date alone is no instant');
  });

  it('takes a lower-case t and z, as RFC 3339 (5.6) allows', () => {
    assert.equal(isoTimeMs('2026-11-23t10:00:00z', ISO_INSTANT), Date.UTC(2026, 10, 23, 10));
    assert.equal(isoTimeMs('2026-11-23t10:00:00.5+01:00'), Date.UTC(2026, 10, 23, 9, 0, 0, 500));
    assert.equal(isoTimeMs('+002028-02-29t23:59z'), Date.UTC(2028, 1, 29, 23, 59));
    assert.ok(Number.isNaN(isoTimeMs('2026-02-30t10:00:00z')), 'not on the calendar in lower case either');
  });

  it('refuses a date or time that does not exist rather than rolling it into the next', () => {
    // Date.parse reads these as March 2nd, March 1st, and the next day's midnight.
    for (const time of [
      '2026-02-30',
      '2100-02-29',
      '2026-04-31T10:00:00+02:00',
      '2026-12-31T24:00Z',
      '2026-12-31T24:00:00Z',
      '2016-12-31T23:59:60Z',
      '2026-00-10',
      '2026-11-23T10:00:00+25:00',
    ]) {
      assert.ok(Number.isNaN(isoTimeMs(time)), time);
      assert.equal(isoTimeRefusal(time), NO_SUCH_TIME, time);
    }
  });

  it('works the time out from its fields, for offsets without a colon and years out of the usual range', () => {
    assert.equal(isoTimeMs('2026-11-23T10:00-0130'), Date.UTC(2026, 10, 23, 11, 30));
    assert.equal(isoTimeMs('2026-11-23t10:00:00.999999z'), Date.UTC(2026, 10, 23, 10, 0, 0, 999));
    // Date.UTC reads the years 0-99 as 1900-1999; setUTCFullYear does not.
    assert.equal(isoTimeMs('0099-12-31T23:59:59.999Z'), new Date(0).setUTCFullYear(99, 11, 31) + 86_400_000 - 1);
    assert.equal(isoTimeMs('+000000-01-01T00:00Z'), new Date(0).setUTCFullYear(0, 0, 1));
    assert.equal(isoTimeMs('-000004-02-29'), new Date(0).setUTCFullYear(-4, 1, 29), 'a leap year before year 0');
    // The ends of ECMAScript's range of times, an offset taking a time back inside it.
    assert.equal(isoTimeMs('+275760-09-13T00:00:00Z'), 8.64e15);
    assert.equal(isoTimeMs('+275760-09-13T01:00:00+02:00'), 8.64e15 - 3_600_000);
    assert.ok(Number.isNaN(isoTimeMs('+275760-09-13T00:00:00.001Z')));
    assert.ok(Number.isNaN(isoTimeMs('-271821-04-19T23:59:59.999Z')));
  });

  it('refuses the year -000000, which Date.parse read as 2001', () => {
    assert.ok(Number.isNaN(isoTimeMs('-000000-01-01')));
    assert.ok(Number.isNaN(isoTimeMs('-000000-03-21T10:00:00Z', ISO_INSTANT)));
    assert.equal(isoTimeRefusal('-000000-01-01'), NO_SUCH_TIME);
  });

  it('says why a query bound is refused', () => {
    assert.equal(isoTimeRefusal('2026-11-23T10:00:00Z'), undefined);
    assert.equal(isoTimeRefusal('2026-11-23T10:00:00'), NEEDS_ZONE);
    assert.equal(isoTimeRefusal(1), NEEDS_ZONE);
    // A query's +01:00 and +275760 arrive with a space for the +.
    assert.equal(isoTimeRefusal('2026-11-23T10:00:00 01:00'), PLUS_AS_SPACE);
    assert.equal(isoTimeRefusal(' 275760-09-13'), PLUS_AS_SPACE);
    assert.equal(isoTimeRefusal('2026-11-23 10:00:00Z'), NEEDS_ZONE);
    assert.equal(isoTimeRefusal('-005000-01-01T00:00:00Z'), BEFORE_EARLIEST_TIME);
    assert.equal(isoTimeRefusal('-004712-01-01T00:00:00Z'), undefined);
    // Past ECMAScript's range (which PostgreSQL holds up to 294276 AD): told so, not that the date does not exist.
    assert.equal(isoTimeRefusal('+275760-09-14'), AFTER_LATEST_TIME);
    assert.equal(isoTimeRefusal('+294276-12-31T00:00:00Z'), AFTER_LATEST_TIME);
    assert.equal(isoTimeRefusal('+275760-09-13'), undefined);
    assert.equal(isoTimeRefusal('-271822-01-01'), BEFORE_EARLIEST_TIME);
    assert.equal(isoTimeRefusal('+275760-02-30'), NO_SUCH_TIME);
  });
});
