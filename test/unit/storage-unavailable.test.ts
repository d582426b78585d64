import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueryFailedError } from 'typeorm';
import { AppError } from '../../src/common/errors/app-error';
import { isStorageOutage, orUnavailable } from '../../src/database/storage-unavailable';

/** A `pg` DatabaseError as the driver raises it: a message and a SQLSTATE. */
function pgError(message: string, code?: string): Error {
  return Object.assign(new Error(message), code ? { code } : {});
}
const failedQuery = (driverError: Error) => new QueryFailedError('SELECT 1', [], driverError);

describe('database outages told from refused statements', () => {
  it('a session killed, a statement timed out, a server away or refusing connections is an outage', () => {
    for (const error of [
      failedQuery(pgError('terminating connection due to administrator command', '57P01')),
      failedQuery(pgError('canceling statement due to statement timeout', '57014')),
      failedQuery(pgError('Connection terminated unexpectedly')),
      failedQuery(pgError('Query read timeout')),
      pgError('database "x" is not currently accepting connections', '55000'),
      pgError('too many connections for database "x"', '53300'),
      pgError('the database system is shutting down', '57P03'),
      pgError('timeout exceeded when trying to connect'),
      pgError('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'),
      failedQuery(pgError('deadlock detected', '40P01')),
    ]) {
      assert.equal(isStorageOutage(error), true, error.message);
    }
  });

  it('a statement the database refuses is not (a bug: a 500)', () => {
    for (const error of [
      failedQuery(pgError('duplicate key value violates unique constraint "k"', '23505')),
      failedQuery(pgError('invalid byte sequence for encoding "UTF8": 0x00', '22021')),
      failedQuery(pgError('column "x" does not exist', '42703')),
      new TypeError('undefined is not a function'),
      'not an error',
    ]) {
      assert.equal(isStorageOutage(error), false, String(error));
    }
  });

  it('orUnavailable answers an outage with STORAGE_UNAVAILABLE and Retry-After, without the driver text', async () => {
    const outage = failedQuery(pgError('terminating connection due to administrator command', '57P01'));
    const error = await orUnavailable('the thing could not be read', () => Promise.reject(outage)).catch(
      (e: unknown) => e,
    );
    assert.ok(error instanceof AppError);
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    assert.equal(error.retryAfterSeconds, 1);
    assert.doesNotMatch(error.detail, /terminating/);
    const bug = failedQuery(pgError('column "x" does not exist', '42703'));
    assert.equal(await orUnavailable('x', () => Promise.reject(bug)).catch((e: unknown) => e), bug);
    assert.equal(await orUnavailable('x', () => Promise.resolve(7)), 7);
  });
});
