/*
 * bench/manufacturing: sensor readings over MQTT into stored predictions, against raw onnxruntime-node
 * doing the same model calls, in one run.
 *
 * The gateway runs as a child process (node dist/src/main.js) with the manufacturing models, the
 * embedded PGlite database (or DATABASE_URL), and MQTT_URL pointing at a Mosquitto the benchmark starts
 * for itself (the machine's `mosquitto` binary, in memory, with no per-client queue limit: the sustained
 * run publishes faster than anyone consumes, and a default Mosquitto drops what passes 1000 queued
 * messages per client); BENCH_MQTT_URL uses another broker instead. The gateway's persistent MQTT 5
 * session subscribes with QoS 1 and acknowledges each message only after its predictions are committed. This process plays the plant: a SCADA publisher
 * with QoS 1 spreading real readings (AI4I 2020 rows for milling machines, C-MAPSS FD001 cycles for
 * turbofans) over BENCH_ASSETS assets in round robin on factory/{site}/{line}/{asset}/telemetry.
 *
 * Per case:
 * - sustained: BENCH readings published as fast as the broker takes them (at most 1000 unacknowledged
 *   publishes); the rate is readings over the time from the first publish until the gateway's
 *   gateway_manufacturing_predictions_total has counted a prediction for every one of them.
 * - paced: the aim (20,000 readings/s) or, when the sustained rate is lower, 80% of it, for a few
 *   seconds; publish-to-prediction p50/p99 from the gateway's gateway_manufacturing_reading_age_seconds
 *   histogram (each reading is stamped with its publish time; interpolated within a bucket).
 * - raw: the model calls the gateway made during the sustained run (gateway_inference_batch_size: calls
 *   and rows) replayed on one ONNX Runtime session in this process, same session options, on the same
 *   kind of standardised rows; and one call per reading, the naive way.
 *
 * CPU per reading: the gateway process (all its threads), the broker, and this process (the publisher).
 *
 *   npm run bench:manufacturing      (BENCH_SCALE=0.3 for a quick look; BENCH_CASES=1,3 for some cases;
 *                                     BENCH_CPU_PROF=<dir> starts the gateway with --cpu-prof there)
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, MqttClient } from 'mqtt';
import * as ort from 'onnxruntime-node';
import { loadConfig } from '../../src/config/app-config';
import { plantModelOf, PlantModel, writeModelRow } from '../../src/domains/manufacturing/manufacturing-models';
import type { AssetKind } from '../../src/domains/manufacturing/assets/asset.entity';
import { unitConverter } from '../../src/domains/manufacturing/units.util';
import { sessionOptions } from '../../src/runtime/worker-pool/ort-session';
import type { ModelVersionInfo } from '../../src/runtime/inference-engine.service';
import { ai4iReadings, cmapssEngine, millAsset, turbofanAsset } from '../../test/fixtures/plant-data';
import { ownCpuSeconds, processCpuSeconds } from '../common/cpu';
import { BenchGateway, ROOT, startGateway } from '../common/gateway';

const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const ASSETS = Number(process.env.BENCH_ASSETS ?? '100');
const AIM = 20_000;
/** Publishes the broker has not acknowledged yet, at most. */
const PUBLISH_WINDOW = 1000;
const PACED_SECONDS = 4 * SCALE;

interface Case {
  label: string;
  kind: AssetKind;
  /** Readings per MQTT message (an edge node that batches a few scans). */
  perMessage: number;
  readings: number;
}

const CASES: Case[] = [
  { label: 'milling machines, 1 reading per message', kind: 'machine-failure', perMessage: 1, readings: 60_000 },
  { label: 'milling machines, 10 readings per message', kind: 'machine-failure', perMessage: 10, readings: 200_000 },
  {
    label: 'turbofans (30-cycle windows), 1 reading per message',
    kind: 'turbofan-rul',
    perMessage: 1,
    readings: 40_000,
  },
];

const MODEL_DIR: Record<AssetKind, string> = {
  'machine-failure': 'models/manufacturing/machine-failure/1',
  'turbofan-rul': 'models/manufacturing/turbofan-rul/1',
};

