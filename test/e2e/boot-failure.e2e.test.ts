import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { FIXTURE_MODELS, REPO_ROOT } from '../fixtures/paths';
import { TEST_AUTH_ENV } from '../fixtures/test-auth';
import { emptyDataDir, freshDataDir } from '../fixtures/test-data-dir';

/** The test runner's environment, less what would point a gateway at a real database or broker. */
const { DATABASE_URL: _database, MQTT_URL: _broker, ...inherited } = process.env;

/**
 * Starts the built gateway (dist-test/src/main.js) with `env`, which must make its boot fail, and checks
 * how it failed: exit code 1, one line on stderr (the JSON `boot failed` record, no stack), and no error
 * logged on stdout. Returns the line's reason.
 */
async function failedBoot(env: Record<string, string>): Promise<string> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'dist-test', 'src', 'main.js')], {
    env: {
      ...inherited,
      NODE_ENV: 'test',
      LOG_LEVEL: 'log',
      MODELS_DIR: FIXTURE_MODELS,
      INFERENCE_DEVICE: 'cpu',
      WORKER_POOL_SIZE: '1',
      HOST: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((exited) => child.once('close', exited));
  assert.equal(code, 1, `exit code; stderr: ${stderr}`);
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${stderr}`);
  assert.doesNotMatch(stderr, /\bat .+:\d+:\d+\)?$/m, 'a stack trace');
  const record = JSON.parse(lines[0]) as {
    level: string;
    context: string;
    message: { msg: string; error: string; stack?: string };
  };
  assert.equal(record.level, 'fatal');
  assert.equal(record.context, 'Bootstrap');
  assert.equal(record.message.msg, 'boot failed');
  assert.equal(record.message.stack, undefined);
  for (const line of stdout.split('\n').filter((l) => l.trim() !== '')) {
    assert.doesNotMatch(line, /"level":"(error|fatal)"/, `an error logged on stdout: ${line}`);
  }
  return record.message.error;
}

/** A TCP port on 127.0.0.1 that nothing listens on (taken, then given back). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  const { port } = server.address() as { port: number };
  await new Promise((closed) => server.close(closed));
  return port;
}

describe('a failed boot (main.ts): one line naming the reason, exit code 1, no stack', () => {
  it('a bad variable', async () => {
    const reason = await failedBoot({ ...TEST_AUTH_ENV, DATA_DIR: emptyDataDir(), PORT: 'eighty' });
    assert.match(reason, /^invalid configuration: PORT="eighty": .*PORT must be an integer number$/);
  });

  it('no token keys in production', async () => {
    const reason = await failedBoot({
      NODE_ENV: 'production',
      AUDIT_HMAC_SECRET: TEST_AUTH_ENV.AUDIT_HMAC_SECRET,
      DATA_DIR: await freshDataDir(),
    });
    assert.match(reason, /^no token verification keys: set AUTH_PUBLIC_KEYS or AUTH_JWKS_FILE/);
  });

  it('production without token keys or AUDIT_HMAC_SECRET: both named in the one line', async () => {
    const reason = await failedBoot({ NODE_ENV: 'production', DATA_DIR: await freshDataDir() });
    assert.equal(
      reason,
      'no token verification keys: set AUTH_PUBLIC_KEYS or AUTH_JWKS_FILE (or AUTH_HS256_SECRET with HS256 in AUTH_ALGORITHMS); ' +
        'AUDIT_HMAC_SECRET must be set in production (at least 32 characters)',
    );
  });

  it('a DATABASE_URL that cannot be reached (after its connection attempts)', async () => {
    const port = await closedPort();
    const reason = await failedBoot({
      ...TEST_AUTH_ENV,
      DATA_DIR: emptyDataDir(),
      DATABASE_URL: `postgres://gateway:not-this-password@127.0.0.1:${port}/audit`,
    });
    assert.equal(reason, `cannot connect to the database (DATABASE_URL): connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  it("a DATABASE_URL with sslmode=require: pg's warning about it is a JSON log line, not text on stderr", async () => {
    const port = await closedPort();
    const reason = await failedBoot({
      ...TEST_AUTH_ENV,
      DATA_DIR: emptyDataDir(),
      DATABASE_URL: `postgres://gateway@127.0.0.1:${port}/audit?sslmode=require`,
    });
    assert.equal(reason, `cannot connect to the database (DATABASE_URL): connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  it('a DATA_DIR that is a file, named as the variable', async () => {
    const file = join(emptyDataDir(), 'not-a-folder');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, '');
    const reason = await failedBoot({ ...TEST_AUTH_ENV, DATA_DIR: file });
    assert.equal(reason, `DATA_DIR ${file}: not a directory`);
  });

  it('a port in use', async () => {
    const holder: Server = createServer();
    await new Promise<void>((listening) => holder.listen(0, '127.0.0.1', listening));
    const { port } = holder.address() as { port: number };
    try {
      const reason = await failedBoot({ ...TEST_AUTH_ENV, DATA_DIR: await freshDataDir(), PORT: String(port) });
      assert.equal(reason, `cannot listen on 127.0.0.1:${port}: the port is in use by another process`);
    } finally {
      await new Promise((closed) => holder.close(closed));
    }
  });
});
