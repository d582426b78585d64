import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { GATEWAY_MAIN, spawnGateway, untilGatewayReady } from '../fixtures/gateway-process';
import { FIXTURE_MODELS, REPO_ROOT } from '../fixtures/paths';
import { STALL_IN_ORT, stallingInput } from '../fixtures/stalling-worker';
import { TEST_AUTH_ENV, bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

interface Gateway {
  child: ChildProcess;
  url: string;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** Its stdout from the moment it was ready. */
  log: () => string;
}

/**
 * `npm start`'s script (package.json) on this test build: what npm runs on a POSIX system, `sh -c` with the script,
 * dist/src/main.js being dist-test/src/main.js here.
 */
function startScript(): [string, string[]] {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  assert.ok(pkg.scripts.start.includes(' dist/src/main.js'), pkg.scripts.start);
  return ['sh', ['-c', pkg.scripts.start.replace(' dist/src/main.js', ` ${GATEWAY_MAIN}`)]];
}

/**
 * main.ts as `npm start` runs it, ready to serve; killed by the caller's finally. `command` runs it some other way
 * (startScript).
 */
async function startGateway(
  env: Record<string, string>,
  port: number,
  nodeArgs: string[] = [],
  command?: [string, string[]],
): Promise<Gateway> {
  const child = spawnGateway(
    {
      ...TEST_AUTH_ENV,
      NODE_ENV: 'test',
      LOG_LEVEL: 'log',
      MODELS_DIR: FIXTURE_MODELS,
      INFERENCE_DEVICE: 'cpu',
      WORKER_POOL_SIZE: '1',
      DATA_DIR: await freshDataDir(),
      PORT: String(port),
      HOST: '127.0.0.1',
      ...env,
    },
    // A launcher in its own process group, so that the caller's finally can end whatever it left behind.
    { nodeArgs, command, detached: command?.[0] === 'sh', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((done) =>
    child.once('exit', (code, signal) => done([code, signal])),
  );
  let log = '';
  child.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  let url = `http://127.0.0.1:${port}`;
  try {
    // PORT=0: the port the system gave, as the log tells it.
    if (port === 0) {
      url = await until(
        'the gateway listening',
        () => /"msg":"listening","url":"(http:\/\/[^"]+)"/.exec(log)?.[1],
        60_000,
      );
    }
    await untilGatewayReady(child, url);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  const start = log.length;
  return { child, url, exited, log: () => log.slice(start) };
}

describe('signals (main.ts)', () => {
  it('npm start: SIGTERM to what npm started (its shell) reaches the gateway, which shuts down and exits 0, leaving no process behind', async () => {
    // npm (11) passes a SIGTERM on to the process it spawned, `sh -c <script>`, and nothing further: the script must
    // make the shell the gateway (exec), or the shell dies and the gateway runs on, orphaned, holding its port and
    // DATA_DIR (a supervisor's restart then stops at boot: the embedded database is in use by another gateway).
    const port = 3000 + (process.pid % 300);
    const gateway = await startGateway({}, port, [], startScript());
    try {
      gateway.child.kill('SIGTERM');
      assert.deepEqual(await gateway.exited, [0, null]);
      assert.ok(gateway.log().includes('"shutting down"'), 'the gateway itself had the signal');
      const after = await fetch(`${gateway.url}/health/live`).then(
        (r) => r.status,
        () => 'refused',
      );
      assert.equal(after, 'refused', 'nothing listens on the port any more');
    } finally {
      try {
        process.kill(-(gateway.child.pid ?? 0), 'SIGKILL');
      } catch {
        // Nothing left in the group.
      }
    }
  });

  it('a second SIGTERM during shutdown is ignored: the gateway still finishes its shutdown and exits 0', async () => {
    const gateway = await startGateway({}, 3600 + (process.pid % 300));
    try {
      gateway.child.kill('SIGTERM');
      // The second once the first is being handled (two sent at once reach the process as one).
      await until('the shutdown to begin', () => (gateway.log().includes('"shutting down"') ? true : undefined));
      gateway.child.kill('SIGTERM');
      assert.deepEqual(await gateway.exited, [0, null]);
    } finally {
      gateway.child.kill('SIGKILL');
    }
  });

  it('SHUTDOWN_DRAIN_MS: after SIGTERM readiness is 503 at once, new connections are still served until the drain ends, then it exits 0', async () => {
    const gateway = await startGateway({ SHUTDOWN_DRAIN_MS: '3000' }, 3300 + (process.pid % 300));
    try {
      const signalled = Date.now();
      gateway.child.kill('SIGTERM');
      await until('the shutdown to begin', () => (gateway.log().includes('"shutting down"') ? true : undefined));
      const ready = await fetch(`${gateway.url}/health/ready`);
      assert.equal(ready.status, 503);
      // A new connection (fetch opens one per call here) during the drain: served as usual, not refused.
      const models = await fetch(`${gateway.url}/v2/models`, {
        headers: { authorization: bearer(tokenFor(['ml-admin'])), connection: 'close' },
      });
      assert.equal(models.status, 200);
      assert.ok(Array.isArray(((await models.json()) as { models: unknown[] }).models));
      assert.ok(Date.now() - signalled < 3000, 'the checks ran within the drain');
      assert.deepEqual(await gateway.exited, [0, null]);
      assert.ok(Date.now() - signalled >= 3000, 'it waited out the drain');
      assert.match(gateway.log(), /"drain over; closing"/);
    } finally {
      gateway.child.kill('SIGKILL');
    }
  });

  it('PORT=0: the gateway listens on a port the system gives, and its log names that port', async () => {
    const gateway = await startGateway({}, 0);
    try {
      assert.match(gateway.url, /^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
      assert.equal((await fetch(`${gateway.url}/health/live`)).status, 200);
    } finally {
      gateway.child.kill('SIGKILL');
    }
  });

  it('SIGTERM with an inference thread stuck in ONNX Runtime: the shutdown completes, then the process ends with SIGKILL rather than hang', async () => {
    // Node's exit joins every thread; one blocked in native code held process.exit() until its run returned.
    const preload = join(REPO_ROOT, 'dist-test', 'test', 'fixtures', 'stalling-worker.preload.js');
    const env = { INFERENCE_TIMEOUT_MS: '1000', WORKER_STALL_MARGIN_MS: '500', SHUTDOWN_GRACE_MS: '5000' };
    const gateway = await startGateway(env, 3111 + (process.pid % 9), ['-r', preload]);
    try {
      const authorization = bearer(tokenFor(['ml-admin']));
      const stuck = await fetch(`${gateway.url}/v2/models/fixture-linear/infer`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({
          inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: stallingInput(STALL_IN_ORT, 60_000) }],
        }),
      });
      assert.equal(stuck.status, 504);
      await until('the stalled thread counted', async () => {
        const text = await (
          await fetch(`${gateway.url}/metrics`, { headers: { authorization: bearer(tokenFor(['monitoring'])) } })
        ).text();
        return /^gateway_inference_workers_stuck 1$/m.test(text) ? true : undefined;
      });
      const signalled = Date.now();
      gateway.child.kill('SIGTERM');
      assert.deepEqual(await gateway.exited, [null, 'SIGKILL']);
      assert.ok(Date.now() - signalled < 5000, `ended ${Date.now() - signalled} ms after SIGTERM`);
      // Logged (to stderr): 'inference threads stuck in ONNX Runtime cannot be stopped; ending the process with SIGKILL'.
    } finally {
      gateway.child.kill('SIGKILL');
    }
  });
});
