/**
 * The audit commit thread for a PostgreSQL server (DATABASE_URL): the event loop that answers HTTP
 * hands it each group of rows (AuditWriter's group commit), and it writes them (audit-commit.ts)
 * over its own `pg` pool. Hashing, serialising and the database round trip were most of what the
 * audit trail cost the event loop; on this thread they use the core the event loop leaves idle.
 * With embedded PGlite the same work runs in the database's own thread (audit-commit.embedded.ts).
 */
import { randomUUID } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { Pool, type PoolClient, type PoolConfig } from 'pg';
import { errorCodeOf } from '../database/storage-unavailable';
import {
  type AuditCommitReply,
  type ChainHead,
  commitGroup,
  HEAD_SQL,
  LOCKED_INSERT_SQL,
  serveCommits,
} from './audit-commit';
import { WriterClaim } from './audit-writer-claim';

export interface AuditWorkerData {
  /** Connection settings of the gateway's DataSource, with a pool of one connection per lane. */
  pool: PoolConfig;
  /** This process's writer id (its chains are `<writer id>/<lane>`), claimed before any commit. */
  writerId: string;
  /** The row hash key (rowHashKey of AUDIT_HMAC_SECRET): a secret, never logged. */
  rowKey: Uint8Array;
}

/**
 * A prepared statement's name on one connection: unique per connection and per thread, in case
 * several connections end in one backend session.
 */
const statementPrefix = `audit_insert_${randomUUID().slice(0, 8)}_`;
const statementNames = new WeakMap<PoolClient, string>();
let statements = 0;

/**
 * SQLSTATE 26000: a statement prepared on a connection was not in the server session its next use reached. A pooler
 * in transaction mode (PgBouncer's, before 1.21 or without max_prepared_statements) hands each transaction to any of
 * its server connections, so what one prepared is gone from the next.
 */
const STATEMENT_GONE = '26000';

/** The insert is prepared until a prepared statement was once gone (STATEMENT_GONE); then parsed at each commit. */
let preparing = true;

function statementName(client: PoolClient): string {
  let name = statementNames.get(client);
  if (name === undefined) statementNames.set(client, (name = statementPrefix + String(++statements)));
  return name;
}

function main(): void {
  const port = parentPort;
  if (!port) throw new Error('audit-writer.worker must run as a worker thread');
  const data = workerData as AuditWorkerData;
  const key = Buffer.from(data.rowKey);
  const pool = new Pool(data.pool);
  // An idle connection that the database closes (a restart) is replaced at the next commit.
  pool.on('error', () => undefined);
  // On a connection of its own, kept alive so that one a network dropped is noticed.
  const claim = new WriterClaim(
    {
      ...data.pool,
      application_name: `${data.pool.application_name ?? 'inference-gateway-audit'}-claim`,
      keepAlive: true,
    },
    data.writerId,
  );
  const heads = new Map<string, ChainHead>();
  /** The claim under which `heads` were read. */
  let headsOf = 0;
  serveCommits(port, {
    claim: () => claim.hold(),
    commit: async (writerId, drafts) => {
      await claim.hold();
      // Taken again, the claim may follow another process's rows: the heads are read anew.
      if (claim.generation !== headsOf) heads.clear();
      headsOf = claim.generation;
      const begun = claim.generation;
      const client = await pool.connect();
      let failure: Error | undefined;
      try {
        return await commitGroup(
          {
            head: async (id) => {
              const found = (await client.query<{ seq: string; hash: string }>(HEAD_SQL, [id])).rows[0];
              return found ? { seq: Number(found.seq), hash: found.hash } : undefined;
            },
            insert: async (rowsJson) => {
              if (!preparing) {
                await client.query(LOCKED_INSERT_SQL, [rowsJson]);
                return;
              }
              try {
                await client.query({ name: statementName(client), text: LOCKED_INSERT_SQL, values: [rowsJson] });
              } catch (error) {
                if (errorCodeOf(error) !== STATEMENT_GONE) throw error;
                // Its Bind failed: nothing ran. The same group goes again, unprepared, now and from now on.
                preparing = false;
                port.postMessage({
                  type: 'notice',
                  message:
                    'the audit insert is no longer prepared: a statement prepared on a connection was gone at its ' +
                    'next use (a connection pooler in transaction mode, such as PgBouncer before 1.21, hands each ' +
                    'transaction to any server connection); it is parsed at each commit from now on',
                } satisfies AuditCommitReply);
                await client.query(LOCKED_INSERT_SQL, [rowsJson]);
              }
            },
          },
          heads,
          writerId,
          drafts,
          key,
        );
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
        throw failure;
      } finally {
        // After a failure the connection is dropped: it may be the one a database restart broke.
        client.release(failure);
        // A head left by a commit begun under an earlier claim may be behind another process's rows.
        if (claim.generation !== begun) heads.delete(writerId);
      }
    },
    close: async () => {
      await pool.end();
      await claim.release();
    },
  });
}

main();
