import { createHash } from 'node:crypto';
import type { AuditOutcome } from './audit-event.entity';

export const GENESIS_HASH = '0'.repeat(64);

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
}

/**
 * JSON with object keys sorted at every level, so the same row always hashes the same. Written as
 * one pass that appends to a string (it digests whole 10,000-transaction batches): the output is
 * exactly JSON.stringify's, with keys sorted by code unit and undefined members left out.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (value === null) return 'null';
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return out + ']';
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  let out = '{';
  for (const key of keys) {
    const member = record[key];
    if (member === undefined) continue;
    out += (out.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + canonicalJson(member);
  }
  return out + '}';
}

/**
 * sha256 (hex) over the row's fields in a fixed order, as one JSON array, followed by the canonical
 * JSON of the output summary (whose keys the database may reorder). Includes the previous row's
 * hash, so a change to any row breaks every link after it. An outside verifier can recompute it.
 */
export function hashOf(f: ChainedFields): string {
  const fields = JSON.stringify([
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
  ]);
  return createHash('sha256').update(fields).update(canonicalJson(f.outputSummary)).digest('hex');
}

export interface ChainBreak {
  writerId: string;
  seq: number;
  id: string;
  reason: string;
}

/**
 * Checks one writer's rows in seq order, continuing from `head` (the last good row before them).
 * Returns the first broken link, or the new head.
 */
export function checkChain(
  rows: Array<ChainedFields & { id: string; hash: string }>,
  head: { seq: number; hash: string },
): { head: { seq: number; hash: string } } | { broken: ChainBreak } {
  let current = head;
  for (const row of rows) {
    const at = { writerId: row.writerId, seq: row.seq, id: row.id };
    if (row.seq !== current.seq + 1) {
      return { broken: { ...at, reason: `expected seq ${current.seq + 1}: rows are missing or reordered` } };
    }
    if (row.prevHash !== current.hash) {
      return { broken: { ...at, reason: 'prev_hash does not match the hash of the row before' } };
    }
    const { hash } = row;
    if (hashOf(row) !== hash) return { broken: { ...at, reason: 'row content does not match its hash' } };
    current = { seq: row.seq, hash };
  }
  return { head: current };
}
