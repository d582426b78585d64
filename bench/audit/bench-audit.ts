/*
 * bench/audit: what the audit trail costs. The same gateway build serves the same OIP requests
 * with AUDIT_ENABLED=false and with the audit trail on (embedded PGlite, and PostgreSQL when
 * DATABASE_URL is set), at concurrency 16 and 64, alternating runs to spread machine noise.
 * Prints throughput, p50/p99, CPU per request of the gateway process (all its threads, PGlite's
 * included; split into the event loop, the busiest other thread (PGlite's, when it is on) and the rest),
 * of the PostgreSQL server and of the load generator, and the ratio audit-on / audit-off
 * (aim: cost under 15% at c=64).
 *
 * Each gateway is warmed with 6,000 requests and each run times 24,000 (about 3 s at c=64 on the
 * two-core development machine): V8 and PGlite's WebAssembly reach their steady pace only after a few
 * thousand requests, and runs of 6,000 (under a second) moved the c=64 ratio by 0.1 from run to run.
 *
 *   npm run bench:audit            (BENCH_SCALE=0.2 for a quick look)
 */
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { postgresCpuSeconds, processCpuSeconds, threadCpuSeconds, threadSplit } from '../common/cpu';
import { ROOT, startGateway } from '../common/gateway';
import { closedLoop, LoadResult, poster } from '../runtime/load';

const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const CONCURRENCY = [16, 64];
const ROUNDS = 2;
const MODEL = { name: 'card-fraud', source: 'models/finance/card-fraud/1' };

interface Mode {
  label: string;
  env: Record<string, string>;
}

async function scratchDatabase(url: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `gateway_bench_${process.pid}`;
  const admin = new Client({ connectionString: url });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name}`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const scratch = new URL(url);
  scratch.pathname = `/${name}`;
  return {
    url: scratch.toString(),
    drop: async () => {
      const c = new Client({ connectionString: url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

async function main(): Promise<void> {
  const modelsDir = await mkdtemp(join(tmpdir(), 'bench-models-'));
  await cp(join(ROOT, MODEL.source), join(modelsDir, ...MODEL.source.split('/').slice(-3)), { recursive: true });
  const manifest = JSON.parse(await readFile(join(ROOT, MODEL.source, 'model.json'), 'utf8')) as {
    inputs: Array<{ name: string; shape: number[] }>;
  };
  const width = manifest.inputs[0].shape[1];
  const body = JSON.stringify({
    inputs: [
      {
        name: manifest.inputs[0].name,
        shape: [1, width],
        datatype: 'FP32',
        data: Array.from({ length: width }, (_, i) => ((i * 37) % 11) / 10 - 0.5),
      },
    ],
  });
  const databaseUrl = process.env.DATABASE_URL;
  // The gateways inherit this environment: without this, the PGlite mode would use DATABASE_URL.
  delete process.env.DATABASE_URL;
  const pg = databaseUrl ? await scratchDatabase(databaseUrl) : undefined;
  const modes: Mode[] = [
    { label: 'audit off', env: { AUDIT_ENABLED: 'false' } },
    { label: 'audit on (PGlite)', env: {} },
    ...(pg ? [{ label: 'audit on (PostgreSQL)', env: { DATABASE_URL: pg.url } }] : []),
  ];
  const total = Math.max(200, Math.round(24_000 * SCALE));
  const warmUp = Math.max(200, Math.round(6000 * SCALE));
  console.log(
    `bench/audit on ${availableParallelism()} cores: ${MODEL.name} OIP JSON, ${total} requests per run, ` +
      `${ROUNDS} rounds alternating ${modes.map((m) => m.label).join(' / ')}`,
  );
  const results = new Map<string, LoadResult[]>();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of modes) {
        const gateway = await startGateway(modelsDir, mode.env);
        try {
          const path = `/v2/models/${MODEL.name}/infer`;
          const headers = { 'content-type': 'application/json', authorization: gateway.authorization };
          await closedLoop(warmUp, 16, poster(gateway.port, path, body, 16, headers));
          for (const c of CONCURRENCY) {
            const cpu0 = [processCpuSeconds(gateway.pid), postgresCpuSeconds(), processCpuSeconds(process.pid)];
            const threads0 = threadCpuSeconds(gateway.pid);
            const r = await closedLoop(total, c, poster(gateway.port, path, body, c, headers));
            const threads = threadSplit(gateway.pid, threads0, threadCpuSeconds(gateway.pid));
            const cpu1 = [processCpuSeconds(gateway.pid), postgresCpuSeconds(), processCpuSeconds(process.pid)];
            if (r.errors > 0) throw new Error(`${mode.label} c=${c}: ${r.errors} requests failed`);
            const key = `${mode.label}|${c}`;
            results.set(key, [...(results.get(key) ?? []), r]);
            const perRequest = (seconds: number): string => `${((seconds / total) * 1e6).toFixed(0)} us`;
            const us = (i: number): string => (((cpu1[i] - cpu0[i]) / total) * 1e6).toFixed(0).padStart(4);
            console.log(
              `  round ${round + 1} ${mode.label.padEnd(22)} c=${String(c).padEnd(3)} ${r.throughput.toFixed(0).padStart(6)} req/s` +
                `  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms` +
                `  CPU per request: gateway ${us(0)} us, postgres ${us(1)} us, load generator ${us(2)} us` +
                `  (gateway: event loop ${perRequest(threads.main)}, busiest other thread ${perRequest(threads.busiest)}, ` +
                `rest ${perRequest(threads.rest)})`,
            );
          }
        } finally {
          await gateway.stop();
        }
      }
    }
    const best = (key: string): LoadResult => results.get(key)!.reduce((a, b) => (b.throughput > a.throughput ? b : a));
    console.log('\n| mode | concurrency | req/s (best of rounds) | p50 / p99 ms | vs audit off | audit cost |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const c of CONCURRENCY) {
      const off = best(`audit off|${c}`);
      for (const mode of modes) {
        const r = best(`${mode.label}|${c}`);
        const ratio = r.throughput / off.throughput;
        console.log(
          `| ${mode.label} | ${c} | ${r.throughput.toFixed(0)} | ${r.p50.toFixed(2)} / ${r.p99.toFixed(2)} | ` +
            `${ratio.toFixed(2)} | ${((1 - ratio) * 100).toFixed(1)}% |`,
        );
      }
    }
  } finally {
    await pg?.drop();
    await rm(modelsDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
