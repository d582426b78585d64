/**
 * Audit commits on embedded PGlite, run in the database's own thread (EmbeddedPostgres.attach):
 * the rows are chained and hashed there, and each group's INSERT goes to the database as one
 * exchange (Bind, Execute, Sync) of a statement prepared once. Through the socket the same commit
 * took a hop to a commit thread, the `pg` driver on both sides and one database call per protocol
 * message; in the gateway at c=64 that commit thread cost about 35 µs per row, and PGlite's thread
 * now spends about 11 µs more per row, hashing included.
 */
import { randomUUID } from 'node:crypto';
import type { MessagePort } from 'node:worker_threads';
import type { EmbeddedSession } from '../database/embedded-postgres.worker';
import { type ChainHead, type ChainStore, commitGroup, HEAD_SQL, INSERT_SQL, serveCommits } from './audit-commit';

/** Unique per attachment: a statement a failed first commit left prepared is not named again. */
const statementPrefix = `gateway_audit_insert_${randomUUID().slice(0, 8)}_`;
let statements = 0;

/** The store for commitGroup on the embedded session. */
export function embeddedChainStore(session: EmbeddedSession): ChainStore {
  const { serialize, bindText } = session;
  const executeSync = Buffer.concat([serialize.execute({}), serialize.sync()]);
  let statement: string | undefined;
  return {
    async head(writerId) {
      const [row] = await session.exchange(
        Buffer.concat([serialize.parse({ text: HEAD_SQL }), bindText('', [writerId]), executeSync]),
      );
      return row ? { seq: Number(row[0]), hash: String(row[1]) } : undefined;
    },
    async insert(rowsJson) {
      const name = statement ?? statementPrefix + String(++statements);
      const messages: Uint8Array[] = [bindText(name, [rowsJson]), executeSync];
      if (statement === undefined) messages.unshift(serialize.parse({ name, text: INSERT_SQL }));
      await session.exchange(Buffer.concat(messages));
      statement = name;
    },
  };
}

/** What AuditWriter hands this module with its port (EmbeddedPostgres.attach). */
export interface EmbeddedCommitData {
  /** The row hash key (rowHashKey of AUDIT_HMAC_SECRET): a secret, never logged. */
  rowKey: Uint8Array;
}

/** EmbeddedModule's entry: serves AuditWriter's commit requests on `port`, hashing rows under the key in `data`. */
export function attachEmbedded(session: EmbeddedSession, port: MessagePort, data: EmbeddedCommitData): void {
  const store = embeddedChainStore(session);
  const heads = new Map<string, ChainHead>();
  const key = Buffer.from(data.rowKey);
  serveCommits(port, {
    // Nothing to claim: this process alone opens the data directory (lockDataDir).
    claim: () => Promise.resolve(),
    commit: (writerId, drafts) => commitGroup(store, heads, writerId, drafts, key),
    // Nothing to release: the statement belongs to the database's session.
    close: () => Promise.resolve(),
  });
}
