import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { echoedKey } from '../common/echoed-key';
import { AppError, FieldError, summariseFields } from '../common/errors/app-error';
import { ReadinessService } from '../common/health/readiness.service';
import { MetricsService } from '../common/metrics/metrics.service';
import { Batcher } from './batcher/batcher';
import { ExecutionProviderName } from './execution-provider/execution-provider';
import { BatchingOptions, DEFAULT_BATCHING, isBatchable, ModelManifest } from './model-registry/model-manifest.schema';
import { ModelVersionRecord, scanModels } from './model-registry/model-registry';
import { RuntimeMetrics } from './runtime-metrics';
import { elementCount, Tensor } from './tensor';
import { TensorPool } from './tensor-pool';
import type { TensorDtype } from './model-registry/model-manifest.schema';
import { inspectGraph, warmupBatchSizes } from './worker-pool/ort-session';
import { BootLoadTimeout, RunResult, WorkerFailure, WorkerPool, WorkerUnavailable } from './worker-pool/worker-pool';

/** What callers may know of a loaded model version. */
export interface ModelVersionInfo {
  name: string;
  version: string;
  domain: string;
  isDefault: boolean;
  manifest: ModelManifest;
  provider?: ExecutionProviderName;
  fallbackReason?: string;
  ready: boolean;
  batching: BatchingOptions & { batchable: boolean };
}

export interface InferenceResult {
  model: string;
  version: string;
  provider: ExecutionProviderName;
  outputs: Record<string, Tensor>;
  queueMs: number;
  computeMs: number;
  batchSize: number;
}

export interface InferOptions {
  /** Milliseconds the request may wait before it is dropped (504); defaults to the model's timeoutMs. */
  timeoutMs?: number;
  /**
   * The inputs' buffers pass to the engine (best from allocate()): the caller never reads or writes
   * them again, whatever the outcome, so they move to the worker without a copy and serve again.
   */
  give?: boolean;
}

interface Entry extends Omit<ModelVersionInfo, 'ready'> {
  key: string;
  batcher: Batcher;
  /** What describe() answers, not ready and ready: an entry never changes once loaded, and routes describe their model on every request. */
  described?: readonly [ModelVersionInfo, ModelVersionInfo];
}

/**
 * The runtime's one interface for callers: run a named model version on tensors. Behind it, the
 * model registry, the worker pool that owns the ORT sessions, and a batcher per model version.
 */
