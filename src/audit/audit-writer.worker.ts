/**
 * The audit trail's commit thread. The event loop that answers HTTP hands it each group of rows
 * (AuditWriter's group commit); here each row is placed in its chain (seq, previous hash, hash) and
 * the group is written in one INSERT over its own `pg` pool, to PostgreSQL or to embedded PGlite's
 * socket. Hashing, serialising and the database round trip were most of what the audit trail cost
 * the event loop; on this thread they use the core the event loop leaves idle.
 *
 * This and AuditRepository (reads) are the only code that touches the audit_events table.
 */
import { randomUUID } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { Pool, type PoolClient, type PoolConfig } from 'pg';
import { type AuditRow, GENESIS_HASH, hashOf } from './audit-chain';
import type { AuditDraft } from './audit-writer.service';

export interface AuditWorkerData {
  /** Connection settings of the gateway's DataSource, with a pool of one connection per lane. */
  pool: PoolConfig;
}

export type AuditWorkerRequest =
  { type: 'commit'; id: number; writerId: string; drafts: AuditDraft[] } | { type: 'close' };

export type AuditWorkerReply =
  { type: 'committed'; id: number } | { type: 'failed'; id: number; message: string } | { type: 'closed' };

/** Each column with the AuditRow key it is read from, by json_to_recordset, and its type. */
const INSERT_COLUMNS: Array<[string, keyof AuditRow, string]> = [
  ['writer_id', 'writerId', 'varchar'],
  ['seq', 'seq', 'bigint'],
  ['occurred_at', 'occurredAt', 'timestamptz'],
  ['actor', 'actor', 'varchar'],
  ['roles', 'roles', 'jsonb'],
  ['tenant', 'tenant', 'varchar'],
  ['action', 'action', 'varchar'],
  ['model_name', 'modelName', 'varchar'],
  ['model_version', 'modelVersion', 'varchar'],
  ['request_id', 'requestId', 'varchar'],
  ['client_address', 'clientAddress', 'varchar'],
  ['input_digest', 'inputDigest', 'char(64)'],
  ['output_summary', 'outputSummary', 'jsonb'],
  ['outcome', 'outcome', 'varchar'],
  ['status_code', 'statusCode', 'smallint'],
  ['latency_ms', 'latencyMs', 'double precision'],
  ['prev_hash', 'prevHash', 'char(64)'],
  ['hash', 'hash', 'char(64)'],
];

/**
 * One INSERT of every row, hence one transaction: all of them are committed, or none. The rows
 * travel as one JSON array (json_to_recordset), so the statement is the same whatever the group's
 * size, and it is prepared once per connection: PostgreSQL then skips parsing and planning it at
 * each commit, which cost about as much server CPU as inserting 20 rows.
 */
const INSERT_SQL =
  `INSERT INTO audit_events (${INSERT_COLUMNS.map(([column]) => column).join(', ')}) ` +
  `SELECT ${INSERT_COLUMNS.map(([, key]) => `"${key}"`).join(', ')} FROM json_to_recordset($1::json) AS r(` +
  `${INSERT_COLUMNS.map(([, key, type]) => `"${key}" ${type}`).join(', ')})`;

const HEAD_SQL = 'SELECT seq, hash FROM audit_events WHERE writer_id = $1 ORDER BY seq DESC LIMIT 1';

/**
 * A prepared statement's name on one connection: unique per connection and per thread, since
 * embedded PGlite serves every socket connection from one backend session, where a second PREPARE
 * of a name would fail.
 */
const statementPrefix = `audit_insert_${randomUUID().slice(0, 8)}_`;
const statementNames = new WeakMap<PoolClient, string>();
let statements = 0;

function statementName(client: PoolClient): string {
  let name = statementNames.get(client);
  if (name === undefined) statementNames.set(client, (name = statementPrefix + String(++statements)));
  return name;
}

/**
 * Writes one group at the end of a chain. The head moves only after the commit; after a failure
 * it is re-read from the database, so a commit whose answer was lost is neither repeated nor skipped.
 */
async function commit(
  pool: Pool,
  heads: Map<string, { seq: number; hash: string }>,
  writerId: string,
  drafts: AuditDraft[],
): Promise<void> {
  const client = await pool.connect();
  let failure: Error | undefined;
  try {
    let head = heads.get(writerId);
    if (!head) {
      const found = (await client.query<{ seq: string; hash: string }>(HEAD_SQL, [writerId])).rows[0];
      head = found ? { seq: Number(found.seq), hash: found.hash } : { seq: 0, hash: GENESIS_HASH };
    }
    let { seq, hash } = head;
    const rows = drafts.map((draft) => {
      // The draft is this thread's own copy: completed in place.
      const row = draft as AuditRow;
      row.writerId = writerId;
      row.seq = ++seq;
      row.prevHash = hash;
      row.hash = hash = hashOf(row);
      return row;
    });
    await client.query({ name: statementName(client), text: INSERT_SQL, values: [JSON.stringify(rows)] });
    heads.set(writerId, { seq, hash });
  } catch (error) {
    heads.delete(writerId);
    failure = error instanceof Error ? error : new Error(String(error));
    throw failure;
  } finally {
    // After a failure the connection is dropped: it may be the one a database restart broke.
    client.release(failure);
  }
}

function main(): void {
  const port = parentPort;
  if (!port) throw new Error('audit-writer.worker must run as a worker thread');
  const pool = new Pool((workerData as AuditWorkerData).pool);
  // An idle connection that the database closes (a restart) is replaced at the next commit.
  pool.on('error', () => undefined);
  const heads = new Map<string, { seq: number; hash: string }>();
  const reply = (message: AuditWorkerReply): void => port.postMessage(message);
  port.on('message', (request: AuditWorkerRequest) => {
    if (request.type === 'close') {
      void pool.end().finally(() => reply({ type: 'closed' }));
      return;
    }
    commit(pool, heads, request.writerId, request.drafts).then(
      () => reply({ type: 'committed', id: request.id }),
      (error: Error) => reply({ type: 'failed', id: request.id, message: error.message }),
    );
  });
}

main();
