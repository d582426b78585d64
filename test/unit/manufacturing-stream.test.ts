import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueryFailedError } from 'typeorm';
import { AppError } from '../../src/common/errors/app-error';
import { plantStreamHarness } from '../fixtures/plant-stream-harness';

const T0 = Date.now() - 3_600_000;
const HTTP = { source: 'http', name: 'POST /v1/manufacturing/assets/mill-1/readings' } as const;

/** A `pg` error as TypeORM wraps it: a message and a SQLSTATE. */
const failedQuery = (message: string, code: string) =>
  new QueryFailedError('INSERT ...', [], Object.assign(new Error(message), { code }));

describe('manufacturing stream: dead letters the database does not take', () => {
  it('a database outage is a 503 STORAGE_UNAVAILABLE with Retry-After', async () => {
    const { stream, records, reading } = plantStreamHarness();
    records.refuseDeadLetters = failedQuery('terminating connection due to administrator command', '57P01');
    const error = await stream.ingest('mill-1', [{ ...reading(T0, 10), timestamp: Number.NaN }], HTTP).then(
      () => assert.fail('ingest resolved'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AppError, String(error));
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    assert.equal(error.retryAfterSeconds, 1);
    assert.match(error.detail, /dead-letter table/);
  });

  it('any other failure is a bug: thrown as it is, for the 500 path that logs it', async () => {
    const { stream, records, reading } = plantStreamHarness();
    const bug = failedQuery('column "payload" does not exist', '42703');
    records.refuseDeadLetters = bug;
    const error = await stream.ingest('mill-1', [{ ...reading(T0, 10), timestamp: Number.NaN }], HTTP).then(
      () => assert.fail('ingest resolved'),
      (e: unknown) => e,
    );
    assert.equal(error, bug);
  });
});
