import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

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

  /** Claims the key for this request; false when a live entry already holds it. */
  async claim(scope: string, key: string, requestDigest: string, ttlMs: number): Promise<boolean> {
    const now = new Date();
    // An expired entry gives its key back.
    await this.dataSource.query(
      'DELETE FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2 AND expires_at < $3',
      [scope, key, now],
    );
    const rows: unknown[] = await this.dataSource.query(
      `INSERT INTO idempotency_keys (scope, idempotency_key, request_digest, state, created_at, expires_at)
       VALUES ($1, $2, $3, 'pending', $4, $5) ON CONFLICT DO NOTHING RETURNING scope`,
      [scope, key, requestDigest, now, new Date(now.getTime() + ttlMs)],
    );
    return rows.length === 1;
  }

  async find(scope: string, key: string): Promise<StoredAnswer | undefined> {
    const rows: Array<{
      request_digest: string;
      state: 'pending' | 'done';
      response_status: number | null;
      response_body: unknown;
    }> = await this.dataSource.query(
      'SELECT request_digest, state, response_status, response_body FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2 AND expires_at >= $3',
      [scope, key, new Date()],
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

  async complete(scope: string, key: string, status: number, body: unknown): Promise<void> {
    await this.dataSource.query(
      `UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4 WHERE scope = $1 AND idempotency_key = $2`,
      [scope, key, status, JSON.stringify(body)],
    );
  }

  /** The first request failed: the key is free for a retry. */
  async release(scope: string, key: string): Promise<void> {
    await this.dataSource.query(
      `DELETE FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2 AND state = 'pending'`,
      [scope, key],
    );
  }

  async purgeExpired(): Promise<void> {
    await this.dataSource.query('DELETE FROM idempotency_keys WHERE expires_at < $1', [new Date()]);
  }
}
