import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { writeInPieces } from '../common/http/piecewise-json';
import type { AuditOutcome } from './audit-event.entity';
import { derivedKey } from './keyed-digest';

export const GENESIS_HASH = '0'.repeat(64);

/**
 * Which hash a row carries (audit_events.hash_version). 1: plain sha256, which anyone can recompute, so whoever can
 * write the table could forge rows that verify; the rows written before keyed hashes. 2: HMAC-SHA256 under
 * rowHashKey, which only a holder of AUDIT_HMAC_SECRET can compute. A chain may go from 1 to 2, never back.
 */
export const UNKEYED_HASH = 1;
export const KEYED_HASH = 2;

/** The row hashes' own key, derived from the audit secret: no input digest, anchor MAC or cursor key is one. */
export function rowHashKey(auditSecret: Buffer): Buffer {
  return derivedKey(auditSecret, 'gateway audit row chain v1');
}

/** The fields a row's hash covers: everything but its database id and its own hash. */
export interface ChainedFields {
  writerId: string;
  seq: number;
  occurredAt: Date;
  actor: string | null;
  roles: string[];
  tenant: string | null;
  action: string;
  modelName: string | null;
  modelVersion: string | null;
  requestId: string;
  clientAddress: string;
  inputDigest: string | null;
  outputSummary: Record<string, unknown> | null;
  outcome: AuditOutcome;
  statusCode: number;
  latencyMs: number;
  prevHash: string;
  /** UNKEYED_HASH or KEYED_HASH; covered by a keyed hash. */
  hashVersion: number;
}

/** A row as stored in a chain: its chained fields and its own hash. */
export type AuditRow = ChainedFields & { hash: string };

/**
 * JSON with object keys sorted at every level (by code unit), so the same row always hashes the
 * same. Undefined members are left out; undefined, functions and symbols elsewhere, NaN and the
 * infinities are written as null. Fast path: a copy with keys inserted in sorted order, serialised
 * by JSON.stringify (it digests whole 10,000-transaction batches). Objects keep integer-like keys
 * ("7", "10") in numeric order whatever the insertion order, and "__proto__" is no plain key, so a
 * value with either is written by hand.
 */
export function canonicalJson(value: unknown): string {
  try {
    return JSON.stringify(sortedCopy(value)) ?? 'null';
  } catch (error) {
    if (error !== BY_HAND) throw error;
    return canonicalJsonByHand(value);
  }
}

/**
 * canonicalJson(value) as UTF-8 bytes. An object with a member array of 256 items or more (a fraud batch's
 * transactions) is written in pieces (writeInPieces), so that no string of the whole is built: on this
 * project's VM that made a 1,000-transaction batch's canonical bytes take 6.2 ms instead of 8.0.
 */
export function canonicalJsonBytes(value: unknown): Buffer {
  const plain = typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
  const record = value as Record<string, unknown>;
  const pieces = plain
    ? writeInPieces(record, Object.keys(record).sort(), {
        member: (member) => (member === undefined ? undefined : canonicalJson(member)),
        // The items' canonical array without its brackets: the same items, in place.
        items: (items) => canonicalJson(items).slice(1, -1),
      })
    : undefined;
  return pieces ?? Buffer.from(canonicalJson(value));
}

/** Thrown by sortedCopy for a key an object literal cannot keep in place: an integer-like one, or __proto__. */
const BY_HAND = new Error('a key that needs canonicalJsonByHand');

/**
 * Key lists seen lately with their sorted order, newest first. Records built alike (the transactions
 * of a batch, their feature vectors) list the same keys in the same order, so most records skip the
 * sort and the key checks.
 */
const SHAPES: Array<{ keys: string[]; sorted: string[] }> = [];
const MAX_SHAPES = 16;

/** `keys` sorted by code unit; throws BY_HAND for a key an object literal cannot keep in place. */
function sortedKeys(keys: string[]): string[] {
  search: for (const shape of SHAPES) {
    const known = shape.keys;
    if (known.length !== keys.length) continue;
    for (let i = 0; i < keys.length; i++) if (known[i] !== keys[i]) continue search;
    return shape.sorted;
  }
  for (const key of keys) {
    const first = key.charCodeAt(0);
    if ((first >= 48 && first <= 57 && /^(0|[1-9]\d*)$/.test(key)) || key === '__proto__') throw BY_HAND;
  }
  const sorted = [...keys].sort();
  if (SHAPES.length >= MAX_SHAPES) SHAPES.pop();
  SHAPES.unshift({ keys, sorted });
  return sorted;
}

function sortedCopy(value: unknown): unknown {
  if (typeof value !== 'object') {
    return typeof value === 'function' || typeof value === 'symbol' || value === undefined ? null : value;
  }
  if (value === null) return null;
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) {
    const copy = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) copy[i] = sortedCopy(value[i]);
    return copy;
  }
  const record = value as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const key of sortedKeys(Object.keys(record))) {
    const member = record[key];
    if (member !== undefined) copy[key] = sortedCopy(member);
  }
  return copy;
}

