import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { claimSocketLock } from '../../src/common/socket-lock';

/** A socket file nobody listens on, as a process killed while holding it leaves behind. */
async function deadSocketFile(path: string): Promise<void> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(`${path}.live`, ok));
  linkSync(`${path}.live`, path);
  await new Promise((closed) => server.close(closed)); // unlinks `.live`; the link at `path` stays, dead
}

const release = (lock: Server): Promise<void> => new Promise((done) => lock.close(() => done()));

/** Whom a connection at `path` reaches: the server among `servers` that accepts it, or undefined. */
async function holderOf(path: string, servers: Server[]): Promise<Server | undefined> {
  const accepted = new Promise<Server>((done) => {
    for (const server of servers) server.once('connection', () => done(server));
  });
  const reached = await new Promise<boolean>((done) => {
    const socket = connect(path, () => done(true));
    socket.once('error', () => done(false));
  });
  return reached ? accepted : undefined;
}

describe('claimSocketLock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'socket-lock-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('one claim at a time: a second one while the first is held gets undefined, and takes it once released', async () => {
    const path = join(dir, 'plain.lock');
    const first = await claimSocketLock(path);
    assert.ok(first);
    assert.equal(await claimSocketLock(path), undefined);
    await release(first);
    assert.equal(existsSync(path), false, 'a released lock leaves no file');
    const second = await claimSocketLock(path);
    assert.ok(second);
    await release(second);
  });

  it('takes over a socket file left by a process that ended', async () => {
    const path = join(dir, 'left.lock');
    await deadSocketFile(path);
    const lock = await claimSocketLock(path);
    assert.ok(lock);
    assert.equal(await holderOf(path, [lock]), lock);
    await release(lock);
  });

  it('claims racing to take over one dead socket file: exactly one wins, and holds the path', async () => {
    const path = join(dir, 'raced.lock');
    for (let round = 0; round < 50; round++) {
      await deadSocketFile(path);
      const claims = await Promise.all([claimSocketLock(path), claimSocketLock(path), claimSocketLock(path)]);
      const winners = claims.filter((c): c is Server => c !== undefined);
      try {
        assert.equal(winners.length, 1, `round ${round}: ${winners.length} claims hold the lock`);
        assert.equal(await holderOf(path, winners), winners[0], `round ${round}: the path reaches another socket`);
      } finally {
        for (const winner of winners) await release(winner);
      }
    }
  });

  it('is not locked out by a takeover that a crash left dead (its socket file and the dead lock it was taking over)', async () => {
    const path = join(dir, 'crashed.lock');
    await deadSocketFile(path);
    await deadSocketFile(`${path}.takeover`);
    const lock = await claimSocketLock(path);
    assert.ok(lock);
    assert.equal(await holderOf(path, [lock]), lock);
    assert.equal(existsSync(`${path}.takeover`), false, 'the dead takeover was taken over and released');
    await release(lock);
  });

  it('refuses a path whose takeover would not fit in a Unix socket path, before any is needed', async () => {
    await assert.rejects(claimSocketLock(join(dir, 'x'.repeat(100))), /\.takeover is longer than a Unix socket path/);
  });
});
