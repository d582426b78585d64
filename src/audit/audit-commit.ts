/**
 * Where audit groups are written: each row placed in its chain (seq, previous hash, hash), the
 * group written in one INSERT. It runs off the event loop that answers HTTP, in one of two places:
 * the audit commit thread with its own `pg` pool (audit-writer.worker.ts, for a PostgreSQL server),
 * or embedded PGlite's own thread, beside the database (audit-commit.embedded.ts). Both serve the
 * same requests from AuditWriter over a port.
 *
 * This and AuditRepository (reads) are the only code that touches the audit_events table.
 */
import type { MessagePort } from 'node:worker_threads';
import { AUDIT_ORDER_LOCK, sharedLockCte } from '../database/insert-order';
import { errorCodeOf } from '../database/storage-unavailable';
import { type AuditRow, GENESIS_HASH, KEYED_HASH, keyedHashOf } from './audit-chain';
import type { AuditDraft } from './audit-writer.service';

/** `claim` asks that the writer id be held before the first commit (audit-writer-claim.ts). */
export type AuditCommitRequest =
  | { type: 'claim'; id: number }
  | { type: 'commit'; id: number; writerId: string; drafts: AuditDraft[] }
  | { type: 'close' };

/**
 * `notice`: something the main thread logs as a warning (the commit thread has no logger).
 * A commit's answer carries its chain's new head, so the main thread knows it without a query (anchors).
 * A failure carries its error's message and its code (a SQLSTATE, or an errno such as ENOSPC): the code
 * is what tells a full disk from a server away (storageFaultOf), and the message alone does not.
 */
export type AuditCommitReply =
  | { type: 'claimed'; id: number }
  | { type: 'committed'; id: number; seq: number; hash: string }
  | { type: 'failed'; id: number; message: string; code?: string }
  | { type: 'notice'; message: string }
  | { type: 'closed' };

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
  ['hash_version', 'hashVersion', 'smallint'],
];

/**
 * One INSERT of every row, hence one transaction: all of them are committed, or none. The rows
 * travel as one JSON array (json_to_recordset), so the statement is the same whatever the group's
 * size, and it is prepared once per connection: PostgreSQL then skips parsing and planning it at
 * each commit, which cost about as much server CPU as inserting 20 rows.
 */
export const INSERT_SQL =
  `INSERT INTO audit_events (${INSERT_COLUMNS.map(([column]) => column).join(', ')}) ` +
  `SELECT ${INSERT_COLUMNS.map(([, key]) => `"${key}"`).join(', ')} FROM json_to_recordset($1::json) AS r(` +
  `${INSERT_COLUMNS.map(([, key, type]) => `"${key}" ${type}`).join(', ')})`;

/**
 * INSERT_SQL for a PostgreSQL server: the shared AUDIT_ORDER_LOCK (src/database/insert-order.ts: it orders the
 * trail's inserts against its listing, AuditRepository.find) is taken (a materialised CTE, joined) before the first
 * row is formed, hence before any id is drawn from the sequence, and held to the commit.
 */
export const LOCKED_INSERT_SQL =
  sharedLockCte(AUDIT_ORDER_LOCK) + INSERT_SQL.replace(' FROM json_to_recordset(', ' FROM ordered, json_to_recordset(');

export const HEAD_SQL = 'SELECT seq, hash FROM audit_events WHERE writer_id = $1 ORDER BY seq DESC LIMIT 1';

export interface ChainHead {
  seq: number;
  hash: string;
}

/** The two statements a commit needs, on one connection. */
export interface ChainStore {
  /** The last row of a chain as stored, or undefined for a chain with no row yet. */
  head(writerId: string): Promise<ChainHead | undefined>;
  /** Runs INSERT_SQL with the rows as one JSON array. */
  insert(rowsJson: string): Promise<void>;
}

/**
 * Writes one group at the end of a chain and returns the chain's new head. The head moves only after
 * the commit; after a failure it is re-read from the database, so a commit whose answer was lost is
 * neither repeated nor skipped. Each row's hash is keyed (KEYED_HASH) under `key`, the row hash key
 * (rowHashKey), so that whoever can write the table but lacks AUDIT_HMAC_SECRET cannot forge a row
 * that verifies.
 */
export async function commitGroup(
  store: ChainStore,
  heads: Map<string, ChainHead>,
  writerId: string,
  drafts: AuditDraft[],
  key: Buffer,
): Promise<ChainHead> {
  try {
    const head = heads.get(writerId) ?? (await store.head(writerId)) ?? { seq: 0, hash: GENESIS_HASH };
    let { seq, hash } = head;
    const rows = drafts.map((draft) => {
      // The draft is this thread's own copy: completed in place.
      const row = draft as AuditRow;
      row.writerId = writerId;
      row.seq = ++seq;
      row.prevHash = hash;
      row.hashVersion = KEYED_HASH;
      row.hash = hash = keyedHashOf(key, row);
      return row;
    });
    await store.insert(JSON.stringify(rows));
    const next = { seq, hash };
    heads.set(writerId, next);
    return next;
  } catch (error) {
    heads.delete(writerId);
    throw error;
  }
}

/**
 * The port's end of AuditWriter's requests: `claim` holds the writer id, `commit` writes one group, `close`
 * releases what it holds.
 */
export function serveCommits(
  port: Pick<MessagePort, 'on' | 'postMessage'>,
  handlers: {
    claim: () => Promise<void>;
    commit: (writerId: string, drafts: AuditDraft[]) => Promise<ChainHead>;
    close: () => Promise<void>;
  },
): void {
  const reply = (message: AuditCommitReply): void => port.postMessage(message);
  const failed = (id: number) => (error: unknown) => {
    const code = errorCodeOf(error);
    const message = error instanceof Error ? error.message : String(error);
    reply({ type: 'failed', id, message, ...(code === undefined ? {} : { code }) });
  };
  port.on('message', (request: AuditCommitRequest) => {
    switch (request.type) {
      case 'close':
        void handlers.close().finally(() => reply({ type: 'closed' }));
        return;
      case 'claim':
        handlers.claim().then(() => reply({ type: 'claimed', id: request.id }), failed(request.id));
        return;
      case 'commit':
        handlers
          .commit(request.writerId, request.drafts)
          .then(({ seq, hash }) => reply({ type: 'committed', id: request.id, seq, hash }), failed(request.id));
    }
  });
}
