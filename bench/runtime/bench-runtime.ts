/*
 * bench/runtime: the OIP infer route against raw onnxruntime-node on the same model, in one run.
 * The gateway runs as a child process (node dist/src/main.js) with its default pool and thread
 * settings; the raw runtime runs in this process with the same intra-op threads. Both see the
 * same requests (batch 1) at concurrency 1, 16 and 64. Prints throughput ratios and p50/p99.
 *
 *   npm run bench:runtime            (BENCH_SCALE=0.2 for a quick look)
 */
import { cp, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadConfig } from '../../src/config/app-config';
import { sessionOptions } from '../../src/runtime/worker-pool/ort-session';
import { BenchGateway, ROOT, startGateway } from '../common/gateway';
import { closedLoop, LoadResult, poster } from './load';

const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const CONCURRENCY = [1, 16, 64];

interface Case {
  label: string;
  /** <domain>/<name>/<version> folder, relative to the repository. */
  source: string;
  name: string;
  requests: number;
  /** Also measure the OIP binary tensor data extension (raw float32 bytes after a JSON header). */
  binary: boolean;
}

const TABULAR = { label: 'tabular', name: 'credit-default', source: 'models/finance/credit-default/1' };
const TABULAR_FALLBACK = {
  label: 'tabular',
  name: 'fixture-linear',
  source: 'test/fixtures/models/generic/fixture-linear/2',
};
const CNN = { label: 'small CNN', name: 'fixture-cnn', source: 'test/fixtures/models/generic/fixture-cnn/1' };

interface Variant {
  label: string;
  body: string | Buffer;
  headers?: Record<string, string>;
}

function variants(input: string, dims: number[], values: number[], binary: boolean): Variant[] {
  const out: Variant[] = [
    {
      label: 'JSON',
      body: JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', data: values }] }),
      headers: { 'content-type': 'application/json' },
    },
  ];
  if (binary) {
    const bytes = Buffer.from(Float32Array.from(values).buffer);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: input, shape: dims, datatype: 'FP32', parameters: { binary_data_size: bytes.length } }],
      }),
    );
    out.push({
      label: 'binary',
      body: Buffer.concat([header, bytes]),
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    });
  }
  return out;
}

function fmt(r: LoadResult): string {
  const ms = (v: number) => v.toFixed(2).padStart(7);
  return `${r.throughput.toFixed(0).padStart(7)} req/s  p50 ${ms(r.p50)} ms  p99 ${ms(r.p99)} ms`;
}

async function main(): Promise<void> {
  const haveBundled = await stat(join(ROOT, TABULAR.source)).then(
    () => true,
    () => false,
  );
  const cases: Case[] = [
    { ...(haveBundled ? TABULAR : TABULAR_FALLBACK), requests: 3000, binary: false },
    { ...CNN, requests: 600, binary: true },
  ];
  const config = loadConfig({});
  const threads = config.intraOpThreads;
  console.log(
    `bench/runtime on ${availableParallelism()} cores: gateway WORKER_POOL_SIZE=${config.WORKER_POOL_SIZE}, ` +
      `ORT intra-op threads ${threads} (the raw runtime uses the same), scale ${SCALE}`,
  );
  const modelsDir = await mkdtemp(join(tmpdir(), 'bench-models-'));
  let gateway: BenchGateway | undefined;
  const rows: string[] = [];
  try {
    for (const c of cases) {
      const [domain, name, version] = c.source.split('/').slice(-3);
      await cp(join(ROOT, c.source), join(modelsDir, domain, name, version), { recursive: true });
    }
    gateway = await startGateway(modelsDir);
    const { port, authorization } = gateway;
    for (const c of cases) {
      const manifest = JSON.parse(await readFile(join(ROOT, c.source, 'model.json'), 'utf8')) as {
        inputs: Array<{ name: string; shape: number[] }>;
      };
      const input = manifest.inputs[0].name;
      const dims = manifest.inputs[0].shape.map((d) => (d < 0 ? 1 : d));
      const size = dims.reduce((a, b) => a * b, 1);
      const values = Array.from({ length: size }, (_, i) => ((i * 7919) % 1000) / 1000);
      const tensor = new ort.Tensor('float32', Float32Array.from(values), dims);
      const session = await ort.InferenceSession.create(
        join(ROOT, c.source, 'model.onnx'),
        sessionOptions('cpu', threads, 0),
      );
      const rawTask = async (): Promise<void> => void (await session.run({ [input]: tensor }));
      const total = Math.max(50, Math.round(c.requests * SCALE));
      const path = `/v2/models/${c.name}/infer`;
      await closedLoop(Math.min(100, total), 1, rawTask);
      for (const v of variants(input, dims, values, c.binary)) {
        await closedLoop(Math.min(100, total), 4, poster(port, path, v.body, 4, { ...v.headers, authorization }));
        const kib = (v.body.length / 1024).toFixed(1);
        console.log(
          `\n${c.label} ${c.name} [${dims.join('x')}], OIP ${v.label} body ${kib} KiB, ${total} requests per level`,
        );
        for (const concurrency of CONCURRENCY) {
          const raw = await closedLoop(total, concurrency, rawTask);
          const gw = await closedLoop(
            total,
            concurrency,
            poster(port, path, v.body, concurrency, { ...v.headers, authorization }),
          );
          const ratio = gw.throughput / raw.throughput;
          console.log(`  c=${String(concurrency).padEnd(3)} raw     ${fmt(raw)}`);
          console.log(
            `        gateway ${fmt(gw)}  ratio ${ratio.toFixed(2)}${gw.errors ? `  errors ${gw.errors}` : ''}`,
          );
          rows.push(
            `| ${c.label} ${c.name} ${dims.join('x')} | ${v.label} | ${concurrency} | ${raw.throughput.toFixed(0)} | ` +
              `${raw.p50.toFixed(2)} / ${raw.p99.toFixed(2)} | ${gw.throughput.toFixed(0)} | ` +
              `${gw.p50.toFixed(2)} / ${gw.p99.toFixed(2)} | ${ratio.toFixed(2)} |`,
          );
        }
      }
      await session.release();
    }
    console.log(
      '\n| model | OIP body | concurrency | raw req/s | raw p50 / p99 ms | gateway req/s | gateway p50 / p99 ms | gateway / raw |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const row of rows) console.log(row);
  } finally {
    await gateway?.stop();
    await rm(modelsDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
