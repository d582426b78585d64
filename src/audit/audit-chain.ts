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

/** JSON with object keys sorted at every level, so the same row always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
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
