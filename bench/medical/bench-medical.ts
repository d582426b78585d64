/*
 * bench/medical: lesion detection through the gateway against raw onnxruntime-node on the same tensors, in
 * one run. The gateway runs as a child process (node dist/src/main.js) with auth and the audit trail on
 * (embedded PGlite) and a pacs-integration token; each request is a real ultrasound DICOM file, so the
 * gateway pays for HTTP, auth, the input digest, DICOM parsing, pixel decoding, the pixel pipeline
 * (grey, letterbox, normalise), the worker hop and batcher, lesion post-processing, keeping the findings
 * and the audit row.
 *
 * The raw runtime gets the exact [n, 1, 256, 256] tensor the gateway computes for that file (built here
 * with the gateway's own parse, decode and pixel functions, and checked against the gateway's answer),
 * with the gateway's session options and intra-op threads, on as many sessions as the gateway has
 * workers (in this process when that is one, else one worker thread each). At concurrency 8 it runs both
 * one call per image and batches: the 8 in flight stacked into one batch per worker (8 on one worker, 4
 * each on two), what the gateway's batcher can at best make of them.
 *
 * US1_UNCR.dcm (640x480 RGB, uncompressed) is the main figure; an 8-frame JPEG-baseline ultrasound
 * clip is reported per frame. Concurrency 1 and 8. Aim: the gateway at least 0.8 of the raw rate. The
 * benchmark prints figures and ratios, and fails only if a gateway answer is not 200.
 *
 * Gateway settings in the environment (WORKER_POOL_SIZE, ORT_INTRA_OP_THREADS, AUDIT_ENABLED,
 * BATCH_MAX_QUEUE_DELAY_MS, ...) reach the gateway child and are read here too, so both sides agree.
 *
 *   npm run bench:medical            (BENCH_SCALE=0.3 for a quick look;
 *                                     BENCH_CPU_PROF=<dir> starts the gateway with --cpu-prof there)
 */