@Injectable()
export class InferenceEngine implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('InferenceEngine');
  private readonly entries = new Map<string, Entry[]>();
  private pool?: WorkerPool;
  private readonly metrics: RuntimeMetrics;
  private readonly buffers = new TensorPool();
  /** The pool's first workers have loaded: a worker ready after that is a replacement. */
  private booted = false;
  /** The liveness check has failed in this outage (logged once). */
  private livenessFailed = false;

  constructor(
    private readonly config: AppConfig,
    private readonly readiness: ReadinessService,
    metricsService: MetricsService,
  ) {
    this.metrics = new RuntimeMetrics(metricsService.registry);
  }

  async onModuleInit(): Promise<void> {
    const records = await scanModels(this.config.MODELS_DIR, inspectGraph);
    const batching = new Map(records.map((r) => [key(r), this.batchingFor(r)]));
    const runLimits = new Map(
      [...batching].map(([k, options]) => [k, options.timeoutMs + this.config.WORKER_STALL_MARGIN_MS]),
    );
    this.pool = new WorkerPool(
      this.config.WORKER_POOL_SIZE,
      {
        type: 'load',
        device: this.config.INFERENCE_DEVICE,
        cudaDeviceId: this.config.CUDA_DEVICE_ID,
        intraOpThreads: this.config.intraOpThreads,
        models: records.map((r) => ({
          key: key(r),
          onnxPath: r.onnxPath,
          sha256: r.manifest.sha256,
          bytes: r.onnxBytes,
          inputs: r.manifest.inputs,
          outputs: r.manifest.outputs.map((o) => o.name),
          warmupBatchSizes: warmupBatchSizes(batching.get(key(r))!.maxBatchSize),
        })),
      },
      {
        onWorkerLost: (index, reason) => {
          this.logger.error({ msg: 'inference worker lost; replacing it', worker: index, reason });
          this.metrics.workerFailures.inc({ cause: 'exited' });
          this.workersChanged();
        },
        onWorkerReady: (index) => {
          if (this.booted) this.logger.log({ msg: 'inference worker replaced; serving', worker: index });
          this.workersChanged();
        },
        onReplacementFailed: (index, reason, retryInMs, attempt) => {
          this.logger.error({
            msg: 'replacement inference worker failed to load; trying again',
            worker: index,
            attempt,
            retryInMs,
            reason,
          });
          this.metrics.workerFailures.inc({ cause: 'load_failed' });
          // One that did not load in time may have left its thread stuck inside ONNX Runtime.
          this.workersChanged();
        },
        onWorkerStalled: (index, reason, terminated) => {
          this.logger.error({
            msg: terminated
              ? 'inference worker stalled; terminated, replacing it'
              : 'inference worker stalled inside ONNX Runtime, which cannot be interrupted; replacing it (its thread stops if the run ever returns)',
            worker: index,
            reason,
            stuckThreads: this.pool?.stuckThreads,
          });
          this.metrics.workerFailures.inc({ cause: 'stalled' });
          this.workersChanged();
        },
        onStuckThreadStopped: () => {
          this.logger.warn({
            msg: 'a stalled inference worker thread has stopped',
            stuckThreads: this.pool?.stuckThreads,
          });
          this.workersChanged();
        },
      },
      {
        depth: this.config.WORKER_PIPELINE_DEPTH,
        runLimitMs: (k) => runLimits.get(k) ?? Infinity,
        bootLoadLimitMs: this.config.MODEL_LOAD_TIMEOUT_MS,
      },
    );
    const loaded = new Map((await this.pool.start().catch(bootLoadFailure)).map((m) => [m.key, m]));
    this.booted = true;
    for (const record of records) {
      const report = loaded.get(key(record))!;
      const options = batching.get(key(record))!;
      const entry: Entry = {
        key: key(record),
        name: record.name,
        version: record.version,
        domain: record.domain,
        isDefault: record.isDefault,
        manifest: record.manifest,
        provider: report.provider,
        fallbackReason: report.fallbackReason,
        batching: options,
        batcher: new Batcher(
          { ...options, maxConcurrentBatches: this.pool.capacity },
          (inputs, owned) => this.run(record, inputs, owned),
          this.metrics.observerFor(record.name, record.version),
          undefined,
          this.buffers,
        ),
      };
      this.entries.set(record.name, [...(this.entries.get(record.name) ?? []), entry]);
      this.metrics.provider.set({ model: record.name, version: record.version, provider: report.provider }, 1);
      this.logger.log({
        msg: 'model ready',
        model: record.name,
        version: record.version,
        default: record.isDefault,
        provider: report.provider,
        ...(report.fallbackReason ? { fallbackReason: report.fallbackReason } : {}),
        warmupMs: Math.round(report.warmupMs),
      });
    }
    this.readiness.register('models', () => this.readinessCheck());
    this.readiness.registerLiveness('models', () => this.live());
  }

  /** Threads of stalled workers that have not stopped: the process cannot exit normally while one runs. */
  get stuckThreads(): number {
    return this.pool?.stuckThreads ?? 0;
  }

  private workersChanged(): void {
    this.metrics.workersReady.set(this.pool?.readyWorkers ?? 0);
    this.metrics.workersStuck.set(this.pool?.stuckThreads ?? 0);
  }

  /**
   * Not live once no worker has served for WORKER_OUTAGE_LIVENESS_MS: what keeps them down (a model.onnx
   * changed since boot, threads stuck in ONNX Runtime) only a restart clears, and with no worker the
   * process serves nothing a restart would lose.
   */
  private live(): boolean {
    const limit = this.config.WORKER_OUTAGE_LIVENESS_MS;
    const unservedMs = this.pool?.unservedMs() ?? 0;
    if (limit === 0 || unservedMs < limit) {
      this.livenessFailed = false;
      return true;
    }
    if (!this.livenessFailed) {
      this.livenessFailed = true;
      this.logger.error({
        msg: 'no inference worker has served for WORKER_OUTAGE_LIVENESS_MS; /health/live answers 503 for a restart',
        unservedMs: Math.round(unservedMs),
        outage: this.pool?.outage(),
      });
    }
    return false;
  }

  beforeApplicationShutdown(): void {
    this.readiness.markShuttingDown();
  }

  /** Runs after the HTTP server has closed: let queued work finish, then stop the workers. */
  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.entries.values()].flat().map((e) => e.batcher.drain()));
    await this.pool?.close();
  }

  listModels(): ModelVersionInfo[] {
    return [...this.entries.values()].flat().map((e) => this.publicInfo(e));
  }

  /** The version that serves `name` (the default one unless `version` pins another). */
  describe(name: string, version?: string): ModelVersionInfo {
    return this.publicInfo(this.resolve(name, version));
  }

  /** Every worker loads every model, so a model is ready while at least one worker is. */
  private get modelsServed(): boolean {
    return (this.pool?.readyWorkers ?? 0) > 0;
  }

  private publicInfo(entry: Entry): ModelVersionInfo {
    if (!entry.described) {
      const { key: _key, batcher: _batcher, described: _described, ...info } = entry;
      entry.described = [Object.freeze({ ...info, ready: false }), Object.freeze({ ...info, ready: true })];
    }
    return entry.described[this.modelsServed ? 1 : 0];
  }

  versionsOf(name: string): string[] {
    return (this.entries.get(name) ?? []).map((e) => e.version);
  }

  /**
   * A zero-filled input tensor to fill and pass to infer() with `give`: a large one may reuse the
   * buffer of an earlier run, back from its worker, instead of fresh memory and a copy.
   */
  allocate(dtype: TensorDtype, dims: number[]): Tensor {
    return this.buffers.allocate(dtype, dims);
  }

  private async run(model: ModelVersionRecord, inputs: Record<string, Tensor>, owned: boolean): Promise<RunResult> {
    let result: RunResult;
    try {
      result = await this.pool!.run(key(model), inputs, owned);
    } catch (error) {
      if (!(error instanceof WorkerUnavailable)) throw error;
      // What /v2/models/{name}/ready says at the same time (503): not an inference failure, and worth a retry.
      throw new AppError('MODEL_NOT_READY', `model ${model.name} version ${model.version}: ${error.message}`, {
        retryAfterSeconds: Math.ceil(error.retryAfterMs / 1000),
        cause: error,
      });
    }
    for (const buffer of result.returned) this.buffers.recycle(buffer);
    return result;
  }

  async infer(
    name: string,
    version: string | undefined,
    inputs: Record<string, Tensor>,
    options: InferOptions = {},
  ): Promise<InferenceResult> {
    const entry = this.resolve(name, version);
    const labels = { model: entry.name, version: entry.version };
    try {
      validateInputs(entry.manifest, inputs);
    } catch (error) {
      this.metrics.requests.inc({ ...labels, outcome: 'invalid' });
      throw error;
    }
    const timeoutMs = options.timeoutMs ?? entry.batching.timeoutMs;
    try {
      const result = await entry.batcher.submit(inputs, timeoutMs, options.give === true);
      const broken = manifestBreach(entry.manifest, result.outputs);
      if (broken) {
        // The model's fault, not the caller's: what GET /v2/models/{name} promised is not what it gave.
        this.logger.error({
          msg: 'model output breaks its manifest',
          model: entry.name,
          version: entry.version,
          broken,
        });
        throw new AppError(
          'INFERENCE_FAILED',
          `model ${entry.name} version ${entry.version} gave an output its model.json does not allow: ${broken}`,
        );
      }
      return { model: entry.name, version: entry.version, provider: entry.provider!, ...result };
    } catch (error) {
      if (error instanceof WorkerFailure) {
        this.logger.error({ msg: 'inference failed', model: entry.name, version: entry.version, error: error.message });
        throw new AppError('INFERENCE_FAILED', `model ${entry.name} version ${entry.version} failed to run`, {
          cause: error,
        });
      }
      throw error;
    }
  }

  private resolve(name: string, version?: string): Entry {
    const versions = this.entries.get(name);
    // The names are the caller's (a path, or a domain's call): quoted as any key a caller sent is (echoedKey).
    if (!versions) throw new AppError('MODEL_NOT_FOUND', `no model named "${echoedKey(name)}"`);
    const entry =
      version === undefined ? versions.find((e) => e.isDefault) : versions.find((e) => e.version === version);
    if (!entry) {
      throw new AppError(
        'MODEL_VERSION_NOT_FOUND',
        `model "${name}" has no version "${echoedKey(version ?? '')}" (versions: ${versions.map((e) => e.version).join(', ')})`,
      );
    }
    return entry;
  }

  private batchingFor(record: ModelVersionRecord): BatchingOptions & { batchable: boolean } {
    const m = record.manifest;
    const batchable = isBatchable(m);
    const c = this.config;
    const merged: BatchingOptions = {
      maxBatchSize: c.BATCH_MAX_SIZE ?? m.batching?.maxBatchSize ?? DEFAULT_BATCHING.maxBatchSize,
      maxQueueDelayMs: c.BATCH_MAX_QUEUE_DELAY_MS ?? m.batching?.maxQueueDelayMs ?? DEFAULT_BATCHING.maxQueueDelayMs,
      maxQueueSize: c.BATCH_MAX_QUEUE_SIZE ?? m.batching?.maxQueueSize ?? DEFAULT_BATCHING.maxQueueSize,
      timeoutMs: c.INFERENCE_TIMEOUT_MS ?? m.batching?.timeoutMs ?? DEFAULT_BATCHING.timeoutMs,
    };
    return { ...merged, maxBatchSize: batchable ? merged.maxBatchSize : 1, batchable };
  }

  /** Ready while a worker serves: every worker loads every model, so one serves them all (more only add capacity). */
  private readinessCheck(): { ready: boolean; detail: unknown } {
    const workers = this.pool ? `${this.pool.readyWorkers}/${this.pool.workerCount}` : '0/0';
    const models: Record<string, string> = {};
    const ready = this.modelsServed;
    const outage = this.pool?.outage();
    for (const entry of [...this.entries.values()].flat()) {
      const fallback = entry.fallbackReason ? ` (${entry.fallbackReason})` : '';
      models[entry.key] = ready ? `ready on ${entry.provider}${fallback}` : `not served: ${outage ?? 'loading'}`;
    }
    const stuckThreads = this.pool?.stuckThreads ?? 0;
    return { ready, detail: { workers, ...(stuckThreads > 0 ? { stuckThreads } : {}), models } };
  }
}

