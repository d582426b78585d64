import { Check, Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/**
 * `hash` and `prev_hash` are 64 lowercase hex digits. length() of a char(64) ignores its trailing blanks, as the regex
 * does (it reads the value as text), so this holds exactly the values `~ '^[0-9a-f]{64}$'` holds.
 */
export const AUDIT_HASHES_CHECK = `length("hash") = 64 AND "hash" !~ '[^0-9a-f]' AND length("prev_hash") = 64 AND "prev_hash" !~ '[^0-9a-f]'`;

export const AUDIT_OUTCOMES = ['ok', 'denied', 'invalid', 'error'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/**
 * One decision, denial or admin action. Append-only: the gateway only inserts (a trigger refuses
 * UPDATE and DELETE), and each row carries the hash of the one before it from the same writer.
 */
@Entity({ name: 'audit_events' })
// What the gateway writes and nothing else: a chain starts at seq 1, and its hashes (the first row's prev_hash, the
// genesis hash, included) are sha256 in lowercase hex. Added NOT VALID (migration 1796565569661-AuditEventsChecks): see its note.
// The hashes' check is written as a length and a character class, not as '^[0-9a-f]{64}$': PostgreSQL's regex engine
// builds a large automaton for the bounded repeat, which cost embedded PGlite about 15-20 µs per inserted row, a third
// of its insert (migration 1796575250764-AuditHashCheckCheaper).
@Check('audit_events_seq_from_1', `"seq" >= 1`)
@Check('audit_events_hashes_lower_hex', AUDIT_HASHES_CHECK)
// Only the hash versions verify knows (audit-chain.ts); added NOT VALID (migration AuditHashVersionKnown).
@Check('audit_events_hash_version_known', `"hash_version" IN (1, 2)`)
@Index('audit_events_writer_seq', ['writerId', 'seq'], { unique: true })
@Index('audit_events_occurred_at', ['occurredAt'])
@Index('audit_events_actor', ['actor'])
@Index('audit_events_tenant', ['tenant'])
export class AuditEventEntity {
  /** Insertion order across writers; the cursor of GET /v1/audit/events. */
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  /** The gateway process whose hash chain this row belongs to. */
  @Column({ name: 'writer_id', type: 'varchar', length: 200 })
  writerId!: string;

  /** Position in the writer's chain, from 1. */
  @Column({ type: 'bigint' })
  seq!: string;

  @Column({ name: 'occurred_at', type: 'timestamptz' })
  occurredAt!: Date;

  /** `sub` of the verified token; null when no valid token came. */
  @Column({ type: 'varchar', length: 256, nullable: true })
  actor!: string | null;

  @Column({ type: 'jsonb' })
  roles!: string[];

  @Column({ type: 'varchar', length: 256, nullable: true })
  tenant!: string | null;

  @Column({ type: 'varchar', length: 64 })
  action!: string;

  @Column({ name: 'model_name', type: 'varchar', length: 128, nullable: true })
  modelName!: string | null;

  @Column({ name: 'model_version', type: 'varchar', length: 64, nullable: true })
  modelVersion!: string | null;

  @Column({ name: 'request_id', type: 'varchar', length: 128 })
  requestId!: string;

  @Column({ name: 'client_address', type: 'varchar', length: 64 })
  clientAddress!: string;

  /** HMAC-SHA256 (hex) of the canonical input under the server's audit secret. */
  @Column({ name: 'input_digest', type: 'char', length: 64, nullable: true })
  inputDigest!: string | null;

  @Column({ name: 'output_summary', type: 'jsonb', nullable: true })
  outputSummary!: Record<string, unknown> | null;

  @Column({ type: 'varchar', length: 16 })
  outcome!: AuditOutcome;

  @Column({ name: 'status_code', type: 'smallint' })
  statusCode!: number;

  @Column({ name: 'latency_ms', type: 'double precision' })
  latencyMs!: number;

  @Column({ name: 'prev_hash', type: 'char', length: 64 })
  prevHash!: string;

  /**
   * Which hash `hash` is (audit-chain.ts): 1, sha256 with no key (every row written before keyed hashes: the
   * default they got); 2, HMAC-SHA256 under a key derived from AUDIT_HMAC_SECRET, what the gateway writes now.
   */
  @Column({ name: 'hash_version', type: 'smallint', default: 1 })
  hashVersion!: number;

  @Column({ type: 'char', length: 64 })
  hash!: string;
}
