import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * A finance answer kept for its Idempotency-Key: a retry with the same key and the same request
 * gets this answer back instead of a second score. Expires after IDEMPOTENCY_TTL_HOURS.
 */
@Entity({ name: 'idempotency_keys' })
@Index('idempotency_keys_expires_at', ['expiresAt'])
export class IdempotencyKeyEntity {
  /** Route and caller (SHA-256 hex of action, issuer, tenant, subject): one caller's key never collides with another's. */
  @PrimaryColumn({ type: 'varchar', length: 400 })
  scope!: string;

  @PrimaryColumn({ name: 'idempotency_key', type: 'varchar', length: 200 })
  key!: string;

  /** Keyed digest (HMAC-SHA256) of the canonical request: tells a retry from a different request. */
  @Column({ name: 'request_digest', type: 'char', length: 64 })
  requestDigest!: string;

  /** `pending` while the first request is being answered, then `done`. */
  @Column({ type: 'varchar', length: 16 })
  state!: 'pending' | 'done';

  /**
   * While `pending`: until when the first request holds the key. A gateway that crashed mid-request
   * leaves the row pending; past this time a retry takes the key over instead of waiting for the TTL.
   */
  @Column({ name: 'pending_until', type: 'timestamptz', nullable: true })
  pendingUntil!: Date | null;

  @Column({ name: 'response_status', type: 'smallint', nullable: true })
  responseStatus!: number | null;

  /**
   * The answer as it was sent: `json` keeps its text, and so its key order, where `jsonb` would reorder
   * the keys of a replayed answer and cost PostgreSQL about twice as much to store a batch's answer.
   */
  @Column({ name: 'response_body', type: 'json', nullable: true })
  responseBody!: unknown;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;
}
