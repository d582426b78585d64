import { chmodSync, statSync } from 'node:fs';
import type { Server } from 'node:net';
import { join, resolve } from 'node:path';
import { Logger } from '@nestjs/common';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { makeDirSync } from '../common/make-dir';
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
   * attachEmbedded) into the database's thread, and returns a port to talk to it there. `data`
   * (structured-cloned, as a Worker's workerData) is handed to attachEmbedded with the port: what the
   * module needs from the main thread, such as a key. The port closes if the database's thread ends.
   * Throws once the database has stopped.
   */
  attach(module: string, data?: unknown): MessagePort;
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
  makeDirSync(path, 0o700);
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

/** Waits after a failed restart before the next try: doubling from 1 s to 10 s. */
const RESTART_BACKOFF_MS = [1000, 2000, 4000, 10_000];
/** A restarted database that neither listens nor fails in this long is given up and tried again. */
const RESTART_START_TIMEOUT_MS = 60_000;

/** What a call made while the embedded database restarts is refused with: SQLSTATE 57P03, cannot_connect_now. */
export function restartingError(): Error {
  return Object.assign(new Error('the embedded database is restarting'), { code: '57P03' });
}

/** Starts one database thread; resolves with it once it listens, rejects (the thread ended) when it could not. */
async function spawnWorker(dir: string, data: EmbeddedPostgresWorkerData, timeoutMs?: number): Promise<Worker> {
  const worker = new Worker(join(__dirname, 'embedded-postgres.worker.js'), { workerData: data });
  let timer: NodeJS.Timeout | undefined;
  let onMessage: ((msg: EmbeddedPostgresMessage) => void) | undefined;
  let onEnd: ((end: Error | number) => void) | undefined;
  try {
    await new Promise<void>((ok, fail) => {
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => fail(new Error(`it did not start within ${timeoutMs / 1000} s`)), timeoutMs);
      }
      onMessage = (msg) => {
        if (msg.type === 'listening') ok();
        else if (msg.type === 'failed') fail(new Error(`embedded database in ${dir} did not start: ${msg.message}`));
      };
      onEnd = (end) =>
        fail(typeof end === 'number' ? new Error(`embedded database worker exited with code ${end}`) : end);
      worker.on('message', onMessage).on('error', onEnd).on('exit', onEnd);
    });
  } catch (error) {
    await worker.terminate();
    throw error;
  } finally {
    clearTimeout(timer);
    // Only these listeners: removeAllListeners also takes the Worker's own, after which no message arrives.
    if (onMessage) worker.off('message', onMessage);
    if (onEnd) worker.off('error', onEnd).off('exit', onEnd);
  }
  return worker;
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
  const logger = new Logger('Database');
  /** The thread serving now; undefined while a restart replaces it. */
  let current: Worker | undefined = await spawnWorker(dir, workerData);
  let stopping: Promise<void> | undefined;
  let restarting: Promise<void> | undefined;
  /** Ends a restart's wait between tries at once (stop). */
  let wake: (() => void) | undefined;

  /**
   * A database thread that PANICked, or ended without being asked, is replaced: the old one is ended (its
   * socket clients and attached ports close, so every caller fails over to a refusal and reconnects), and a
   * new PGlite opens the same data directory, replaying its WAL as PostgreSQL does after a crash. While that
   * cannot start (a disk still full), it is tried again with a growing wait, until it starts or the gateway
   * stops. Nothing committed is lost; what was in flight was refused, not answered.
   */
  const restart = (worker: Worker, why: string): void => {
    if (stopping || restarting || current !== worker) return;
    current = undefined;
    logger.error({ msg: `embedded database ${why}; restarting it`, dataDir: dir });
    restarting = (async () => {
      await worker.terminate();
      for (let attempt = 0; !stopping; attempt++) {
        try {
          const next = await spawnWorker(dir, workerData, RESTART_START_TIMEOUT_MS);
          if (stopping) {
            await next.terminate();
            return;
          }
          watch(next);
          current = next;
          logger.log({ msg: 'embedded database restarted', attempts: attempt + 1 });
          return;
        } catch (error) {
          // One line per try while it keeps failing would flood a log during a long outage: the first and then every tenth.
          if (attempt % 10 === 0) {
            logger.warn({
              msg: 'embedded database could not be restarted yet; trying again',
              attempts: attempt + 1,
              error: error instanceof Error ? error.message : String(error),
            });
          }
          const wait = RESTART_BACKOFF_MS[Math.min(attempt, RESTART_BACKOFF_MS.length - 1)];
          await new Promise<void>((later) => {
            wake = later;
            setTimeout(later, wait);
          });
        }
      }
    })().finally(() => (restarting = undefined));
  };

  const watch = (worker: Worker): void => {
    worker.on('message', (msg: EmbeddedPostgresMessage) => {
      if (msg.type === 'panicked') {
        restart(
          worker,
          'stopped after a PANIC (PostgreSQL could not go on, e.g. no disk space for its write-ahead log)',
        );
      }
    });
    worker.once('error', (error) => restart(worker, `thread failed: ${error.message}`));
    worker.once('exit', (code) => restart(worker, `thread exited with code ${code}`));
  };
  watch(current);

  return {
    host: socketDir,
    port: SOCKET_PORT,
    // An attached port closes by itself when the thread ends (Node closes a channel whose other end died).
    attach: (module: string, data?: unknown): MessagePort => {
      if (stopping) throw new Error('the embedded database has stopped');
      if (!current) throw restartingError();
      const { port1, port2 } = new MessageChannel();
      current.postMessage({ type: 'attach', module, port: port2, data } satisfies EmbeddedAttach, [port2]);
      return port1;
    },
    stop: () =>
      (stopping ??= (async () => {
        wake?.();
        await restarting;
        const worker = current;
        current = undefined;
        // Its watch sees `current` moved on and leaves its exit alone.
        if (worker) {
          await new Promise<void>((ok) => {
            worker.once('exit', () => ok());
            worker.on('message', (msg: EmbeddedPostgresMessage) => {
              if (msg.type === 'stopped') void worker.terminate();
            });
            worker.postMessage('stop');
          });
        }
        await new Promise<void>((ok) => lock.close(() => ok()));
      })()),
  };
}
