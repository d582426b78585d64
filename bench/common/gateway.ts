import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { signDevToken } from '../../src/auth/dev-keys';
import { loadConfig } from '../../src/config/app-config';

export const ROOT = resolve(__dirname, '..', '..', '..');

/** The node options of `npm start` (package.json), so that a benchmark measures the gateway as it is served. */
export const START_NODE_ARGS: string[] = (() => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const words = pkg.scripts.start.split(/\s+/);
  const script = words.indexOf('dist/src/main.js');
  return script < 0 ? [] : words.slice(1, script).filter((w) => w.startsWith('--'));
})();

export interface BenchGateway {
  port: number;
  pid: number;
  /** `Authorization` header value for an ML admin (OIP inference). */
  authorization: string;
  stop(): Promise<void>;
}

/**
 * Starts the built gateway (node dist/src/main.js, with npm start's node options) as a child process with its own data directory
 * and a development token, and waits until it is ready. Rate limiting stays on but out of reach,
 * so its cost is in the measurement and its refusals are not.
 */
export async function startGateway(
  modelsDir: string,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<BenchGateway> {
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-data-'));
  const port = 3900 + Math.floor(Math.random() * 90);
  const config = loadConfig({ DATA_DIR: dataDir });
  const token = signDevToken(config, { roles: ['ml-admin'], subject: 'bench', ttlSeconds: 3600 });
  const args = [...START_NODE_ARGS, ...nodeArgs, join(ROOT, 'dist', 'src', 'main.js')];
  const child: ChildProcess = spawn(process.execPath, args, {
    env: {
      ...process.env,
      MODELS_DIR: modelsDir,
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      RATE_LIMIT_REQUESTS: '100000000',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  for (let i = 0; i < 600; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/health/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { port, pid: child.pid ?? -1, authorization: `Bearer ${token}`, stop };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error('gateway did not become ready');
}