/** canonicalJson written out by string building: any key order, slower. */
export function canonicalJsonByHand(value: unknown): string {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (value === null) return 'null';
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJsonByHand(value[i]);
    return out + ']';
  }
  const record = value as Record<string, unknown>;
  let out = '{';
  for (const key of Object.keys(record).sort()) {
    const member = record[key];
    if (member === undefined) continue;
    out += (out.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + canonicalJsonByHand(member);
  }
  return out + '}';
}

/**
 * What a row's hash covers: the row's fields in a fixed order as one JSON array (`version` first when given),
 * followed by the canonical JSON of the output summary (whose keys the database may reorder; hashed as a second
 * piece). It includes the previous row's hash, so a change to any row breaks every link after it.
 */
function fieldsJson(f: ChainedFields, version?: number): string {
  const fields = [
    f.writerId,
    f.seq,
    f.occurredAt.toISOString(),
    f.actor,
    f.roles,
    f.tenant,
    f.action,
    f.modelName,
    f.modelVersion,
    f.requestId,
    f.clientAddress,
    f.inputDigest,
    f.outcome,
    f.statusCode,
    f.latencyMs,
    f.prevHash,
  ];
  return JSON.stringify(version === undefined ? fields : [version, ...fields]);
}

/**
 * A version-1 row's hash: sha256 (hex) of fieldsJson (without the version) and the output summary, with no key. An
 * outside verifier can recompute it, and so can a forger.
 */
export function unkeyedHashOf(f: ChainedFields): string {
  return createHash('sha256').update(fieldsJson(f)).update(canonicalJson(f.outputSummary)).digest('hex');
}

/**
 * A version-2 row's hash: HMAC-SHA256 (hex) under `key` (rowHashKey) of fieldsJson with the version, 2, first, and
 * the output summary. Only a holder of AUDIT_HMAC_SECRET can compute it, or check it.
 */
export function keyedHashOf(key: Buffer, f: ChainedFields): string {
  return createHmac('sha256', key)
    .update(fieldsJson(f, KEYED_HASH))
    .update(canonicalJson(f.outputSummary))
    .digest('hex');
}

export interface ChainBreak {
  writerId: string;
  seq: number;
  id: string;
  reason: string;
}

/**
 * The ISO 8601 text of occurred_at as a row's hash covers it, or undefined for a time no row is written with and a
 * Date cannot hold: PostgreSQL's `infinity` and `-infinity` (read by the driver as the numbers) and a time past the
 * years 271821 BC to 275760 AD (read as an invalid Date), which only a change made by hand puts there.
 */
export function isoTimeOf(occurredAt: unknown): string | undefined {
  return occurredAt instanceof Date && Number.isFinite(occurredAt.getTime()) ? occurredAt.toISOString() : undefined;
}

/** The reason for a row whose occurred_at is a time isoTimeOf has no text for. */
export const UNREADABLE_TIME =
  'row content does not match its hash: occurred_at is infinity or a time past what a JavaScript Date holds, ' +
  'which no row is written with';

/** The reason for a row whose occurred_at holds a fraction of a millisecond. */
export const SUB_MILLISECOND_TIME =
  'row content does not match its hash: occurred_at holds a fraction of a millisecond, which no row is written with';

/**
 * A row as verify reads it. `subMillisecond`: occurred_at (microseconds in the database) holds a fraction of a
 * millisecond, which the Date it is read into, and so the row's hash, cannot see; rows are written in whole milliseconds.
 */
export type CheckedRow = ChainedFields & { id: string; hash: string; subMillisecond?: boolean };

/**
 * The last good row of a chain, as the next must follow it; `keyed` when its hash is (no unkeyed row may follow), and
 * `retiredSecret` when it verified under a retired secret's row key: its position in AUDIT_HMAC_PREVIOUS_SECRETS
 * (1: the newest retired), absent for the current secret's.
 */
export interface LinkHead {
  seq: number;
  hash: string;
  keyed?: boolean;
  retiredSecret?: number;
}

/** The head before a chain's first row. */
export const GENESIS_HEAD: LinkHead = { seq: 0, hash: GENESIS_HASH };

/**
 * The row hash keys verify takes: the current secret's, and those of the secrets rotations retired
 * (AUDIT_HMAC_PREVIOUS_SECRETS), newest first. `retired[i]` is retired secret i + 1.
 */
export interface RowKeys {
  current: Buffer;
  retired: readonly Buffer[];
}

/** The reasons for a row that breaks a chain because of its hash_version. */
export const UNKEYED_AFTER_KEYED =
  'an unkeyed row (hash_version 1) after a keyed one: a chain never goes back from keyed hashes';
