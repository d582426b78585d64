/**
 * A gateway's claim on its audit writer id in a PostgreSQL server: an advisory lock held on a connection of its
 * own for as long as the process writes. Two processes with one AUDIT_WRITER_ID would each append to the same
 * chains (`<writer id>/<lane>`) from heads of their own; the unique (writer_id, seq) index then fails one commit
 * after another. The lock goes with the connection (the process killed, the server restarted), so it is taken
 * again before the next commit, which fails while another process holds it. Embedded PGlite needs none: one
 * process opens a data directory (lockDataDir), and two directories are two databases, with chains of their own.
 *
 * The lock is a transaction's (pg_try_advisory_xact_lock), held by leaving the transaction open, not a session's:
 * behind a pooler in transaction mode (PgBouncer's) the server session that took a session lock goes back to the
 * pool at once, holding it for whichever client it serves next, and a second gateway handed that session takes it
 * again. An open transaction keeps its server session to itself there too. Between statements it holds no snapshot
 * (read committed, nothing written), so it holds back no vacuum; it shows as idle in transaction, and sets
 * idle_in_transaction_session_timeout to 0 for itself, so that a server that ends such sessions leaves it be.
 */
import { createHash } from 'node:crypto';
import { Client, type ClientConfig } from 'pg';

/** The code of the error a claim fails with while another process holds the writer id (AuditWriter says so). */
export const WRITER_ID_CLAIMED = 'WRITER_ID_CLAIMED';

/** The advisory lock's key: 64 bits of sha256 over the writer id, apart from other users of advisory locks. */
export function writerClaimKey(writerId: string): string {
  return createHash('sha256')
    .update(`inference-gateway audit writer id\n${writerId}`)
    .digest()
    .readBigInt64BE(0)
    .toString();
}

export class WriterClaim {
  private client: Client | undefined;
  private taking: Promise<void> | undefined;
  /** Counts the claims taken: a commit begun under an earlier one must not leave its head behind. */
  generation = 0;

  constructor(
    private readonly config: ClientConfig,
    private readonly writerId: string,
  ) {}

  /** Resolves while this process holds the writer id, taking it (again) when it has not; rejects otherwise. */
  hold(): Promise<void> {
    if (this.client) return Promise.resolve();
    return (this.taking ??= this.take().finally(() => (this.taking = undefined)));
  }

  async release(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.end();
  }

  private async take(): Promise<void> {
    const client = new Client(this.config);
    client.on('error', () => undefined); // a dropped connection ends it: 'end' follows
    try {
      await client.connect();
      await client.query('BEGIN');
      // A server that ends sessions idle in a transaction (idle_in_transaction_session_timeout, set by many DBAs
      // against forgotten transactions) would end this one every so often, a FATAL line in its log each time, and the
      // claim would lapse until the next commit took it again: this transaction is meant to stay open, holding
      // nothing but its lock. SET LOCAL lasts as long as the transaction, on the server session it keeps.
      await client.query('SET LOCAL idle_in_transaction_session_timeout = 0');
      const { rows } = await client.query<{ claimed: boolean }>(
        'SELECT pg_try_advisory_xact_lock($1::bigint) AS claimed',
        [writerClaimKey(this.writerId)],
      );
      if (rows[0]?.claimed !== true) {
        throw Object.assign(
          new Error(
            `audit writer id "${this.writerId}" is in use by another running gateway on this database ` +
              '(both would append to its hash chains): give each gateway its own AUDIT_WRITER_ID, or leave it unset ' +
              '(host:pid:start time)',
          ),
          { code: WRITER_ID_CLAIMED },
        );
      }
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    client.once('end', () => {
      if (this.client === client) this.client = undefined;
    });
    this.client = client;
    this.generation++;
  }
}