/** The boot's words for a model load that went past MODEL_LOAD_TIMEOUT_MS; other failures name themselves. */
function bootLoadFailure(error: unknown): never {
  if (!(error instanceof BootLoadTimeout)) throw error;
  const what = error.place ? `${error.place}: not loaded and warmed up` : 'an inference worker began no model';
  throw new Error(
    `${what} within MODEL_LOAD_TIMEOUT_MS (${error.limitMs} ms); ` +
      (error.terminated
        ? 'the boot stops'
        : 'the boot stops, and the process is killed: its thread is inside ONNX Runtime, which cannot be interrupted'),
  );
}

function key(r: { name: string; version: string }): string {
  return `${r.name}@${r.version}`;
}

/**
 * Where a run's outputs break the manifest (a declared output missing, another dtype or rank, a fixed dimension
 * with another size), said for the first one that does; undefined where they keep it. ORT checks a graph's
 * declared output shapes only where the graph fixes them, and a manifest may fix what the graph leaves open.
 */
export function manifestBreach(manifest: ModelManifest, outputs: Record<string, Tensor>): string | undefined {
  for (const spec of manifest.outputs) {
    const tensor = outputs[spec.name];
    const declared = `${spec.dtype} [${spec.shape.join(', ')}]`;
    if (!tensor) return `output ${spec.name} is missing (declared ${declared})`;
    const fits =
      tensor.dtype === spec.dtype &&
      tensor.dims.length === spec.shape.length &&
      spec.shape.every((dim, i) => dim < 0 || tensor.dims[i] === dim);
    if (!fits) return `output ${spec.name} is ${tensor.dtype} [${tensor.dims.join(', ')}], declared ${declared}`;
  }
  return undefined;
}