export const KEYED_HASH_MISMATCH =
  'row content does not match its hash: a keyed one, so the row was changed, or hashed under an AUDIT_HMAC_SECRET ' +
  'that is neither the current one nor one of AUDIT_HMAC_PREVIOUS_SECRETS';

/** The current secret (0) or retired secret n of AUDIT_HMAC_PREVIOUS_SECRETS (n), in words. */
function secretName(retiredSecret: number): string {
  return retiredSecret === 0
    ? 'the current AUDIT_HMAC_SECRET'
    : `retired secret ${retiredSecret} of AUDIT_HMAC_PREVIOUS_SECRETS`;
}

/**
 * The reason for a keyed row under an older secret than the row before it: a chain's key only moves forward in time,
 * so whoever holds a retired (perhaps leaked) secret cannot append rows to a chain that has moved on from it.
 */
export function olderSecretAfterNewer(rowSecret: number, headSecret: number): string {
  return (
    `a row keyed under ${secretName(rowSecret)} after one keyed under ${secretName(headSecret)}: ` +
    "a chain's key only moves forward, from a retired secret to a newer one"
  );
}

/**
 * Checks one writer's rows in seq order, continuing from `head` (the last good row before them), under the row hash
 * key (and, given them, the retired secrets' row keys). Returns the first broken link, or the new head.
 */
export function checkChain(
  rows: CheckedRow[],
  head: LinkHead,
  key: Buffer,
  retired: readonly Buffer[] = [],
): { head: LinkHead } | { broken: ChainBreak } {
  const keys = { current: key, retired };
  let current = head;
  for (const row of rows) {
    const next = followLink(row, current, keys);
    if ('broken' in next) return next;
    current = next.head;
  }
  return { head: current };
}

/**
 * Why `row` does not follow `head` (the last good row of its chain), or the head it leaves the chain at. A keyed row
 * is tried under the key the row before it verified under (the current one at a chain's start): one HMAC a row while
 * the key stays. Only on a mismatch are the other keys tried: a newer one (a rotation) is taken, an older one is a
 * break that says so.
 */
export function followLink(
  row: CheckedRow,
  head: LinkHead,
  keys: RowKeys,
): { head: LinkHead } | { broken: ChainBreak } {
  const at = { writerId: row.writerId, seq: row.seq, id: row.id };
  const broken = (reason: string) => ({ broken: { ...at, reason } });
  if (row.seq !== head.seq + 1) return broken(`expected seq ${head.seq + 1}: rows are missing or reordered`);
  if (row.prevHash !== head.hash) return broken('prev_hash does not match the hash of the row before');
  if (row.subMillisecond) return broken(SUB_MILLISECOND_TIME);
  // Before any hash: fieldsJson needs the time's ISO text, and a 500 would name no row.
  if (isoTimeOf(row.occurredAt) === undefined) return broken(UNREADABLE_TIME);
  if (row.hashVersion === UNKEYED_HASH) {
    if (head.keyed) return broken(UNKEYED_AFTER_KEYED);
    return sameHash(unkeyedHashOf(row), row.hash)
      ? { head: { seq: row.seq, hash: row.hash } }
      : broken('row content does not match its hash');
  }
  if (row.hashVersion !== KEYED_HASH) {
    return broken(`hash_version ${row.hashVersion} is none the gateway writes (1: unkeyed, 2: keyed)`);
  }
  const headSecret = head.keyed ? (head.retiredSecret ?? 0) : 0;
  const secret = rowSecret(row, keys, headSecret);
  if (secret === undefined) return broken(KEYED_HASH_MISMATCH);
  if (head.keyed && secret > headSecret) return broken(olderSecretAfterNewer(secret, headSecret));
  return {
    head:
      secret === 0
        ? { seq: row.seq, hash: row.hash, keyed: true }
        : { seq: row.seq, hash: row.hash, keyed: true, retiredSecret: secret },
  };
}

/** Which secret's row key a keyed row's hash is under (0: the current one, n: retired secret n), `first` tried first. */
function rowSecret(row: CheckedRow, keys: RowKeys, first: number): number | undefined {
  const keyOf = (secret: number): Buffer | undefined => (secret === 0 ? keys.current : keys.retired[secret - 1]);
  const firstKey = keyOf(first);
  if (firstKey && sameHash(keyedHashOf(firstKey, row), row.hash)) return first;
  for (let secret = 0; secret <= keys.retired.length; secret++) {
    if (secret !== first && sameHash(keyedHashOf(keyOf(secret)!, row), row.hash)) return secret;
  }
  return undefined;
}

/** Compared in constant time: verify's timing must not tell how much of a forged keyed hash is right. */
function sameHash(expected: string, stored: string): boolean {
  const [a, b] = [Buffer.from(expected), Buffer.from(stored)];
  return a.length === b.length && timingSafeEqual(a, b);
}
