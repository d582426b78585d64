import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Tensor } from '../tensor';
import { POOLED_FROM_BYTES } from '../tensor-pool';
import { CONTROL_LENGTH, CONTROL_RUNS, CONTROL_STOP, modelPlace } from './worker-protocol';
import type { FromWorker, LoadedModel, LoadMessage, WorkerInit } from './worker-protocol';

export interface RunResult {
  outputs: Record<string, Tensor>;
  computeMs: number;
  /** The run's large input buffers, back from the worker and read nowhere else (for a TensorPool). */
  returned: ArrayBuffer[];
}

interface Task {
  id: number;
  key: string;
  feeds: Record<string, Tensor>;
  /** Move the feeds' buffers to the worker instead of copying them (they are the pool's to give). */
  transfer: boolean;
  resolve: (result: RunResult) => void;
  reject: (error: Error) => void;
}

interface Slot {
  index: number;
  worker: Worker;
  /** Shared with the worker: see WorkerInit. */
  control: Int32Array;
  ready: boolean;
  /** A run or a replacement's load went past its limit: the worker serves no more, its thread is let go (giveUp). */
  stalled: boolean;
  tasks: Map<number, Task>;
  /** When the worker started the run at the head of `tasks` (it runs them in turn). */
  busySince: number;
  /** Settles once the worker has loaded its models, failed to, or exited. */
  settled: Promise<void>;
  /** The model the worker is loading (its 'loading' message), until it has loaded them all. */
  loading?: string;
  /** Called as the worker begins each model's load (a boot's limit counts per model). */
  onModelLoading?: () => void;
}

/** A slot whose worker is gone and not yet replaced: the next try, or none while stuck threads fill the pool. */
interface Retry {
  attempt: number;
  at: number;
  timer?: NodeJS.Timeout;
}

export interface WorkerPoolEvents {
  /** A worker died and is being replaced; the pool is not ready until it has reloaded. */
  onWorkerLost?(index: number, reason: string): void;
  onWorkerReady?(index: number, models: LoadedModel[]): void;
  /**
   * A replacement failed to load, or did not within its limit (loadLimitMs: then its thread is let go as a
   * stalled worker's is, and may count in stuckThreads); it is tried again in `retryInMs`.
   */
  onReplacementFailed?(index: number, reason: string, retryInMs: number, attempt: number): void;
  /**
   * A run went past its limit: the worker's tasks are failed and it is replaced. `terminated`: its thread was
   * in JavaScript and is terminated; otherwise it is inside ONNX Runtime, which Node cannot interrupt, and it
   * stops by itself if that run ever returns (until then it counts in stuckThreads).
   */
  onWorkerStalled?(index: number, reason: string, terminated: boolean): void;
  /** A stalled worker's thread has stopped. */
  onStuckThreadStopped?(): void;
}

export interface WorkerPoolOptions {
  /** Tasks handed to a worker at once (WORKER_PIPELINE_DEPTH). */
  depth?: number;
  workerFile?: string;
  /** How long a run of this model may take before its worker counts as stalled; without it, no watchdog. */
  runLimitMs?: (key: string) => number;
  /** First wait before a replacement that failed to load is tried again; it doubles up to retryMaxMs. */
  retryFirstMs?: number;
  retryMaxMs?: number;
  /** How long a replacement may take to load its models before it counts as failed (default: see loadLimit). */
  loadLimitMs?: number;
  /**
   * How long each model's load (its session, then its warm-up) may take at boot before start() fails with a
   * BootLoadTimeout; without it, or 0, no limit.
   */
  bootLoadLimitMs?: number;
}

export class WorkerFailure extends Error {}

/**
 * A boot's load of a model went past bootLoadLimitMs: `place` names its folder, model and version (undefined if
 * the worker had not begun its first model). `terminated`: its thread was in JavaScript and is terminated;
 * otherwise it is inside ONNX Runtime, which Node cannot interrupt, and counts in stuckThreads.
 */
export class BootLoadTimeout extends WorkerFailure {
  constructor(
    readonly place: string | undefined,
    readonly limitMs: number,
    readonly terminated: boolean,
  ) {
    super(
      `${place ? `${place}: not loaded and warmed up` : 'inference worker: no model begun'} within ${limitMs} ms; ` +
        (terminated ? 'its thread is terminated' : 'its thread is inside ONNX Runtime, which cannot be interrupted'),
    );
  }
}

