import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FIXTURE_MODELS, REPO_ROOT } from '../fixtures/paths';
import { TEST_AUTH_ENV } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

describe('signals (main.ts)', () => {
  it('a second SIGTERM during shutdown is ignored: the gateway still finishes its shutdown and exits 0', async () => {
    const port = 3600 + (process.pid % 300);
    const child = spawn(process.execPath, [join(REPO_ROOT, 'dist-test', 'src', 'main.js')], {
      env: {
        ...process.env,
        ...TEST_AUTH_ENV,
        NODE_ENV: 'test',
        LOG_LEVEL: 'log',
        MODELS_DIR: FIXTURE_MODELS,
        INFERENCE_DEVICE: 'cpu',
        WORKER_POOL_SIZE: '1',
        DATA_DIR: await freshDataDir(),
        PORT: String(port),
        HOST: '127.0.0.1',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((done) =>
      child.once('exit', (code, signal) => done([code, signal])),
    );
    try {
      await until(
        'the gateway ready',
        async () => {
          if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}`);
          const res = await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined);
          return res?.ok ? true : undefined;
        },
        60_000,
      );
      let log = '';
      child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
      child.kill('SIGTERM');
      // The second once the first is being handled (two sent at once reach the process as one).
      await until('the shutdown to begin', () => (log.includes('"shutting down"') ? true : undefined));
      child.kill('SIGTERM');
      assert.deepEqual(await exited, [0, null]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
