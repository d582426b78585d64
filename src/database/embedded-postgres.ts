import { chmodSync, mkdirSync, statSync } from 'node:fs';
import type { Server } from 'node:net';
import { join, resolve } from 'node:path';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { claimSocketLock } from '../common/socket-lock';
import type { AppConfig } from '../config/app-config';
import type { EmbeddedAttach, EmbeddedPostgresMessage, EmbeddedPostgresWorkerData } from './embedded-postgres.worker';

/** The port number only names the socket file (`.s.PGSQL.<port>`), as for a PostgreSQL server. */
const SOCKET_PORT = 5432;

/** The Nest injection token of the running EmbeddedPostgres, or null when DATABASE_URL names a server. */
export const EMBEDDED_POSTGRES = Symbol('EmbeddedPostgres');

export interface EmbeddedPostgres {
  /** A Unix-socket directory and port for the `pg` driver. */
  host: string;
  port: number;
  /**
   * Loads `module` (the absolute path of a compiled module exporting EmbeddedModule's
   * attachEmbedded) into the database's thread, and returns a port to talk to it there. The port
   * closes if the database's thread ends. Throws once the database has stopped.
   */
  attach(module: string): MessagePort;
  stop(): Promise<void>;
}

/**
 * What production is told at boot on the embedded database: PGlite runs with fsync off and its Node
 * file system cannot flush (electric-sql/pglite#1107), so a committed row is in the operating system's
 * hands, safe from a gateway crash but not from a power cut or a host crash.
 */
export function embeddedDurabilityWarning(config: Pick<AppConfig, 'NODE_ENV' | 'DATABASE_URL'>): string | undefined {
  if (config.DATABASE_URL || config.NODE_ENV !== 'production') return undefined;
  return (
    'embedded PGlite: committed rows survive a crash of the gateway, not a power cut or a crash of the host ' +
    '(PGlite does not flush to disk); set DATABASE_URL to a PostgreSQL server where they must'
  );
}

/**
 * Claims the embedded database in `dir` for this process (claimSocketLock: a socket the kernel closes with
 * the process). Two PGlite instances on one data directory do not see each other's writes: each serves its
 * own view, and the one that writes last wins, silently dropping the other's committed audit rows.
 */
export async function lockDataDir(dir: string): Promise<Server> {
  const lock = await claimSocketLock(join(dir, 'socket', 'gateway.lock'));
  if (!lock) {
    throw new Error(
      `the embedded database in ${dir} is in use by another running gateway: give each gateway its own DATA_DIR, ` +
        'or set DATABASE_URL to share a PostgreSQL server',
    );
  }
  return lock;
}

/**
 * Makes `path` (and what it lacks above it) for this user alone, or takes from an existing one what other
 * users may do and what its group may write: PostgreSQL's own rule for a data directory (0700, or 0750 for
 * a group that reads backups). PGlite writes its files as the umask leaves them, readable by everyone.
 */
export function privateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o027) !== 0) chmodSync(path, mode & ~0o027);
}

/** Starts PGlite on `dataDir` in a worker thread; resolves once it accepts connections. */
export async function startEmbeddedPostgres(dataDir: string, maxConnections: number): Promise<EmbeddedPostgres> {
  const dir = resolve(dataDir);
  const socketDir = join(dir, 'socket');
  // The database holds the audit trail, kept findings and finance answers; its socket takes any query.
  privateDir(dir);
  privateDir(join(dir, 'pgdata'));
  privateDir(socketDir);
  const lock = await lockDataDir(dir);
  try {
    return await startWorker(dir, socketDir, maxConnections, lock);
  } catch (error) {
    lock.close();
    throw error;
  }
}

async function startWorker(
  dir: string,
  socketDir: string,
  maxConnections: number,
  lock: Server,
): Promise<EmbeddedPostgres> {
  const workerData: EmbeddedPostgresWorkerData = {
    dataDir: join(dir, 'pgdata'),
    socketPath: join(socketDir, `.s.PGSQL.${SOCKET_PORT}`),
    maxConnections,
  };
  const worker = new Worker(join(__dirname, 'embedded-postgres.worker.js'), { workerData });
  await new Promise<void>((ok, fail) => {
    const onMessage = (msg: EmbeddedPostgresMessage): void => {
      if (msg.type === 'listening') ok();
      else if (msg.type === 'failed') fail(new Error(`embedded database in ${dir} did not start: ${msg.message}`));
    };
    worker.on('message', onMessage);
    worker.once('error', fail);
    worker.once('exit', (code) => fail(new Error(`embedded database worker exited with code ${code}`)));
  });
  worker.removeAllListeners('exit');
  // An attached port closes by itself when the thread ends (Node closes a channel whose other end died).
  let exited = false;
  worker.once('exit', () => (exited = true));
  let stopping: Promise<void> | undefined;
  return {
    host: socketDir,
    port: SOCKET_PORT,
    attach: (module: string): MessagePort => {
      if (exited || stopping) throw new Error('the embedded database has stopped');
      const { port1, port2 } = new MessageChannel();
      worker.postMessage({ type: 'attach', module, port: port2 } satisfies EmbeddedAttach, [port2]);
      return port1;
    },
    stop: () =>
      (stopping ??= new Promise<void>((ok) => {
        worker.once('exit', () => lock.close(() => ok()));
        worker.on('message', (msg: EmbeddedPostgresMessage) => {
          if (msg.type === 'stopped') void worker.terminate();
        });
        worker.postMessage('stop');
      })),
  };
}
