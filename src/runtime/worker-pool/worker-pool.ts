import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Tensor } from '../tensor';
import { POOLED_FROM_BYTES } from '../tensor-pool';
import type { FromWorker, LoadedModel, LoadMessage } from './worker-protocol';

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
  ready: boolean;
  tasks: Map<number, Task>;
  /** Settles once the worker has loaded its models, failed to, or exited. */
  settled: Promise<void>;
}

export interface WorkerPoolEvents {
  /** A worker died and is being replaced; the pool is not ready until it has reloaded. */
  onWorkerLost?(index: number, reason: string): void;
  onWorkerReady?(index: number, models: LoadedModel[]): void;
}

export class WorkerFailure extends Error {}

/**
 * A fixed pool of worker threads, each owning one ONNX Runtime session per model version. Each worker
 * is handed up to `depth` tasks at a time: it runs them one after the other (ORT's run() occupies its
 * thread), and the next one is already waiting while the main thread answers the last. Extra tasks
 * wait in a FIFO. A worker that dies fails only the tasks it held and is replaced with a fresh one
 * that reloads every model.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending: Task[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly size: number,
    private load: LoadMessage,
    private readonly events: WorkerPoolEvents = {},
    private readonly depth = 2,
    private readonly workerFile = join(__dirname, 'inference-worker.js'),
  ) {}

  /** Starts every worker and resolves with what each model loaded on (from the first worker). */
  async start(): Promise<LoadedModel[]> {
    try {
      const reports = await Promise.all(Array.from({ length: this.size }, (_, i) => this.spawn(i)));
      return reports[0];
    } finally {
      // The boot's checked bytes are not kept: a worker replaced later reads model.onnx and checks it.
      this.load = { ...this.load, models: this.load.models.map(({ bytes: _bytes, ...model }) => model) };
    }
  }

  get readyWorkers(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  get workerCount(): number {
    return this.size;
  }

  /** Tasks the pool runs or holds ready at once; callers gain nothing by sending more. */
  get capacity(): number {
    return this.size * this.depth;
  }

  /** Runs a model; with `transfer`, the feeds' buffers move to the worker and are unusable here afterwards. */
  run(key: string, feeds: Record<string, Tensor>, transfer = false): Promise<RunResult> {
    if (this.closed) return Promise.reject(new WorkerFailure('worker pool is closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ id: this.nextId++, key, feeds, transfer, resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Fails what is waiting and stops every worker. A worker still loading (a replacement for one that
   * died, or a boot that is being abandoned) is let finish first: terminated while ONNX Runtime creates
   * a session, it took the whole process down (`terminate called after throwing an instance of
   * 'Napi::Error'`). SHUTDOWN_GRACE_MS bounds the wait.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const task of this.pending.splice(0)) task.reject(new WorkerFailure('worker pool closed'));
    await Promise.all(this.slots.filter((s) => !s.ready).map((s) => s.settled));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private spawn(index: number): Promise<LoadedModel[]> {
    const worker = new Worker(this.workerFile);
    // `settled` is the load below, set once it exists (nothing reads it before).
    const slot: Slot = { index, worker, ready: false, tasks: new Map(), settled: Promise.resolve() };
    this.slots[index] = slot;
    const loading = new Promise<LoadedModel[]>((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg, resolve, reject));
      worker.on('error', (error) => this.onExit(slot, `error: ${error.message}`, reject));
      worker.on('exit', (code) => this.onExit(slot, `exited with code ${code}`, reject));
      worker.postMessage(this.load);
    });
    slot.settled = loading.then(
      () => undefined,
      () => undefined,
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
      case 'loaded':
        slot.ready = true;
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
        if (task && msg.type === 'result')
          task.resolve({ outputs: msg.outputs, computeMs: msg.computeMs, returned: msg.returned ?? [] });
        else if (task && msg.type === 'run-failed') task.reject(new WorkerFailure(msg.message));
        this.dispatch();
        return;
      }
    }
  }

  private onExit(slot: Slot, reason: string, failed: (error: Error) => void): void {
    if (this.slots[slot.index] !== slot) return; // already replaced
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
    this.spawn(slot.index).catch((error: Error) => this.events.onWorkerLost?.(slot.index, error.message));
  }

  private dispatch(): void {
    while (this.pending.length > 0) {
      let best: Slot | undefined;
      for (const slot of this.slots) {
        if (slot?.ready && slot.tasks.size < this.depth && (!best || slot.tasks.size < best.tasks.size)) best = slot;
      }
      if (!best) return;
      const task = this.pending.shift()!;
      best.tasks.set(task.id, task);
      const buffers = task.transfer ? movable(task.feeds) : [];
      best.worker.postMessage({ type: 'run', id: task.id, key: task.key, feeds: task.feeds }, buffers);
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
