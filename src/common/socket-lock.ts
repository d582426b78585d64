import { rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';

/**
 * Claims `path` for this process: a Unix socket listening there, which the kernel closes when the process
 * ends however it ends (a kill -9 included), where a pid file could name a pid reused since. Resolves with
 * the listening server (close it to release the claim), or undefined while another running process holds
 * it; a socket file left by a process that ended is taken over. Other failures (no such directory, no
 * rights) reject.
 */
export async function claimSocketLock(path: string): Promise<Server | undefined> {
  for (let attempt = 1; ; attempt++) {
    const server = createServer((socket) => socket.destroy());
    try {
      await new Promise<void>((ok, fail) => {
        server.once('error', fail);
        server.listen(path, () => ok());
      });
      return server.unref();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt > 1) throw error;
    }
    if (await answers(path)) return undefined;
    rmSync(path, { force: true }); // left by a process that ended without closing it
  }
}

function answers(path: string): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(path, () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}
