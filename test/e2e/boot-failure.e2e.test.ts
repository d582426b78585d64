import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { spawnGateway } from '../fixtures/gateway-process';
import { anySizeConvModel } from '../fixtures/onnx-build';
import { FIXTURE_MODELS, REPO_ROOT } from '../fixtures/paths';
import { STALL_IN_JS, STALL_IN_ORT, stallLoads } from '../fixtures/stalling-worker';
import { TEST_AUTH_ENV } from '../fixtures/test-auth';
import { emptyDataDir, freshDataDir } from '../fixtures/test-data-dir';

/** The test runner's environment, less what would point a gateway at a real database or broker. */
const { DATABASE_URL: _database, MQTT_URL: _broker, ...inherited } = process.env;

/**
 * Starts the built gateway (dist-test/src/main.js) with `env`, which must make its boot fail, and checks
 * how it failed: exit code 1 (or `ended`, as [code, signal]), one line on stderr (the JSON `boot failed` record,
 * no stack), and no error logged on stdout. Returns the line's reason.
 */
async function failedBoot(
  env: Record<string, string>,
  {
    nodeArgs = [],
    ended = [1, null],
    within,
  }: {
    nodeArgs?: string[];
    ended?: [number | null, NodeJS.Signals | null];
    /** A boot still going this long after its start is killed (SIGKILL), and the exit check fails. */
    within?: number;
  } = {},
): Promise<string> {
  const child = spawnGateway(
    {
      NODE_ENV: 'test',
      LOG_LEVEL: 'log',
      MODELS_DIR: FIXTURE_MODELS,
      INFERENCE_DEVICE: 'cpu',
      WORKER_POOL_SIZE: '1',
      HOST: '127.0.0.1',
      ...env,
    },
    { nodeArgs, inherit: inherited, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const hung = within === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), within);
  const exit = await new Promise<[number | null, NodeJS.Signals | null]>((closed) =>
    child.once('close', (code, signal) => closed([code, signal])),
  );
  clearTimeout(hung);
  assert.deepEqual(exit, ended, `exit code and signal; stderr: ${stderr}`);
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

/**
 * A models folder holding fixture-linear version 2 alone, whose load at boot hangs the given way (no real model can
 * be made to hang: the stalling worker, preloaded, stands in), and the node arguments that preload it.
 */
function hangingModel(how: typeof STALL_IN_JS | typeof STALL_IN_ORT, ms: number) {
  const root = mkdtempSync(join(tmpdir(), 'boot-hang-models-'));
  const dir = join(root, 'generic', 'fixture-linear', '2');
  cpSync(join(FIXTURE_MODELS, 'generic', 'fixture-linear', '2'), dir, { recursive: true });
  stallLoads(join(dir, 'model.onnx'), how, ms);
  const preload = join(REPO_ROOT, 'dist-test', 'test', 'fixtures', 'stalling-worker.preload.js');
  return { root, dir, nodeArgs: ['-r', preload], remove: () => rmSync(root, { recursive: true, force: true }) };
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

  it('a CORS origin without its scheme, named as the variable', async () => {
    const reason = await failedBoot({ ...TEST_AUTH_ENV, DATA_DIR: emptyDataDir(), CORS_ORIGINS: 'viewer.example' });
    assert.match(reason, /^invalid configuration: CORS_ORIGINS=\["viewer\.example"\]: CORS_ORIGINS item 1 /);
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

  it(
    'a DATA_DIR that cannot be made, or holds no new folder (/proc, /sys, a file above it): stopped at once naming it',
    { skip: process.platform !== 'linux' && 'needs /proc and /sys' },
    async () => {
      // Node's recursive mkdir loops for ever on /proc/x (ENOENT under a folder that is there): the boot hung.
      const boot = (dir: string) => failedBoot({ ...TEST_AUTH_ENV, DATA_DIR: dir }, { within: 20_000 });
      // As root; another user is refused by access() first (EACCES).
      assert.match(
        await boot('/proc/x'),
        /^DATA_DIR \/proc\/x: cannot be made \((ENOENT|EACCES) from mkdir \/proc\/x\)$/,
      );
      assert.match(
        await boot('/proc'),
        /^DATA_DIR \/proc: (cannot make a folder in it \(ENOENT\)|this process may not write in it \(EACCES\))$/,
      );
      assert.match(
        await boot('/sys/gateway/data'),
        /^DATA_DIR \/sys\/gateway\/data: cannot be made \(E[A-Z]+ from mkdir \/sys\/gateway\)$/,
      );
      const file = join(emptyDataDir(), 'not-a-folder');
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, '');
      assert.equal(await boot(join(file, 'data')), `DATA_DIR ${join(file, 'data')}: cannot be read (ENOTDIR)`);
    },
  );

  it("a model whose warm-up ONNX Runtime refuses: the one line, and not ONNX Runtime's own beside it", async () => {
    const { root, dir } = anySizeConvModel();
    try {
      const reason = await failedBoot({ ...TEST_AUTH_ENV, DATA_DIR: await freshDataDir(), MODELS_DIR: root });
      assert.ok(
        reason.includes(`${dir}: model any-size-conv version 1: warm-up run on zeros of x [1, 1, 1, 1]`),
        reason,
      );
      // ORT's message is in the gateway's line, which failedBoot holds to be the only one on stderr.
      assert.match(reason, /Non-zero status code returned while running Conv node/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("a model's load that hangs inside ONNX Runtime: stopped at MODEL_LOAD_TIMEOUT_MS naming it, the process killed", async () => {
    // Its thread cannot be stopped, and Node's exit would wait for it: it never ended, nor became ready.
    const stallMs = 15_000;
    const models = hangingModel(STALL_IN_ORT, stallMs);
    try {
      const started = Date.now();
      const reason = await failedBoot(
        { ...TEST_AUTH_ENV, DATA_DIR: await freshDataDir(), MODELS_DIR: models.root, MODEL_LOAD_TIMEOUT_MS: '1500' },
        { nodeArgs: models.nodeArgs, ended: [null, 'SIGKILL'] },
      );
      assert.equal(
        reason,
        `${models.dir}: model fixture-linear version 2: not loaded and warmed up within MODEL_LOAD_TIMEOUT_MS (1500 ms); ` +
          'the boot stops, and the process is killed: its thread is inside ONNX Runtime, which cannot be interrupted',
      );
      assert.ok(Date.now() - started < stallMs, `ended ${Date.now() - started} ms after its start`);
    } finally {
      models.remove();
    }
  });

  it('a load that hangs in JavaScript: its thread terminated at MODEL_LOAD_TIMEOUT_MS, exit code 1', async () => {
    const models = hangingModel(STALL_IN_JS, 60_000);
    try {
      const reason = await failedBoot(
        { ...TEST_AUTH_ENV, DATA_DIR: await freshDataDir(), MODELS_DIR: models.root, MODEL_LOAD_TIMEOUT_MS: '1500' },
        { nodeArgs: models.nodeArgs },
      );
      assert.equal(reason, 'an inference worker began no model within MODEL_LOAD_TIMEOUT_MS (1500 ms); the boot stops');
    } finally {
      models.remove();
    }
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