/** No worker can take the run now (none is loaded); worth trying again in `retryAfterMs`. */
export class WorkerUnavailable extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}

const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30_000;
/**
 * The least a replacement is given to load (read and check model.onnx, create the sessions, warm up) before it
 * counts as failed: there is no setting for it, and two minutes is far beyond a load that is slow rather than
 * hung. A host whose boot took longer (large models, CUDA) gives its replacements LOAD_LIMIT_BOOT_FACTOR times
 * the boot's load instead, so that a slow load is never cut short and retried for ever.
 */
const LOAD_LIMIT_MIN_MS = 120_000;
const LOAD_LIMIT_BOOT_FACTOR = 4;

/**
 * A fixed pool of worker threads, each owning one ONNX Runtime session per model version. Each worker
 * is handed up to `depth` tasks at a time: it runs them one after the other (ORT's run() occupies its
 * thread), and the next one is already waiting while the main thread answers the last. Extra tasks
 * wait in a FIFO while a worker is ready; with none ready, a task is refused at once (WorkerUnavailable).
 * A worker that dies fails only the tasks it held and is replaced with a fresh one that reloads every
 * model; a replacement that fails to load, or has not loaded within its limit (loadLimit), is tried again,
 * from 1 s doubling up to every 30 s. A worker whose run goes past its limit (runLimitMs) is given up on and
 * replaced the same way (see stall).
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending: Task[] = [];
  private readonly retries = new Map<number, Retry>();
  /** Threads of stalled workers that have not stopped yet. */
  private readonly stuck = new Set<Worker>();
  private readonly depth: number;
  private readonly workerFile: string;
  private readonly runLimitMs?: (key: string) => number;
  private readonly retryFirstMs: number;
  private readonly retryMaxMs: number;
  private readonly loadLimitMs?: number;
  private readonly bootLoadLimitMs?: number;
  /** How long the boot's workers took to load. */
  private bootLoadMs = 0;
  private watchdog?: NodeJS.Timeout;
  /** Since when no worker has been ready, once one was. */
  private unservedSince?: number;
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly size: number,
    private load: LoadMessage,
    private readonly events: WorkerPoolEvents = {},
    options: WorkerPoolOptions = {},
  ) {
    this.depth = options.depth ?? 2;
    this.workerFile = options.workerFile ?? join(__dirname, 'inference-worker.js');
    this.runLimitMs = options.runLimitMs;
    this.retryFirstMs = options.retryFirstMs ?? RETRY_FIRST_MS;
    this.retryMaxMs = options.retryMaxMs ?? RETRY_MAX_MS;
    this.loadLimitMs = options.loadLimitMs;
    this.bootLoadLimitMs = options.bootLoadLimitMs || undefined;
  }

  /**
   * Starts every worker and resolves with what each model loaded on (from the first worker). A model whose load
   * goes past bootLoadLimitMs fails it (BootLoadTimeout): a hang there left the gateway never ready, never failing.
   */
  async start(): Promise<LoadedModel[]> {
    try {
      const started = performance.now();
      const limit = this.bootLoadLimitMs === undefined ? undefined : { ms: this.bootLoadLimitMs, perModel: true };
      const reports = await Promise.all(Array.from({ length: this.size }, (_, i) => this.spawn(i, limit)));
      this.bootLoadMs = performance.now() - started;
      this.startWatchdog();
      return reports[0];
    } finally {
      // The boot's checked bytes are not kept: a worker replaced later reads model.onnx and checks it.
      this.load = { ...this.load, models: this.load.models.map(({ bytes: _bytes, ...model }) => model) };
    }
  }

  get readyWorkers(): number {
    let ready = 0;
    for (const slot of this.slots) if (slot?.ready) ready++;
    return ready;
  }

  get workerCount(): number {
    return this.size;
  }

  /** Threads of workers given up on (stalled) that have not stopped: inside ONNX Runtime, they may never. */
  get stuckThreads(): number {
    return this.stuck.size;
  }

  /** How long no worker has been ready, in ms (0 while one is, or before the first has loaded). */
  unservedMs(now = performance.now()): number {
    return this.unservedSince === undefined ? 0 : now - this.unservedSince;
  }

  /** Why no worker serves, and when one may again, without paths (readiness details); undefined while one serves. */
  outage(): string | undefined {
    if (this.readyWorkers > 0) return undefined;
    const retry = [...this.retries.values()].sort((a, b) => a.at - b.at)[0];
    if (!retry || this.loading()) return 'a replacement worker is loading';
    if (retry.timer === undefined) return "waiting for a stalled worker's thread to stop";
    const inS = Math.max(0, Math.ceil((retry.at - performance.now()) / 1000));
    return `the replacement worker failed to load ${retry.attempt} time(s) (the log says why); next try in ${inS} s`;
  }

  /** Tasks the pool runs or holds ready at once; callers gain nothing by sending more. */
  get capacity(): number {
    return this.size * this.depth;
  }

  /** Runs a model; with `transfer`, the feeds' buffers move to the worker and are unusable here afterwards. */
  run(key: string, feeds: Record<string, Tensor>, transfer = false): Promise<RunResult> {
    if (this.closed) return Promise.reject(new WorkerFailure('worker pool is closed'));
    if (this.readyWorkers === 0) return Promise.reject(this.unavailable());
    return new Promise((resolve, reject) => {
      this.pending.push({ id: this.nextId++, key, feeds, transfer, resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Fails what is waiting and stops every worker. A worker still loading (a replacement for one that
   * died, or a boot that is being abandoned) is let finish first: terminated while ONNX Runtime creates
   * a session, it took the whole process down (`terminate called after throwing an instance of
   * 'Napi::Error'`). SHUTDOWN_GRACE_MS bounds the wait. A stalled worker's thread is not waited for.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    for (const retry of this.retries.values()) clearTimeout(retry.timer);
    this.retries.clear();
    for (const task of this.pending.splice(0)) task.reject(new WorkerFailure('worker pool closed'));
    await Promise.all(this.slots.filter((s) => !s.stalled && !s.ready).map((s) => s.settled));
    // Read again: a load given up on meanwhile may have left its thread inside ONNX Runtime.
    await Promise.all(this.slots.filter((s) => !s.stalled).map((s) => s.worker.terminate()));
  }

  /**
   * How long a replacement may take to load: loadLimitMs, else LOAD_LIMIT_MIN_MS or, after a slower boot,
   * LOAD_LIMIT_BOOT_FACTOR times the boot's load. The boot's own load has its limit per model (bootLoadLimitMs).
   */
  private loadLimit(): { ms: number; perModel: false } {
    const ms = this.loadLimitMs ?? Math.max(LOAD_LIMIT_MIN_MS, Math.ceil(LOAD_LIMIT_BOOT_FACTOR * this.bootLoadMs));
    return { ms, perModel: false };
  }

  /**
   * Starts a worker in the slot; with a `limit`, a load not done by then (`perModel`: a model's load not done
   * that long after it began, the boot's limit) is given up on and fails.
   */
  private spawn(index: number, limit?: { ms: number; perModel: boolean }): Promise<LoadedModel[]> {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_LENGTH * Int32Array.BYTES_PER_ELEMENT));
    const init: WorkerInit = { control: control.buffer };
    const worker = new Worker(this.workerFile, { workerData: init });
    // `settled` is the load below, set once it exists (nothing reads it before).
    const slot: Slot = {
      index,
      worker,
      control,
      ready: false,
      stalled: false,
      tasks: new Map(),
      busySince: 0,
      settled: Promise.resolve(),
    };
    this.slots[index] = slot;
    let timer: NodeJS.Timeout | undefined;
    const loading = new Promise<LoadedModel[]>((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg, resolve, reject));
      worker.on('error', (error) => this.onExit(slot, `error: ${error.message}`, reject));
      worker.on('exit', (code) => this.onExit(slot, `exited with code ${code}`, reject));
      worker.postMessage(this.load);
      if (limit === undefined) return;
      const expired = (): void => {
        if (slot.ready || slot.stalled) return;
        const terminated = this.giveUp(slot);
        if (limit.perModel) {
          const model = this.load.models.find((m) => m.key === slot.loading);
          const error = new BootLoadTimeout(model && modelPlace(model), limit.ms, terminated);
          // A terminated thread is let stop first, so that a failed boot finds no thread stuck but the one that is.
          if (terminated) worker.once('exit', () => reject(error));
          else reject(error);
          return;
        }
        reject(
          new WorkerFailure(
            `inference worker did not load its models within ${limit.ms} ms; ` +
              (terminated
                ? 'terminated'
                : 'its thread is inside ONNX Runtime, which cannot be interrupted, and stops if that call returns'),
          ),
        );
      };
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(expired, limit.ms);
        timer.unref();
      };
      arm();
      if (limit.perModel) slot.onModelLoading = arm;
    });
    slot.settled = loading.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    return loading;
  }

  private onMessage(
    slot: Slot,
    msg: FromWorker,
    loaded: (models: LoadedModel[]) => void,
    failed: (error: Error) => void,
  ): void {
    switch (msg.type) {
      case 'loading':
        if (slot.stalled) return;
        slot.loading = msg.key;
        slot.onModelLoading?.();
        return;
      case 'loaded':
        if (slot.stalled) return; // given up on (loadLimit) as its answer was on its way
        slot.loading = undefined;
        slot.ready = true;
        this.retries.delete(slot.index);
        this.unservedSince = undefined;
        this.events.onWorkerReady?.(slot.index, msg.models);
        loaded(msg.models);
        this.dispatch();
        return;
      case 'load-failed':
        failed(new WorkerFailure(msg.message));
        void slot.worker.terminate();
        return;
      case 'result':
      case 'run-failed': {
        const task = slot.tasks.get(msg.id);
        slot.tasks.delete(msg.id);
        // The next task handed over starts now.
        if (slot.tasks.size > 0) slot.busySince = performance.now();
        if (task && msg.type === 'result')
          task.resolve({ outputs: msg.outputs, computeMs: msg.computeMs, returned: msg.returned ?? [] });
        else if (task && msg.type === 'run-failed') task.reject(new WorkerFailure(msg.message));
        this.dispatch();
        return;
      }
    }
  }

  private onExit(slot: Slot, reason: string, failed: (error: Error) => void): void {
    if (this.slots[slot.index] !== slot || slot.stalled) return; // already replaced, or given up on
    const wasReady = slot.ready;
    slot.ready = false;
    for (const task of slot.tasks.values()) task.reject(new WorkerFailure(`inference worker ${reason}`));
    slot.tasks.clear();
    if (!wasReady) {
      // Settled even while closing, which may be waiting for this load.
      failed(new WorkerFailure(`inference worker ${reason} while loading models`));
      return;
    }
    if (this.closed) return;
    this.events.onWorkerLost?.(slot.index, reason);
    this.noteUnserved();
    this.replace(slot.index, 0);
  }

  /**
   * Starts a worker in the slot, and on a failed load tries again later (from retryFirstMs, doubling up to
   * retryMaxMs): a model file away for a moment (a deploy, a network file system) must not leave the slot
   * empty for good. Stalled workers' threads that have not stopped count against the pool: past as many as
   * it has workers, it waits for one of them to stop instead, so that at most twice the pool's threads
   * exist however often workers stall.
   */
  private replace(index: number, attempt: number): void {
    if (this.closed) return;
    if (this.stuck.size > this.size) {
      this.retries.set(index, { attempt, at: Infinity });
      return;
    }
    this.retries.delete(index);
    this.spawn(index, this.loadLimit()).catch((error: Error) => {
      if (this.closed) return;
      const retryInMs = Math.min(this.retryMaxMs, this.retryFirstMs * 2 ** Math.min(attempt, 20));
      const timer = setTimeout(() => this.replace(index, attempt + 1), retryInMs);
      timer.unref();
      this.retries.set(index, { attempt: attempt + 1, at: performance.now() + retryInMs, timer });
      this.events.onReplacementFailed?.(index, error.message, retryInMs, attempt + 1);
    });
  }

  /** With no worker ready, what waits can only wait for a load that may never come: refused now. */
  private noteUnserved(): void {
    if (this.readyWorkers > 0) return;
    this.unservedSince ??= performance.now();
    if (this.pending.length === 0) return;
    const error = this.unavailable();
    for (const task of this.pending.splice(0)) task.reject(error);
  }

  /** A replacement is loading (not waiting for its next try, nor for a stuck thread to stop). */
  private loading(): boolean {
    return this.slots.some((s) => !s.ready && !s.stalled && !this.retries.has(s.index));
  }

  private unavailable(): WorkerUnavailable {
    let next = Infinity;
    for (const retry of this.retries.values()) next = Math.min(next, retry.at);
    const retryAfterMs = this.loading() || !Number.isFinite(next) ? 1000 : Math.max(1000, next - performance.now());
    return new WorkerUnavailable('no inference worker is loaded (one is being replaced)', retryAfterMs);
  }

  private startWatchdog(): void {
    if (!this.runLimitMs || this.closed) return;
    const shortest = Math.min(...this.load.models.map((m) => this.runLimitMs!(m.key)));
    // A few looks per limit, at most one a second: a stall is seen within a quarter of its limit.
    const every = Math.max(10, Math.min(1000, Math.floor(shortest / 4)));
    this.watchdog = setInterval(() => this.watch(), every);
    this.watchdog.unref();
  }

  private watch(): void {
    const now = performance.now();
    for (const slot of this.slots) {
      if (!slot?.ready || slot.tasks.size === 0) continue;
      const head = slot.tasks.values().next().value as Task;
      const limit = this.runLimitMs!(head.key);
      if (now - slot.busySince > limit) {
        this.stall(
          slot,
          `a run of ${head.key} has gone on for ${Math.round(now - slot.busySince)} ms (limit ${limit} ms)`,
        );
      }
    }
  }

  /**
   * Gives up on a worker whose run went past its limit (ONNX Runtime that never returns: a driver hang, a
   * deadlock): it serves no more, its tasks are refused (their requests were answered at their deadlines
   * already, unless they asked for longer than their model's), and a replacement starts at once. Its thread
   * is terminated only while no run is under way (a JavaScript loop); Node cannot interrupt native code, and
   * terminating a thread inside ONNX Runtime aborts the process once the run returns, so such a thread is
   * told to stop (CONTROL_STOP), stops by itself if the run returns, and is counted until then.
   */
  private stall(slot: Slot, reason: string): void {
    const terminated = this.giveUp(slot);
    const refused = new WorkerUnavailable('the inference worker running it stalled and is being replaced', 1000);
    for (const task of slot.tasks.values()) task.reject(refused);
    slot.tasks.clear();
    this.events.onWorkerStalled?.(slot.index, reason, terminated);
    this.noteUnserved();
    this.replace(slot.index, 0);
  }

  /**
   * Lets a worker's thread go: it serves no more, and is terminated unless it is inside ONNX Runtime (a run, or
   * a load's session creation or warm-up), where it is told to stop and counted in stuckThreads until it does.
   * True if it was terminated.
   */
  private giveUp(slot: Slot): boolean {
    slot.ready = false;
    slot.stalled = true;
    Atomics.store(slot.control, CONTROL_STOP, 1);
    const terminated = Atomics.load(slot.control, CONTROL_RUNS) === 0;
    const worker = slot.worker;
    this.stuck.add(worker);
    worker.once('exit', () => {
      this.stuck.delete(worker);
      this.events.onStuckThreadStopped?.();
      for (const [index, retry] of [...this.retries]) {
        if (retry.timer === undefined) this.replace(index, retry.attempt);
      }
    });
    if (terminated) void worker.terminate();
    return terminated;
  }

  private dispatch(): void {
    while (this.pending.length > 0) {
      let best: Slot | undefined;
      for (const slot of this.slots) {
        if (slot?.ready && slot.tasks.size < this.depth && (!best || slot.tasks.size < best.tasks.size)) best = slot;
      }
      if (!best) return;
      const task = this.pending.shift()!;
      if (best.tasks.size === 0) best.busySince = performance.now();
      best.tasks.set(task.id, task);
      const buffers = task.transfer ? movable(task.feeds) : [];
      try {
        best.worker.postMessage({ type: 'run', id: task.id, key: task.key, feeds: task.feeds }, buffers);
      } catch (error) {
        // A feed that cannot be sent (a detached buffer): this task fails, not the process (dispatch runs from
        // a worker's message handler, where a throw is uncaught).
        best.tasks.delete(task.id);
        task.reject(new WorkerFailure(`the run could not be handed to a worker: ${(error as Error).message}`));
      }
    }
  }
}

/** Moving a buffer saves a copy only when it is large; below that, cloning costs no more than detaching. */
const MOVE_FROM_BYTES = POOLED_FROM_BYTES;

function movable(feeds: Record<string, Tensor>): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const tensor of Object.values(feeds)) {
    if (tensor.data.byteLength >= MOVE_FROM_BYTES) buffers.add(tensor.data.buffer as ArrayBuffer);
  }
  return [...buffers];
}
