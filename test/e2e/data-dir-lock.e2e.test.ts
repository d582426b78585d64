import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { lockDataDir } from '../../src/database/embedded-postgres';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { freshDataDir } from '../fixtures/test-data-dir';

describe('one gateway per embedded database (DATA_DIR)', () => {
  const apps: NestFastifyApplication[] = [];
  after(async () => {
    for (const app of apps) await app.close();
  });

  it('refuses a second gateway on the same DATA_DIR, whose writes the first would never see', async () => {
    const dataDir = await freshDataDir();
    const first = await createTestApp({ DATA_DIR: dataDir });
    apps.push(first);
    await assert.rejects(createTestApp({ DATA_DIR: dataDir }), /in use by another running gateway/);
    // The first one serves on, its audit trail whole.
    const res = await authedHttp(first, ['auditor']).get('/v1/audit/verify').expect(200);
    assert.equal((res.body as { valid: boolean }).valid, true);
    await first.close();
    apps.pop();
    // Stopped, it hands the directory over.
    apps.push(await createTestApp({ DATA_DIR: dataDir }));
  });

  it('keeps the embedded database from other users of the host, also one made world-readable before', async () => {
    const dataDir = await freshDataDir();
    const pglite = join(dataDir, 'pglite');
    chmodSync(pglite, 0o755);
    chmodSync(join(pglite, 'pgdata'), 0o755);
    const app = await createTestApp({ DATA_DIR: dataDir });
    apps.push(app);
    for (const dir of [pglite, join(pglite, 'pgdata'), join(pglite, 'socket')]) {
      assert.equal(statSync(dir).mode & 0o007, 0, `${dir} is open to other users`);
    }
  });

  it('takes over the lock of a gateway that was killed (kill -9 leaves its socket file behind)', async () => {
    const dataDir = await freshDataDir();
    const lockPath = join(dataDir, 'pglite', 'socket', 'gateway.lock');
    mkdirSync(join(dataDir, 'pglite', 'socket'), { mode: 0o700 });
    const child = spawn(
      process.execPath,
      ['-e', `require('node:net').createServer().listen(${JSON.stringify(lockPath)}, () => console.log('held'))`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise((held) => child.stdout.once('data', held));
    await assert.rejects(lockDataDir(join(dataDir, 'pglite')), /in use by another running gateway/);
    child.kill('SIGKILL');
    await new Promise((exited) => child.once('exit', exited));
    assert.ok(existsSync(lockPath), 'a killed process leaves its socket file');
    const lock = await lockDataDir(join(dataDir, 'pglite'));
    assert.equal(lock.listening, true);
    await new Promise((closed) => lock.close(closed));
  });
});