/** Checks names, dtypes, ranks and fixed dimensions against the manifest before anything is queued. */
export function validateInputs(manifest: ModelManifest, inputs: Record<string, Tensor>): void {
  const fields: FieldError[] = [];
  const declared = new Set(manifest.inputs.map((s) => s.name));
  for (const name of Object.keys(inputs)) {
    if (declared.has(name)) continue;
    // The caller's name, quoted as any key a caller sent is: cut past 100 characters, never a card number.
    const echoed = echoedKey(name);
    fields.push({ field: `inputs.${echoed}`, reason: `the model has no input named "${echoed}"` });
  }
  let rows: number | undefined;
  for (const spec of manifest.inputs) {
    const tensor = inputs[spec.name];
    const field = `inputs.${spec.name}`;
    if (!tensor) {
      fields.push({ field, reason: 'required input is missing' });
      continue;
    }
    if (tensor.dtype !== spec.dtype) fields.push({ field, reason: `dtype must be ${spec.dtype}, got ${tensor.dtype}` });
    if (tensor.dims.length !== spec.shape.length) {
      fields.push({
        field,
        reason: `shape must have ${spec.shape.length} dimensions [${spec.shape.join(', ')}], got [${tensor.dims.join(', ')}]`,
      });
      continue;
    }
    spec.shape.forEach((dim, i) => {
      const got = tensor.dims[i];
      if (!Number.isInteger(got) || got < 1)
        fields.push({ field, reason: `dimension ${i} must be a positive integer` });
      else if (dim >= 0 && got !== dim) fields.push({ field, reason: `dimension ${i} must be ${dim}, got ${got}` });
    });
    if (tensor.data.length !== elementCount(tensor.dims)) {
      fields.push({
        field,
        reason: `shape [${tensor.dims.join(', ')}] needs ${elementCount(tensor.dims)} values, got ${tensor.data.length}`,
      });
    }
    if (spec.shape[0] === -1) {
      if (rows !== undefined && tensor.dims[0] !== rows)
        fields.push({ field, reason: 'all inputs must have the same batch size' });
      rows ??= tensor.dims[0];
    }
  }
  if (fields.length > 0) {
    throw new AppError('INVALID_TENSOR', summariseFields(fields), { fields });
  }
}
