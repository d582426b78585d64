import { isUtf8 } from 'node:buffer';
import type { RawReading, ReadingOutcome } from '../plant-stream.service';
import { ISO_INSTANT, isoTimeMs, NEEDS_ZONE, NO_SUCH_TIME } from '../../../common/iso-time';
import { firstInvalidUtf8 } from '../../../common/http/json-charset';
import { jsonShape, MAX_JSON_DEPTH, TOO_DEEP_REASON } from '../../../common/http/json-depth';
import { duplicateMemberError } from '../../../common/http/json-duplicate-keys';

/**
 * The plain JSON MQTT scheme: `factory/{site}/{line}/{assetId}/telemetry` (the first level is
 * whatever the subscription filter says; only the shape is checked here), with a payload of
 * - `{ "timestamp": ISO | epoch-ms, "values": { tag: number } }`,
 * - an array of those, or
 * - a flat `{ "timestamp": ..., tag: number, ... }`.
 * A timestamp is required: readings are ordered and de-duplicated by it, and a time of arrival
 * would make a redelivered message look new.
 */
export interface TelemetryTopic {
  site: string;
  line: string;
  assetId: string;
}

export interface TelemetryParse {
  readings: RawReading[];
  /** Elements that could not be read, by index in the message (0 for a single object), with the reason. */
  errors: Array<{ index: number; reason: string }>;
}

/** Readings one message may carry; larger batches go over HTTP. */
export const MAX_READINGS_PER_MESSAGE = 10_000;

/** Why a message of more than MAX_READINGS_PER_MESSAGE readings is refused, JSON and Sparkplug B alike. */
export const TOO_MANY_READINGS = `more than ${MAX_READINGS_PER_MESSAGE} readings in one message`;

