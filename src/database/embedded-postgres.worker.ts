/**
 * Runs embedded PostgreSQL (PGlite, WebAssembly) in its own thread and serves it on a Unix socket
 * with pglite-socket, so the gateway talks to it through the same `pg` driver and migrations as to
 * a PostgreSQL server, and its queries never run on the event loop that answers HTTP.
 */
import { rmSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedPostgresWorkerData {
  dataDir: string;
  socketPath: string;
  maxConnections: number;
}

export type EmbeddedPostgresMessage = { type: 'listening' } | { type: 'failed'; message: string } | { type: 'stopped' };

async function main(): Promise<void> {
  const { dataDir, socketPath, maxConnections } = workerData as EmbeddedPostgresWorkerData;
  const port = parentPort;
  if (!port) throw new Error('embedded-postgres.worker must run as a worker thread');
  const post = (message: EmbeddedPostgresMessage): void => port.postMessage(message);
  try {
    const db = await PGlite.create(dataDir);
    rmSync(socketPath, { force: true }); // left over by a process that did not stop cleanly
    const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections });
    await server.start();
    port.on('message', (msg: unknown) => {
      if (msg !== 'stop') return;
      void (async () => {
        await server.stop();
        await db.close();
        post({ type: 'stopped' });
      })();
    });
    post({ type: 'listening' });
  } catch (error) {
    post({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  }
}

void main();
