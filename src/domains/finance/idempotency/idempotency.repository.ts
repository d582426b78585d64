import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { storableJsonText } from '../../../common/storable-text';
import { orUnavailable } from '../../../database/storage-unavailable';

export interface StoredAnswer {
  requestDigest: string;
  state: 'pending' | 'done';
  responseStatus: number | null;
  responseBody: unknown;
}

/** The only code that touches idempotency_keys. */
@Injectable()
export class IdempotencyRepository {
  constructor(private readonly dataSource: DataSource) {}

  /**
   * Claims the key for this request: the claim's time (its token for complete and release), or
   * undefined when a live entry already holds it. An expired entry, or a pending one whose lease ran
   * out (its request died with its gateway), gives its key to this request.
   */
  async claim(
    scope: string,
    key: string,
    requestDigest: string,
    ttlMs: number,
    leaseMs: number,
  ): Promise<Date | undefined> {
    const now = new Date();
    // Pending rows without a lease were written before leases existed: taken over like expired ones.
    const rows: unknown[] = await orUnavailable('the Idempotency-Key could not be claimed', () =>
      this.dataSource.query(
        `INSERT INTO idempotency_keys AS k (scope, idempotency_key, request_digest, state, pending_until, created_at, expires_at)
       VALUES ($1, $2, $3, 'pending', $4, $5, $6)
       ON CONFLICT (scope, idempotency_key) DO UPDATE SET
         request_digest = EXCLUDED.request_digest, state = 'pending', pending_until = EXCLUDED.pending_until,
         response_status = NULL, response_body = NULL, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
       WHERE k.expires_at < $5 OR (k.state = 'pending' AND (k.pending_until IS NULL OR k.pending_until < $5))
       RETURNING scope`,
        [scope, key, requestDigest, new Date(now.getTime() + leaseMs), now, new Date(now.getTime() + ttlMs)],
      ),
    );
    return rows.length === 1 ? now : undefined;
  }

  async find(scope: string, key: string): Promise<StoredAnswer | undefined> {
    const rows: Array<{
      request_digest: string;
      state: 'pending' | 'done';
      response_status: number | null;
      response_body: unknown;
    }> = await orUnavailable('the answer kept for the Idempotency-Key could not be read', () =>
      this.dataSource.query(
        'SELECT request_digest, state, response_status, response_body FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2 AND expires_at >= $3',
        [scope, key, new Date()],
      ),
    );
    const row = rows[0];
    return row
      ? {
          requestDigest: row.request_digest,
          state: row.state,
          responseStatus: row.response_status,
          responseBody: row.response_body,
        }
      : undefined;
  }

  /**
   * Keeps the answer (made storable: PostgreSQL refuses NUL and lone surrogates in jsonb), unless the
   * claim was taken over meanwhile (its lease ran out).
   */
  async complete(scope: string, key: string, claimed: Date, status: number, body: unknown): Promise<void> {
    await this.dataSource.query(
      `UPDATE idempotency_keys SET state = 'done', pending_until = NULL, response_status = $4, response_body = $5
       WHERE scope = $1 AND idempotency_key = $2 AND created_at = $3 AND state = 'pending'`,
      [scope, key, claimed, status, storableJsonText(body)],
    );
  }

  /** The first request failed: the key is free for a retry (unless another request took it over). */
  async release(scope: string, key: string, claimed: Date): Promise<void> {
    await this.dataSource.query(
      `DELETE FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2 AND created_at = $3 AND state = 'pending'`,
      [scope, key, claimed],
    );
  }

  async purgeExpired(): Promise<void> {
    await this.dataSource.query('DELETE FROM idempotency_keys WHERE expires_at < $1', [new Date()]);
  }
}
