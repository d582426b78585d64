/**
 * A gateway's claim on its audit writer id in a PostgreSQL server: a session-level advisory lock held on
 * a connection of its own for as long as the process writes. Two processes with one AUDIT_WRITER_ID would
 * each append to the same chains (`<writer id>/<lane>`) from heads of their own; the unique (writer_id, seq)
 * index then fails one commit after another. The lock goes with the connection (the process killed, the
 * server restarted), so it is taken again before the next commit, which fails while another process holds
 * it. Embedded PGlite needs none: one process opens a data directory (lockDataDir), and two directories are
 * two databases, with chains of their own.
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
      const { rows } = await client.query<{ claimed: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS claimed', [
        writerClaimKey(this.writerId),
      ]);
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