import { cp, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { signDevToken } from '../../src/auth/dev-keys';
import { AppConfig, loadConfig } from '../../src/config/app-config';
import { DicomImage, parseDicomImage, ParseLimits } from '../../src/domains/medical/dicom/dicom-parse.util';
import { decodeFrame, initialisePixelCodecs, selectFrames } from '../../src/domains/medical/dicom/pixel-decode.util';
import { letterboxFrame } from '../../src/domains/medical/pixels/pixel-pipeline.util';
import { frameOptionsOf } from '../../src/domains/medical/lesion-detection.service';
import { sessionOptions } from '../../src/runtime/worker-pool/ort-session';
import { ownCpuSeconds, processCpuSeconds } from '../common/cpu';
import { BenchGateway, ROOT, startGateway } from '../common/gateway';
import { closedLoop, LoadResult, poster } from '../runtime/load';

const SCALE = Number(process.env.BENCH_SCALE ?? '1');
/** Seconds of raw load per measured point; the gateway gets the same number of requests. */
const SECONDS_PER_POINT = 3 * SCALE;
const CONCURRENCY = [1, 8];
const MODEL = 'models/medical/breast-us-lesion/1';
const DICOM_DIR = join(ROOT, '..', 'shared', 'dicom');
const PATH = '/v1/medical/lesion-detections';
const CASES = [
  { file: 'US1_UNCR.dcm', label: 'US1_UNCR 640x480 RGB (explicit LE)' },
  { file: 'US_multiframe_jpeg_baseline.dcm', label: 'US multi-frame 320x240 (JPEG baseline)' },
];

interface Manifest {
  inputs: Array<{ name: string }>;
  batching?: { maxBatchSize?: number };
  preprocessing: { inputSize: [number, number]; mean: number; std: number; padValue: number };
}

interface Geometry {
  width: number;
  height: number;
  mean: number;
  std: number;
  padValue: number;
}

interface Feed {
  data: Float32Array;
  dims: number[];
}

interface Answer {
  frames: Array<{ frameNumber: number; lesions: unknown[]; malignancyProbability?: number }>;
}

/** The model input for every frame of an instance, as LesionDetectionService.preprocess builds it. */
function instanceTensor(image: DicomImage, g: Geometry, config: AppConfig): Feed {
  const frames = selectFrames(image.numberOfFrames, config.MEDICAL_FRAME_POLICY, config.MEDICAL_MAX_FRAMES);
  const plane = g.width * g.height;
  const data = new Float32Array(frames.length * plane);
  frames.forEach((frame, i) => {
    const into = data.subarray(i * plane, (i + 1) * plane);
    letterboxFrame(decodeFrame(image, frame), frameOptionsOf(image), g, into, { mean: g.mean, std: g.std });
  });
  return { data, dims: [frames.length, 1, g.height, g.width] };
}

/** `copies` instances stacked along the batch axis. */
function stacked(feed: Feed, copies: number): Feed {
  const data = new Float32Array(feed.data.length * copies);
  for (let i = 0; i < copies; i++) data.set(feed.data, i * feed.data.length);
  return { data, dims: [feed.dims[0] * copies, ...feed.dims.slice(1)] };
}

/** Raw onnxruntime-node on prepared feeds (by index), on as many sessions as the gateway has workers. */
interface RawRuntime {
  run(feed: number): Promise<void>;
  close(): Promise<void>;
}

async function inProcessRuntime(
  onnx: string,
  options: ort.InferenceSession.SessionOptions,
  input: string,
  feeds: Feed[],
): Promise<RawRuntime> {
  const session = await ort.InferenceSession.create(onnx, options);
  const tensors = feeds.map((f) => new ort.Tensor('float32', f.data, f.dims));
  return {
    run: async (feed: number) => void (await session.run({ [input]: tensors[feed] })),
    close: () => session.release(),
  };
}

/** ORT's run() holds its calling thread, so several sessions need a thread each (as the gateway's pool). */
const RAW_WORKER = `
const { parentPort, workerData: w } = require('node:worker_threads');
const ort = require(w.ort);
ort.InferenceSession.create(w.onnx, w.options).then((session) => {
  const tensors = w.feeds.map((f) => new ort.Tensor('float32', f.data, f.dims));
  parentPort.on('message', ({ id, feed }) =>
    session.run({ [w.input]: tensors[feed] }).then(
      () => parentPort.postMessage({ id }),
      (e) => parentPort.postMessage({ id, error: String(e) }),
    ),
  );
  parentPort.postMessage({ ready: true });
}, (e) => parentPort.postMessage({ error: String(e) }));
`;

async function workerRuntime(
  size: number,
  onnx: string,
  options: ort.InferenceSession.SessionOptions,
  input: string,
  feeds: Feed[],
): Promise<RawRuntime> {
  type Reply = { id?: number; ready?: boolean; error?: string };
  const lanes = await Promise.all(
    Array.from({ length: size }, async () => {
      const worker = new Worker(RAW_WORKER, {
        eval: true,
        workerData: { ort: require.resolve('onnxruntime-node'), onnx, options, input, feeds },
      });
      const waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
      await new Promise<void>((resolve, reject) => {
        worker.once('message', (m: Reply) => (m.ready ? resolve() : reject(new Error(m.error))));
        worker.once('error', reject);
      });
      worker.on('message', (m: Reply) => {
        const task = waiting.get(m.id ?? -1);
        waiting.delete(m.id ?? -1);
        if (m.error) task?.reject(new Error(m.error));
        else task?.resolve();
      });
      return { worker, waiting };
    }),
  );
  let nextId = 0;
  return {
    run: (feed) => {
      // The least busy worker, as the gateway's pool dispatches.
      const lane = lanes.reduce((a, b) => (b.waiting.size < a.waiting.size ? b : a));
      const id = nextId++;
      return new Promise<void>((resolve, reject) => {
        lane.waiting.set(id, { resolve, reject });
        lane.worker.postMessage({ id, feed });
      });
    },
    close: async () => void (await Promise.all(lanes.map((l) => l.worker.terminate()))),
  };
}

interface Point {
  label: string;
  result: LoadResult;
  cpuMsPerImage: number;
  /** CPU of the other side meanwhile: the load generator for the gateway, the idle gateway for raw. */
  otherMsPerImage: number;
}

/**
 * Runs `calls` calls at concurrency c; figures per image (a call carries `images`). CPU is the gateway
 * process's (all its threads) for the gateway side, this process's for the raw side.
 */
async function measure(
  label: string,
  side: 'raw' | 'gateway',
  gatewayPid: number,
  calls: number,
  c: number,
  images: number,
  task: () => Promise<void>,
): Promise<Point> {
  const gateway0 = processCpuSeconds(gatewayPid);
  const own0 = ownCpuSeconds();
  const r = await closedLoop(calls, c, task);
  const perImage = (seconds: number) => (seconds / (r.requests * images)) * 1e3;
  const gateway = perImage(processCpuSeconds(gatewayPid) - gateway0);
  const own = perImage(ownCpuSeconds() - own0);
  return {
    label,
    result: { ...r, throughput: r.throughput * images },
    cpuMsPerImage: side === 'gateway' ? gateway : own,
    otherMsPerImage: side === 'gateway' ? own : gateway,
  };
}

function fmt(p: Point, unit: string, other: string): string {
  const ms = (v: number) => v.toFixed(2).padStart(7);
  const r = p.result;
  const per = unit.split('/')[0].replace(/s$/, '');
  return (
    `${r.throughput.toFixed(1).padStart(7)} ${unit}  p50 ${ms(r.p50)} ms  p99 ${ms(r.p99)} ms  ` +
    `CPU ${p.cpuMsPerImage.toFixed(1)} ms/${per} (${other} ${p.otherMsPerImage.toFixed(1)})`
  );
}

/** Lets the gateway finish its background work (audit commits) before the raw runtime is timed. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  );

async function main(): Promise<void> {
  if (!(await exists(DICOM_DIR))) throw new Error(`bench/medical needs the shared DICOM files in ${DICOM_DIR}`);
  // The environment's pool settings reach the gateway child too, so both sides read the same ones.
  const config = loadConfig(process.env);
  const threads = config.intraOpThreads;
  const pool = config.WORKER_POOL_SIZE;
  const options = sessionOptions('cpu', threads, 0);
  const manifest = JSON.parse(await readFile(join(ROOT, MODEL, 'model.json'), 'utf8')) as Manifest;
  const input = manifest.inputs[0].name;
  const maxBatchSize = config.BATCH_MAX_SIZE ?? manifest.batching?.maxBatchSize ?? 8;
  const pre = manifest.preprocessing;
  const geometry: Geometry = {
    width: pre.inputSize[0],
    height: pre.inputSize[1],
    mean: pre.mean,
    std: pre.std,
    padValue: pre.padValue,
  };
  const limits: ParseLimits = {
    maxInflatedBytes: config.MEDICAL_MAX_BODY_BYTES * 4,
    maxRows: config.MEDICAL_MAX_IMAGE_SIDE,
    maxColumns: config.MEDICAL_MAX_IMAGE_SIDE,
  };
  const profileDir = process.env.BENCH_CPU_PROF;
  const gatewayLabel = config.AUDIT_ENABLED ? 'gateway (auth + audit)' : 'gateway (auth, AUDIT OFF)';
  const audit = config.AUDIT_ENABLED ? `on (${config.DATABASE_URL ? 'PostgreSQL' : 'PGlite'})` : 'OFF';
  console.log(
    `bench/medical on ${availableParallelism()} cores: gateway WORKER_POOL_SIZE=${pool}, ORT intra-op threads ${threads}, ` +
      `maxBatchSize ${maxBatchSize}; raw runtime on ${pool} session(s) with the same options; auth + audit ${audit}; ` +
      `scale ${SCALE}${profileDir ? `; gateway under --cpu-prof (${profileDir}), so slower than usual` : ''}`,
  );

  // The tensors the gateway computes, with its own code; the time it takes here is a floor for its share.
  await initialisePixelCodecs();
  const cases = await Promise.all(
    CASES.map(async (c) => {
      const body = await readFile(join(DICOM_DIR, c.file));
      const image = parseDicomImage(body, limits);
      const feed = instanceTensor(image, geometry, config);
      const reps = 10;
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) instanceTensor(parseDicomImage(body, limits), geometry, config);
      const prepMs = (performance.now() - t0) / reps / feed.dims[0];
      return { ...c, body, feed, frames: feed.dims[0], prepMs };
    }),
  );

  const modelsDir = await mkdtemp(join(tmpdir(), 'bench-models-'));
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-medical-data-'));
  let gateway: BenchGateway | undefined;
  const runtimes: RawRuntime[] = [];
  const rows: string[] = [];
  const failures = new Map<string, number>();
  const ratios: string[] = [];
  try {
    await cp(join(ROOT, MODEL), join(modelsDir, ...MODEL.split('/').slice(-3)), { recursive: true });
    // Our own data directory, so that we can sign a pacs-integration token (medical:infer) with its key.
    const token = signDevToken(loadConfig({ DATA_DIR: dataDir }), {
      roles: ['pacs-integration'],
      subject: 'bench-pacs',
      ttlSeconds: 3600,
    });
    const headers = {
      'content-type': 'application/dicom',
      accept: 'application/json',
      authorization: `Bearer ${token}`,
    };
    gateway = await startGateway(
      modelsDir,
      { DATA_DIR: dataDir },
      profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    );
    const { port, pid } = gateway;

    // One check per file: a 200, and the raw runtime on our tensor gives the gateway's malignancy figures.
    const check = await ort.InferenceSession.create(join(ROOT, MODEL, 'model.onnx'), options);
    for (const c of cases) {
      const res = await fetch(`http://127.0.0.1:${port}${PATH}`, {
        method: 'POST',
        headers,
        body: new Uint8Array(c.body),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`${c.file}: HTTP ${res.status}: ${text.slice(0, 500)}`);
      const answer = JSON.parse(text) as Answer;
      const out = await check.run({ [input]: new ort.Tensor('float32', c.feed.data, c.feed.dims) });
      const raw = out.malignancy_probability.data as Float32Array;
      const gw = answer.frames.map((f) => f.malignancyProbability ?? NaN);
      const worst = Math.max(...gw.map((p, i) => Math.abs(p - raw[i])));
      console.log(
        `check ${c.file}: ${(c.body.length / 1024).toFixed(0)} KiB, ${c.frames} frame(s) -> ` +
          `${answer.frames.reduce((n, f) => n + f.lesions.length, 0)} lesion(s); malignancy gateway ${gw[0]} vs raw ` +
          `${raw[0].toFixed(4)} on our tensor (largest difference ${worst.toExponential(1)})` +
          `${worst > 1e-3 || gw.length !== raw.length ? '  MISMATCH: the raw side may not see the same tensor' : ''}; ` +
          `parse + decode + pixel pipeline here ${c.prepMs.toFixed(2)} ms per frame`,
      );
    }
    await check.release();

    for (const c of cases) {
      // Feed 0: one request's tensor; then, per concurrency, as many requests stacked as the batcher may join.
      const batchOf = Math.max(1, Math.floor(maxBatchSize / c.frames));
      // The requests in flight, stacked into one batch per worker (as the gateway's batcher could at best).
      const batchFor = (conc: number): number => Math.min(Math.ceil(conc / pool), batchOf);
      const stacks = CONCURRENCY.map(batchFor).filter((n) => n > 1);
      const feeds = [c.feed, ...stacks.map((n) => stacked(c.feed, n))];
      const onnx = join(ROOT, MODEL, 'model.onnx');
      const raw =
        pool === 1
          ? await inProcessRuntime(onnx, options, input, feeds)
          : await workerRuntime(pool, onnx, options, input, feeds);
      runtimes.push(raw);
      const one = () => raw.run(0);
      const sendOne = poster(port, PATH, c.body, Math.max(...CONCURRENCY), headers);
      const send = async (): Promise<void> => {
        try {
          await sendOne();
        } catch (error) {
          const key = `${c.file}: ${error instanceof Error ? error.message : String(error)}`;
          failures.set(key, (failures.get(key) ?? 0) + 1);
          throw error;
        }
      };

      // Warm up both sides, and size the runs from the raw rate.
      await closedLoop(5, 1, one);
      const probe = await closedLoop(10, 1, one);
      for (let i = 1; i < feeds.length; i++) await closedLoop(3, 1, () => raw.run(i));
      await closedLoop(10, Math.max(...CONCURRENCY), send);
      const calls = Math.max(20, Math.round(SECONDS_PER_POINT * probe.throughput));
      const unit = c.frames > 1 ? 'frames/s' : 'images/s';
      console.log(`\n${c.label}, ${c.frames} frame(s) per request, ${calls} requests per point`);

      for (const conc of CONCURRENCY) {
        await settle();
        const points: Point[] = [
          await measure(
            `raw [${c.feed.dims.join(',')}]${conc > 1 ? ` x${conc} in flight` : ''}`,
            'raw',
            pid,
            calls,
            conc,
            c.frames,
            one,
          ),
        ];
        const size = batchFor(conc);
        if (size > 1) {
          const feed = 1 + stacks.indexOf(size);
          points.push(
            await measure(
              `raw [${feeds[feed].dims.join(',')}] batches`,
              'raw',
              pid,
              Math.max(3, Math.round(calls / size)),
              Math.max(Math.ceil(conc / size), Math.min(pool, conc)),
              size * c.frames,
              () => raw.run(feed),
            ),
          );
        }
        const errors0 = [...failures.values()].reduce((a, b) => a + b, 0);
        const gw = await measure('gateway', 'gateway', pid, calls, conc, c.frames, send);
        const errors = [...failures.values()].reduce((a, b) => a + b, 0) - errors0;
        const best = points.reduce((a, b) => (b.result.throughput > a.result.throughput ? b : a));
        const ratio = gw.result.throughput / best.result.throughput;
        for (const p of points)
          console.log(`  c=${String(conc).padEnd(2)} ${p.label.padEnd(34)} ${fmt(p, unit, 'gateway meanwhile')}`);
        console.log(
          `       ${gatewayLabel.padEnd(34)} ${fmt(gw, unit, 'load generator')}  ` +
            `vs best raw ${ratio.toFixed(2)}${errors ? `  NON-200 ${errors}` : ''}`,
        );
        ratios.push(`${c.file} c=${conc} ${ratio.toFixed(2)}`);
        const cell = (p: Point) =>
          `${p.result.throughput.toFixed(1)} | ${p.result.p50.toFixed(1)} / ${p.result.p99.toFixed(1)} | ` +
          `${p.cpuMsPerImage.toFixed(1)}`;
        rows.push(`| ${c.label} | ${conc} | ${gatewayLabel} | ${cell(gw)} | ${errors} | 1.00 |`);
        for (const p of points) {
          rows.push(
            `| ${c.label} | ${conc} | ${p.label} | ${cell(p)} | | ${(gw.result.throughput / p.result.throughput).toFixed(2)} |`,
          );
        }
      }
      await runtimes.pop()?.close();
    }

    console.log(
      '\n| image | concurrency | runs as | images/s (frames/s) | p50 / p99 ms per request | CPU ms per image | non-200 | gateway / this |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const row of rows) console.log(row);
    console.log(`\naim: gateway >= 0.8 of the best raw rate; measured ${ratios.join(', ')}`);
  } finally {
    await gateway?.stop();
    for (const r of runtimes) await r.close();
    await rm(modelsDir, { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  }
  if (failures.size > 0) {
    for (const [what, n] of failures) console.error(`non-200 answers: ${what} x${n}`);
    throw new Error('some gateway answers were not 200');
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