type Tags = Record<string, number>;

/** Real readings per kind, as the plant's tags (the assets' mappings say which tag is which input). */
function sampleReadings(kind: AssetKind): Tags[] {
  if (kind === 'machine-failure') return [...ai4iReadings(false, 1900), ...ai4iReadings(true, 100)];
  return [1, 2, 3, 4, 5].flatMap((unit) => cmapssEngine(unit).map((r) => r.values));
}

function assetsOf(c: Case, index: number): Array<Record<string, unknown>> {
  return Array.from({ length: ASSETS }, (_, i) => {
    const id = `bench-${index}-${i}`;
    // Alarms out of reach: the figure is the reading path, not alarm storage and publishing. Thresholds must be
    // values the model can output, so the samples' runs are what keeps them out of reach: 1,000 predictions in a
    // row at probability 1 (100 failure rows at most), or at RUL 0 (an engine's life is some 200 cycles).
    return c.kind === 'machine-failure'
      ? millAsset(id, { raiseAt: 1, clearAt: 0.5, consecutive: 1000 })
      : turbofanAsset(id, { raiseAt: 0, clearAt: 0, consecutive: 1000 });
  });
}

/** Prometheus text: the sum of a metric's samples whose labels contain `match`. */
function metricSum(text: string, name: string, match = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (match && !line.includes(match)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Cumulative histogram buckets: upper bound (s) to count. */
function buckets(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`);
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m) out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  }
  return out;
}

/** A quantile (ms) of the observations between two histogram snapshots, interpolated within its bucket. */
function quantileMs(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total === 0) return NaN;
  const target = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = (after.get(le) ?? 0) - (before.get(le) ?? 0);
    if (count >= target) {
      if (le === Infinity) return lower * 1e3;
      return (lower + ((target - below) / Math.max(1, count - below)) * (le - lower)) * 1e3;
    }
    lower = le;
    below = count;
  }
  return NaN;
}

interface Broker {
  url: string;
  /** For its CPU time; undefined when it is not ours to measure. */
  pid?: number;
  stop(): Promise<void>;
}

/** BENCH_MQTT_URL, or a Mosquitto of our own on a free port (in memory, no queue limit). */
async function broker(dir: string): Promise<Broker> {
  if (process.env.BENCH_MQTT_URL) return { url: process.env.BENCH_MQTT_URL, stop: () => Promise.resolve() };
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as { port: number };
      server.close(() => resolve(free));
    });
  });
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'max_queued_messages 0',
      'log_type error',
      '',
    ].join('\n'),
  );
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('error', (e) =>
      reject(new Error(`bench/manufacturing starts mosquitto (Debian's mosquitto): ${e.message}`)),
    );
    child.once('spawn', () => resolve());
  });
  const url = `mqtt://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const ok = await connectAsync(url, { reconnectPeriod: 0 }).then(
      (c) => c.endAsync().then(() => true),
      () => false,
    );
    if (ok) break;
    if (i > 100) throw new Error('mosquitto did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    pid: child.pid,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

class Plant {
  private readonly last = new Map<string, number>();
  private cursor = 0;
  private sample = 0;

  constructor(
    private readonly client: MqttClient,
    private readonly ids: string[],
    private readonly topicOf: (id: string) => string,
    private readonly rows: Tags[],
    private readonly perMessage: number,
  ) {}

  /** The next message in round robin: readings stamped now (older ones of a batch a millisecond apart). */
  private next(): { topic: string; body: string } {
    const id = this.ids[this.cursor++ % this.ids.length];
    const now = Date.now();
    let t = this.last.get(id) ?? 0;
    const readings = [];
    for (let k = 0; k < this.perMessage; k++) {
      t = Math.max(now - (this.perMessage - 1 - k), t + 1);
      readings.push({ timestamp: t, values: this.rows[this.sample++ % this.rows.length] });
    }
    this.last.set(id, t);
    return { topic: this.topicOf(id), body: JSON.stringify(this.perMessage === 1 ? readings[0] : readings) };
  }

  /** Publishes `messages` messages, at most PUBLISH_WINDOW unacknowledged, optionally paced to `perSecond` messages. */
  async publish(messages: number, perSecond?: number): Promise<void> {
    let outstanding = 0;
    let sent = 0;
    let wake: (() => void) | undefined;
    const started = performance.now();
    while (sent < messages) {
      if (perSecond) {
        const due = Math.min(messages, Math.floor(((performance.now() - started) / 1000) * perSecond) + 1);
        if (sent >= due) {
          await new Promise((r) => setTimeout(r, 2));
          continue;
        }
      }
      if (outstanding >= PUBLISH_WINDOW) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      const { topic, body } = this.next();
      outstanding++;
      sent++;
      this.client.publish(topic, body, { qos: 1 }, (error) => {
        if (error) throw error;
        outstanding--;
        const w = wake;
        wake = undefined;
        w?.();
      });
      // Let the socket and the acknowledgements through now and then.
      if (sent % 200 === 0) await new Promise((r) => setImmediate(r));
    }
    while (outstanding > 0) await new Promise<void>((r) => (wake = r));
  }
}

interface Snapshot {
  at: number;
  predictions: number;
  calls: number;
  rows: number;
  age: Map<number, number>;
  gatewayCpu: number;
  brokerCpu: number;
  ownCpu: number;
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const modelsDir = await mkdtemp(join(tmpdir(), 'bench-plant-models-'));
  await cp(join(ROOT, 'models', 'manufacturing'), join(modelsDir, 'manufacturing'), { recursive: true });
  const assetsFile = join(modelsDir, 'assets.json');
  const only = process.env.BENCH_CASES?.split(',').map(Number);
  const cases = CASES.map((c) => ({ ...c, readings: Math.round(c.readings * SCALE) })).filter(
    (_, i) => !only || only.includes(i + 1),
  );
  const assets = cases.flatMap((c, i) => assetsOf(c, i));
  await writeFile(assetsFile, JSON.stringify(assets));
  const clientId = `bench-gateway-${process.pid}`;
  const mqtt = await broker(modelsDir);
  const MQTT_URL = mqtt.url;
  console.log(
    `bench/manufacturing: ${ASSETS} assets per case over MQTT (${mqtt.pid ? 'own Mosquitto' : MQTT_URL}), QoS 1, ` +
      `${config.DATABASE_URL ? 'PostgreSQL' : 'PGlite'}; gateway: ${config.WORKER_POOL_SIZE} worker(s) x ` +
      `${config.intraOpThreads} intra-op thread(s), MQTT_MAX_IN_FLIGHT ${config.MQTT_MAX_IN_FLIGHT}; ` +
      `broker CPU ${mqtt.pid ? 'measured' : 'not measured'}`,
  );

  let gateway: BenchGateway | undefined;
  let publisher: MqttClient | undefined;
  try {
    gateway = await startGateway(
      modelsDir,
      {
        MQTT_URL,
        MQTT_CLIENT_ID: clientId,
        MANUFACTURING_ASSETS_FILE: assetsFile,
      },
      process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [],
    );
    const g = gateway;
    await waitFor(async () => {
      const probe = await fetch(`http://127.0.0.1:${g.port}/health/ready`, {
        headers: { authorization: g.authorization },
      });
      const body = (await probe.json()) as {
        checks: { mqtt?: { detail?: { subscribed?: boolean } } };
      };
      return body.checks.mqtt?.detail?.subscribed === true;
    }, 30_000);
    publisher = await connectAsync(MQTT_URL, { clientId: `bench-plant-${process.pid}`, clean: true });

    const snapshot = async (kind: AssetKind): Promise<Snapshot> => {
      const text = await (
        await fetch(`http://127.0.0.1:${g.port}/metrics`, { headers: { authorization: g.authorization } })
      ).text();
      const model = `model="${kind}"`;
      return {
        at: performance.now(),
        predictions: metricSum(text, 'gateway_manufacturing_predictions_total', `kind="${kind}"`),
        calls: metricSum(text, 'gateway_inference_batch_size_count', model),
        rows: metricSum(text, 'gateway_inference_batch_size_sum', model),
        age: buckets(text, 'gateway_manufacturing_reading_age_seconds'),
        gatewayCpu: processCpuSeconds(g.pid),
        brokerCpu: mqtt.pid ? processCpuSeconds(mqtt.pid) : 0,
        ownCpu: ownCpuSeconds(),
      };
    };
    const predicted = async (kind: AssetKind, target: number): Promise<Snapshot> => {
      for (;;) {
        const s = await snapshot(kind);
        if (s.predictions >= target) return s;
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    for (const [index, c] of cases.entries()) {
      const ids = assets.slice(index * ASSETS, (index + 1) * ASSETS).map((a) => String(a.assetId));
      const asset = assets[index * ASSETS];
      const topicOf = (id: string) => `factory/${String(asset.site)}/${String(asset.line)}/${id}/telemetry`;
      const rows = sampleReadings(c.kind);
      const plant = new Plant(publisher, ids, topicOf, rows, c.perMessage);
      const model = await rawModel(c.kind, modelsDir, config.intraOpThreads);
      const window = model.plant.windowLength;

      // Warm up: every asset's window full, the runtime and the database warm.
      const warmMessages = Math.ceil((ASSETS * (window + 20)) / c.perMessage);
      const start = await snapshot(c.kind);
      await plant.publish(warmMessages);
      const warm = warmMessages * c.perMessage;
      await predicted(c.kind, start.predictions + warm - ASSETS * (window - 1));

      // Sustained.
      const messages = Math.ceil(c.readings / c.perMessage);
      const readings = messages * c.perMessage;
      const s0 = await snapshot(c.kind);
      const t0 = performance.now();
      await plant.publish(messages);
      const s1 = await predicted(c.kind, s0.predictions + readings);
      const seconds = (s1.at - t0) / 1000;
      const rate = readings / seconds;

      // Paced at the aim, or at 80% of what was sustained.
      const pacedRate = Math.min(AIM, 0.8 * rate);
      const pacedMessages = Math.ceil((pacedRate * PACED_SECONDS) / c.perMessage);
      const p0 = await snapshot(c.kind);
      const tp = performance.now();
      await plant.publish(pacedMessages, pacedRate / c.perMessage);
      const p1 = await predicted(c.kind, p0.predictions + pacedMessages * c.perMessage);
      const pacedAchieved = (pacedMessages * c.perMessage) / ((p1.at - tp) / 1000);

      // Raw: the gateway's model calls of the sustained run, and one call per reading.
      const calls = s1.calls - s0.calls;
      const rowsRun = s1.rows - s0.rows;
      const batch = Math.max(1, Math.round(rowsRun / Math.max(1, calls)));
      const rawSame = await model.time(calls, batch);
      const singleCalls = Math.min(readings, Math.round(20_000 * SCALE));
      const rawSingle = await model.time(singleCalls, 1);
      await model.release();

      const per = (a: number, b: number) => (((b - a) / readings) * 1e6).toFixed(0);
      const rawSameRate = (calls * batch) / rawSame;
      const rawSingleRate = singleCalls / rawSingle;
      console.log(`\n${c.label} (${ASSETS} assets, ${c.kind}, window ${window})`);
      console.log(
        `  gateway sustained   ${fmt(rate)} readings/s over ${readings} readings (${messages} messages, ${seconds.toFixed(2)} s); ` +
          `aim ${AIM}: ${rate >= AIM ? 'met' : 'NOT met'}`,
      );
      console.log(
        `                      publish-to-prediction p50 ${quantileMs(s0.age, s1.age, 0.5).toFixed(1)} ms, p99 ${quantileMs(s0.age, s1.age, 0.99).toFixed(1)} ms (queueing at saturation)`,
      );
      console.log(
        `                      CPU µs/reading: gateway ${per(s0.gatewayCpu, s1.gatewayCpu)}, broker ${per(s0.brokerCpu, s1.brokerCpu)}, publisher ${per(s0.ownCpu, s1.ownCpu)}; ` +
          `${calls} model calls, mean batch ${(rowsRun / Math.max(1, calls)).toFixed(1)}`,
      );
      console.log(
        `  gateway paced       ${fmt(pacedAchieved)} readings/s (asked ${fmt(pacedRate)}): publish-to-prediction ` +
          `p50 ${quantileMs(p0.age, p1.age, 0.5).toFixed(1)} ms, p99 ${quantileMs(p0.age, p1.age, 0.99).toFixed(1)} ms`,
      );
      console.log(
        `  raw ORT, same calls ${fmt(rawSameRate)} readings/s (${calls} calls of ${batch}: ${(rawSame * 1e3).toFixed(0)} ms for what took the gateway ${(seconds * 1e3).toFixed(0)} ms)` +
          `  gateway/raw ${(rate / rawSameRate).toFixed(2)}`,
      );
      console.log(
        `  raw ORT, 1 per call ${fmt(rawSingleRate)} readings/s (${singleCalls} calls of 1)  gateway/raw ${(rate / rawSingleRate).toFixed(2)}`,
      );
    }
  } finally {
    await publisher?.endAsync();
    await gateway?.stop();
    // Drop the gateway's persistent session so the broker does not keep queueing for it.
    await connectAsync(MQTT_URL, { clientId, clean: true }).then(
      (c) => c.endAsync(),
      () => undefined,
    );
    await mqtt.stop();
    await rm(modelsDir, { recursive: true, force: true });
  }
}

