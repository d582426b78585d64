import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { protocol } from '@electric-sql/pglite';
import { Client, DatabaseError } from 'pg';
import { QueryFailedError } from 'typeorm';
import { type AuditCommitReply, serveCommits } from '../../src/audit/audit-commit';
import { auditFailureReason } from '../../src/audit/audit-writer.service';
import { AppError } from '../../src/common/errors/app-error';
import { isStorageOutage, orUnavailable, storageFaultOf } from '../../src/database/storage-unavailable';

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

  it("connecting to the embedded database's socket while it restarts (the socket gone, or left with no listener) is an outage; a missing file elsewhere is not", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-socket-'));
    try {
      const connect = async (): Promise<unknown> => {
        const client = new Client({ host: dir, port: 5432, user: 'postgres', database: 'postgres' });
        return client.connect().then(
          () => client.end(),
          (error: unknown) => error,
        );
      };
      const gone = await connect();
      assert.equal((gone as NodeJS.ErrnoException).code, 'ENOENT');
      assert.equal(storageFaultOf(gone), 'outage', String(gone));
      // A socket file whose listener is gone (a thread terminated before removing it).
      const server = createServer();
      await new Promise<void>((ok) => server.listen({ path: join(dir, '.s.PGSQL.5432') }, ok));
      linkSync(join(dir, '.s.PGSQL.5432'), join(dir, 'kept')); // closing the server removes its path
      await new Promise<void>((ok) => server.close(() => ok()));
      renameSync(join(dir, 'kept'), join(dir, '.s.PGSQL.5432'));
      const refused = await connect();
      assert.equal((refused as NodeJS.ErrnoException).code, 'ECONNREFUSED');
      assert.equal(storageFaultOf(refused), 'outage', String(refused));
      const missing = await readFile(join(dir, 'no-such-file')).catch((e: unknown) => e);
      assert.equal(storageFaultOf(missing), undefined, String(missing));
    } finally {
      rmSync(dir, { recursive: true, force: true });
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

/** An ErrorResponse as the server sends it (severity, SQLSTATE, message), for a real driver's parser. */
function errorResponse(severity: string, code: string, message: string): Buffer {
  const fields = [`S${severity}`, `V${severity}`, `C${code}`, `M${message}`, 'HCheck free disk space.'];
  const body = Buffer.from(fields.map((f) => `${f}\0`).join('') + '\0');
  const head = Buffer.alloc(5);
  head.write('E');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** The error PGlite raises (embedded database) for an ErrorResponse, from its own protocol parser. */
function pgliteError(severity: string, code: string, message: string): Error {
  let parsed: unknown;
  new protocol.Parser().parse(errorResponse(severity, code, message), (m) => (parsed = m));
  assert.ok(parsed instanceof Error);
  return parsed;
}

/** The error `pg` raises: its DatabaseError, its fields set from the ErrorResponse as its parser does. */
function pgDatabaseError(code: string, message: string): DatabaseError {
  return Object.assign(new DatabaseError(message, message.length, 'error'), { severity: 'ERROR', code });
}

const EXTEND = 'could not extend file "base/16384/16402": No space left on device';

describe('a full disk told apart from a database away', () => {
  it('SQLSTATE 53100 (disk_full) from pg or PGlite, ENOSPC and EDQUOT from the file system are a full disk', () => {
    const cases: unknown[] = [
      failedQuery(pgDatabaseError('53100', EXTEND)),
      pgDatabaseError('53100', 'could not write to file "pg_wal/xlogtemp.42": No space left on device'),
      pgliteError('ERROR', '53100', EXTEND),
      // A WAL segment PGlite could not make is a PANIC, with the same SQLSTATE.
      pgliteError('PANIC', '53100', 'could not write to file "pg_wal/xlogtemp.42": No space left on device'),
      Object.assign(new Error('EDQUOT: disk quota exceeded, write'), { code: 'EDQUOT' }),
      // An error with no code that says it (an embedded database that could not start).
      new Error('embedded database in /x did not start: No space left on device'),
    ];
    // The file system's own error, as Node raises it.
    if (existsSync('/dev/full')) cases.push(catchOf(() => writeFileSync('/dev/full', 'x')));
    for (const error of cases) assert.equal(storageFaultOf(error), 'disk-full', String(error));
  });

  it('the rest of class 53 is said as it is, or as an outage', () => {
    assert.equal(storageFaultOf(failedQuery(pgDatabaseError('53200', 'out of memory'))), 'out-of-memory');
    assert.equal(storageFaultOf(pgDatabaseError('53300', 'sorry, too many clients already')), 'connection-limit');
    assert.equal(storageFaultOf(pgDatabaseError('53000', 'insufficient resources')), 'outage');
    assert.equal(storageFaultOf(pgDatabaseError('53400', 'configuration limit exceeded')), 'outage');
    assert.equal(storageFaultOf(pgDatabaseError('57P01', 'terminating connection')), 'outage');
    assert.equal(storageFaultOf(pgDatabaseError('23505', 'duplicate key')), undefined);
  });

  it('a write a read-only server refuses (a standby, a primary a failover demoted) is a 503, said as such', async () => {
    const refused = failedQuery(pgDatabaseError('25006', 'cannot execute INSERT in a read-only transaction'));
    assert.equal(storageFaultOf(refused), 'read-only');
    assert.equal(
      auditFailureReason(refused),
      'audit database read-only (a standby, or a primary demoted by a failover)',
    );
    await assert.rejects(
      orUnavailable('the readings could not be stored', () => Promise.reject(refused)),
      (error: unknown) =>
        error instanceof AppError &&
        error.code === 'STORAGE_UNAVAILABLE' &&
        /^the database is read-only \(a standby, or a primary demoted by a failover\): the readings could not be stored; retry$/.test(
          error.detail,
        ),
    );
  });

  it('orUnavailable says the database is out of disk space, with Retry-After and without the path', async () => {
    const error = await orUnavailable('the findings could not be kept', () =>
      Promise.reject(failedQuery(pgDatabaseError('53100', EXTEND))),
    ).catch((e: unknown) => e);
    assert.ok(error instanceof AppError);
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    assert.equal(error.retryAfterSeconds, 1);
    assert.equal(error.detail, 'the database is out of disk space: the findings could not be kept; retry');
  });

  it("an audit commit's failure crosses its thread with its code, which names the cause for readiness and the 503", async () => {
    const { port1, port2 } = new MessageChannel();
    try {
      const failures = [pgDatabaseError('53100', EXTEND), pgliteError('ERROR', '53100', EXTEND)];
      serveCommits(port2, {
        claim: () => Promise.resolve(),
        commit: () => Promise.reject(failures.shift()!),
        close: () => Promise.resolve(),
      });
      for (const id of [1, 2]) {
        const reply = new Promise<AuditCommitReply>((answered) => port1.once('message', answered));
        port1.postMessage({ type: 'commit', id, writerId: 'w/0', drafts: [] });
        assert.deepEqual(await reply, { type: 'failed', id, message: EXTEND, code: '53100' });
      }
    } finally {
      port1.close();
    }
    // As AuditWriter rebuilds it on its side of the thread.
    const crossed = Object.assign(new Error(EXTEND), { code: '53100' });
    assert.equal(auditFailureReason(crossed), 'audit database out of disk space');
    assert.equal(
      auditFailureReason(Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' })),
      'audit database unreachable',
    );
    assert.equal(auditFailureReason(new Error('audit commit thread exited with code 1')), undefined);
  });
});

function catchOf(call: () => void): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  assert.fail('expected a throw');
}