export function parseTelemetryTopic(topic: string): TelemetryTopic | undefined {
  const parts = topic.split('/');
  if (parts.length !== 5 || parts[4] !== 'telemetry') return undefined;
  const [, site, line, assetId] = parts;
  if ([site, line, assetId].some((p) => p === '' || /[+#]/.test(p))) return undefined;
  return { site, line, assetId };
}

/**
 * The earliest time a number may give (2000-01-01T00:00:00Z, as epoch milliseconds). A smaller one is no reading a
 * plant sends today but a time in another unit, most likely seconds: 1765000000 (2025-12-06 in seconds) read as
 * milliseconds is 1970-01-21, and was taken so (stored in 1970, or refused as late with no word of the unit).
 * Refused rather than guessed: a number of seconds is read as seconds nowhere, and an ISO time is taken as written.
 */
export const EARLIEST_EPOCH_MS = Date.UTC(2000, 0, 1);

/**
 * The first time a number may not give (3000-01-01T00:00:00Z, as epoch milliseconds). A larger one is a time in a
 * finer unit: 1765000000000000 (2025-12-06 in microseconds) read as milliseconds is the year 57900, and was refused
 * only as ahead of the gateway's clock, with no word of the unit.
 */
export const LATEST_EPOCH_MS = Date.UTC(3000, 0, 1);

/**
 * Why a number given as a time in epoch milliseconds is refused (before EARLIEST_EPOCH_MS, or from LATEST_EPOCH_MS
 * on), saying what it reads as and, when it makes a time from 2000 on in seconds, microseconds or nanoseconds, that
 * it looks like that unit; undefined when it is taken.
 */
export function epochMsRefusal(value: number, what = 'timestamp'): string | undefined {
  const ms = Math.floor(value);
  if (ms >= EARLIEST_EPOCH_MS && ms < LATEST_EPOCH_MS) return undefined;
  const reads = Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : 'no date';
  const looksLike = (scale: number): boolean => ms * scale >= EARLIEST_EPOCH_MS && ms * scale < LATEST_EPOCH_MS;
  const unit = looksLike(1000)
    ? 'seconds'
    : looksLike(1 / 1000)
      ? 'microseconds'
      : looksLike(1 / 1_000_000)
        ? 'nanoseconds'
        : undefined;
  const hint = unit ? `this looks like ${unit}; ` : '';
  return `${what} ${value} reads as ${reads}; epoch milliseconds expected (${hint}numbers before 2000-01-01 or from 3000-01-01 on are refused)`;
}

/**
 * Epoch milliseconds of an ISO 8601 string or a number of epoch milliseconds from 2000-01-01 on; the reason
 * otherwise. A fraction of a millisecond is cut off, as Date.parse cuts an ISO time's microseconds: readings are
 * ordered and de-duplicated by their time, and stored by it to the millisecond, so two readings within one
 * millisecond are one reading and its duplicate, not two predictions of which one could be stored.
 */
export function telemetryTime(value: unknown): number | string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return 'timestamp: not a finite number';
    return epochMsRefusal(value) ?? Math.floor(value);
  }
  if (typeof value === 'string') {
    // Date.parse accepts many local formats, and reads a time without a zone as the server's local time.
    if (!ISO_INSTANT.test(value)) return `timestamp: ${NEEDS_ZONE}, or epoch milliseconds`;
    const ms = isoTimeMs(value, ISO_INSTANT);
    return Number.isFinite(ms) ? ms : `timestamp: not a valid time (${NO_SUCH_TIME})`;
  }
  return value === undefined ? 'timestamp: missing' : 'timestamp: not an ISO 8601 time or epoch milliseconds';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One reading from either object shape; values are checked later by the stream (numbers, ranges). */
function reading(element: unknown): RawReading | string {
  if (!isObject(element)) return 'expected an object with timestamp and values';
  const timestamp = telemetryTime(element.timestamp);
  if (typeof timestamp === 'string') return timestamp;
  let values: Record<string, unknown>;
  if ('values' in element) {
    if (!isObject(element.values)) return 'values: expected an object of tag: number';
    const extra = Object.keys(element).filter((k) => k !== 'timestamp' && k !== 'values');
    if (extra.length > 0) return `unexpected fields beside values: ${extra.join(', ')}`;
    values = { ...element.values };
  } else {
    values = { ...element };
    delete values.timestamp;
  }
  if (Object.keys(values).length === 0) return 'no values';
  return { timestamp, values };
}

/** Parses a telemetry payload; throws nothing. A message that is not JSON is one error at index 0. */
export function parseTelemetry(payload: Buffer | string): TelemetryParse {
  let body: unknown;
  // Bytes that are not UTF-8 would be read with U+FFFD in their place: a tag name or value other than the one sent.
  if (typeof payload !== 'string' && !isUtf8(payload)) {
    const at = firstInvalidUtf8(payload);
    return { readings: [], errors: [{ index: 0, reason: `not UTF-8: the byte sequence at byte ${at} is not UTF-8` }] };
  }
  // A leading byte order mark is dropped, as Fastify's JSON parser drops it from an HTTP body: a SCADA whose encoder
  // writes one (.NET's UTF8Encoding, some Windows tools) had every message dead-lettered as not JSON, the mark unseen.
  const decoded = typeof payload === 'string' ? payload : payload.toString('utf8');
  const bom = decoded.charCodeAt(0) === 0xfeff;
  const text = bom ? decoded.slice(1) : decoded;
  try {
    body = JSON.parse(text);
  } catch (error) {
    return { readings: [], errors: [{ index: 0, reason: `not JSON: ${(error as Error).message}` }] };
  }
  // A reading is a few levels deep; a value nested thousands deep would overflow what walks it later.
  const shape = jsonShape(body, MAX_JSON_DEPTH);
  if (shape.tooDeep) return { readings: [], errors: [{ index: 0, reason: TOO_DEEP_REASON }] };
  // A tag given twice in one object is refused as an HTTP body is (json-duplicate-keys.ts): which value the
  // gateway kept and which a historian beside it kept would not be known.
  const bytes = typeof payload === 'string' ? Buffer.from(text) : bom ? payload.subarray(3) : payload;
  const duplicate = duplicateMemberError(bytes, body, () => text, shape.keys)?.fields[0];
  if (duplicate) return { readings: [], errors: [{ index: 0, reason: `${duplicate.field}: ${duplicate.reason}` }] };
  const elements = Array.isArray(body) ? body : [body];
  if (elements.length === 0) return { readings: [], errors: [{ index: 0, reason: 'empty array' }] };
  if (elements.length > MAX_READINGS_PER_MESSAGE) {
    return {
      readings: [],
      errors: [{ index: 0, reason: TOO_MANY_READINGS }],
    };
  }
  const result: TelemetryParse = { readings: [], errors: [] };
  elements.forEach((element, index) => {
    const parsed = reading(element);
    if (typeof parsed === 'string') result.errors.push({ index, reason: parsed });
    else result.readings.push(parsed);
  });
  return result;
}

/** A payload as dead-letter text: UTF-8 when it is text, else base64; cut to 4 KiB. */
export function deadLetterPayload(payload: Buffer, binary: boolean): string {
  // Only the bytes the kept characters come from are encoded, not a message of many megabytes: 3,072 bytes are 4,096
  // characters of base64, and 4,096 UTF-16 code units never come from more than 12,288 bytes of UTF-8.
  const text = binary
    ? `base64:${payload.subarray(0, 3072).toString('base64')}`
    : payload.toString('utf8', 0, Math.min(payload.length, 12_288));
  return text.slice(0, 4096);
}

/** Dead-letter payloads are cut to this many characters. */
const MAX_DEAD_LETTER_PAYLOAD = 4096;
/** Room kept for `notNamed`, and the most one named reading may take before its values are left out. */
const NOT_NAMED_ROOM = 160;
const MAX_NAMED_READING = 1024;

/**
 * An ingest-failed dead letter's payload once the message's readings were taken: how many were ingested
 * (accepted now, or duplicates of earlier ones: not to be sent again), and the readings that were not (late
 * or invalid), named with their reason and values as sent, as many as fit in 4 KiB, the rest counted with
 * their first and last times. Valid JSON whatever its size.
 */
export function ingestFailedPayload(outcomes: ReadingOutcome[]): string {
  const iso = (ms: number) =>
    Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms);
  const count = (outcome: ReadingOutcome['outcome']) => outcomes.filter((o) => o.outcome === outcome).length;
  const notIngested = outcomes.filter((o) => o.outcome === 'late' || o.outcome === 'invalid');
  const named: Array<Record<string, unknown>> = [];
  const payload: Record<string, unknown> = {
    readings: outcomes.length,
    ingested: { accepted: count('accepted'), duplicates: count('duplicate') },
    notIngested: named,
  };
  let size = JSON.stringify(payload).length;
  for (const o of notIngested) {
    let item: Record<string, unknown> = {
      timestamp: iso(o.timestamp),
      outcome: o.outcome,
      reason: o.reason,
      values: o.values,
    };
    let text = JSON.stringify(item);
    if (text.length > MAX_NAMED_READING) {
      item = { ...item, reason: o.reason?.slice(0, 200), values: '(too large to keep here)' };
      text = JSON.stringify(item);
    }
    if (size + text.length + 1 + NOT_NAMED_ROOM > MAX_DEAD_LETTER_PAYLOAD) break;
    named.push(item);
    size += text.length + 1;
  }
  const rest = notIngested.slice(named.length);
  if (rest.length > 0) {
    payload.notNamed = {
      readings: rest.length,
      from: iso(rest[0].timestamp),
      to: iso(rest[rest.length - 1].timestamp),
    };
  }
  return JSON.stringify(payload);
}