function fmt(v: number): string {
  return v.toFixed(0).padStart(7);
}

async function waitFor(check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('the gateway did not subscribe');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One raw ONNX Runtime session of a kind's model, with the gateway's options, on real standardised rows. */
async function rawModel(
  kind: AssetKind,
  modelsDir: string,
  intraOpThreads: number,
): Promise<{ plant: PlantModel; time(calls: number, batch: number): Promise<number>; release(): Promise<void> }> {
  const dir = join(modelsDir, MODEL_DIR[kind].replace(/^models\//, ''));
  const manifest = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as ModelVersionInfo['manifest'];
  const info = { name: kind, version: '1', manifest } as ModelVersionInfo;
  const plant = plantModelOf(kind, info);
  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'), sessionOptions('cpu', intraOpThreads, 0));
  // Rows in the model's own units, converted as the gateway does (the mill's tags arrive in degrees Celsius).
  const sensors = (kind === 'machine-failure' ? millAsset('x') : turbofanAsset('x')).sensors as Array<{
    input: string;
    tag: string;
    unit: string;
  }>;
  const routes = plant.sensorSources.map((source) => {
    const sensor = sensors.find((m) => m.input === source)!;
    const column = plant.columns.find((c) => c.source === source && c.oneHot === undefined)!;
    return { tag: sensor.tag, convert: unitConverter(sensor.unit, column.unit) };
  });
  const samples = sampleReadings(kind).map((tags) => Float32Array.from(routes, (r) => r.convert(tags[r.tag])));
  const width = plant.columns.length;
  const perItem = width * plant.windowLength;
  const tensors = new Map<number, ort.Tensor>();
  const tensorOf = (batch: number): ort.Tensor => {
    let t = tensors.get(batch);
    if (!t) {
      const data = new Float32Array(batch * perItem);
      for (let i = 0; i < batch; i++) {
        for (let w = 0; w < plant.windowLength; w++) {
          writeModelRow(plant, samples[(i + w) % samples.length], { Type: 'L' }, data, i * perItem + w * width);
        }
      }
      const dims = plant.windowLength > 1 ? [batch, plant.windowLength, width] : [batch, width];
      t = new ort.Tensor('float32', data, dims);
      tensors.set(batch, t);
    }
    return t;
  };
  return {
    plant,
    time: async (calls, batch) => {
      const feed = { [plant.inputName]: tensorOf(batch) };
      for (let i = 0; i < 50; i++) await session.run(feed);
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) await session.run(feed);
      return (performance.now() - t0) / 1000;
    },
    release: () => session.release(),
  };
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
