import { randomBytes } from 'node:crypto';
import { linkSync, rmSync } from 'node:fs';
import { connect, Server } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

/** Longer Unix socket paths are cut (sun_path) without a word: two locks would then be one socket. */
export const MAX_SOCKET_PATH = 107;
/** How long a claim waits for another claimer in the middle of taking over a dead socket file. */
const TAKEOVER_PATIENCE_MS = 2000;

/**
 * Claims `path` for this process: a Unix socket listening there, which the kernel closes when the process
 * ends however it ends (a kill -9 included), where a pid file could name a pid reused since. Resolves with
 * the listening server (close it to release the claim: the path goes with it), or undefined while another
 * running process holds it; a socket file left by a process that ended is taken over. Other failures (no
 * such directory, no rights, a path too long for a socket) reject.
 *
 * Exactly one of several claims racing wins, a takeover included: the socket appears at `path` already
 * listening (bound under a name of its own, then hard-linked there, which fails where a file is), and a
 * dead file is removed only under a second claim of the same kind, `<path>.takeover`, after looking again:
 * without it, one claimer could remove the socket another had just put in place of the dead one. A
 * takeover left dead by a crash is taken over the same way.
 */
export async function claimSocketLock(path: string): Promise<Server | undefined> {
  assertFits(`${path}.takeover`);
  return claim(path);
}

async function claim(path: string): Promise<Server | undefined> {
  assertFits(path);
  const giveUp = Date.now() + TAKEOVER_PATIENCE_MS;
  for (;;) {
    const server = await listenAt(path);
    if (server) return server;
    const found = await probe(path);
    if (found === 'answers') return undefined;
    if (found === 'gone') continue;
    const takeover = await claim(`${path}.takeover`);
    if (takeover) {
      try {
        if ((await probe(path)) === 'dead') rmSync(path, { force: true }); // left by a process that ended
      } finally {
        await new Promise((closed) => takeover.close(closed));
      }
    } else if (Date.now() > giveUp) {
      return undefined; // another claimer is taking it over, for longer than a takeover takes
    } else {
      await delay(5);
    }
  }
}

function assertFits(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new Error(`${path} is longer than a Unix socket path may be (${MAX_SOCKET_PATH} bytes)`);
  }
}

/** A listening socket linked at `path`; closing it removes `path` first, while it still answers. */
class LockServer extends Server {
  linked = false;

  constructor(readonly lockPath: string) {
    super((socket) => socket.destroy());
  }

  override close(callback?: (error?: Error) => void): this {
    if (this.linked && this.listening) rmSync(this.lockPath, { force: true });
    this.linked = false;
    return super.close(callback);
  }
}

/** Listens under a name of its own beside `path`, then links `path` to it; undefined where a file is. */
async function listenAt(path: string): Promise<Server | undefined> {
  const server = new LockServer(path);
  const own = join(dirname(path), `.${randomBytes(6).toString('base64url')}`);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(own, () => ok());
  });
  try {
    linkSync(own, path);
    server.linked = true;
  } catch (error) {
    await new Promise((closed) => server.close(closed));
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  } finally {
    rmSync(own, { force: true });
  }
  return server.unref();
}

/** Whether a process listens at `path` ('dead': a socket file whose process ended), or nothing is there. */
function probe(path: string): Promise<'answers' | 'dead' | 'gone'> {
  return new Promise((done, fail) => {
    const socket = connect(path, () => {
      socket.destroy();
      done('answers');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') done('dead');
      else if (error.code === 'ENOENT') done('gone');
      // A listener whose backlog is full, or that closed (released) with this connection waiting.
      else if (error.code === 'EAGAIN' || error.code === 'ECONNRESET') done('answers');
      else fail(error);
    });
  });
}
