import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Tensor } from '../tensor';
import type { FromWorker, LoadedModel, LoadMessage } from './worker-protocol';

export interface RunResult {
  outputs: Record<string, Tensor>;
  computeMs: number;
}

interface Task {
  id: number;
  key: string;
  feeds: Record<string, Tensor>;
  resolve: (result: RunResult) => void;
  reject: (error: Error) => void;
}

interface Slot {
  index: number;
  worker: Worker;
  ready: boolean;
  task?: Task;
}

export interface WorkerPoolEvents {
  /** A worker died and is being replaced; the pool is not ready until it has reloaded. */
  onWorkerLost?(index: number, reason: string): void;
  onWorkerReady?(index: number, models: LoadedModel[]): void;
}

export class WorkerFailure extends Error {}

/**
 * A fixed pool of worker threads, each owning one ONNX Runtime session per model version. One task
 * at a time per worker (ORT's run() occupies its thread); extra tasks wait in a FIFO. A worker that
 * dies fails only its own task and is replaced with a fresh one that reloads every model.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending: Task[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly size: number,
    private readonly load: LoadMessage,
    private readonly events: WorkerPoolEvents = {},
    private readonly workerFile = join(__dirname, 'inference-worker.js'),
  ) {}

  /** Starts every worker and resolves with what each model loaded on (from the first worker). */
  async start(): Promise<LoadedModel[]> {
    const reports = await Promise.all(Array.from({ length: this.size }, (_, i) => this.spawn(i)));
    return reports[0];
  }

  get readyWorkers(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  get workerCount(): number {
    return this.size;
  }

  run(key: string, feeds: Record<string, Tensor>): Promise<RunResult> {
    if (this.closed) return Promise.reject(new WorkerFailure('worker pool is closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ id: this.nextId++, key, feeds, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const task of this.pending.splice(0)) task.reject(new WorkerFailure('worker pool closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private spawn(index: number): Promise<LoadedModel[]> {
    const worker = new Worker(this.workerFile);
    const slot: Slot = { index, worker, ready: false };
    this.slots[index] = slot;
    return new Promise((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg, resolve, reject));
      worker.on('error', (error) => this.onExit(slot, `error: ${error.message}`, reject));
      worker.on('exit', (code) => this.onExit(slot, `exited with code ${code}`, reject));
      worker.postMessage(this.load);
    });
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
        const task = slot.task;
        slot.task = undefined;
        if (task && task.id === msg.id) {
          if (msg.type === 'result') task.resolve({ outputs: msg.outputs, computeMs: msg.computeMs });
          else task.reject(new WorkerFailure(msg.message));
        }
        this.dispatch();
        return;
      }
    }
  }

  private onExit(slot: Slot, reason: string, failed: (error: Error) => void): void {
    if (this.slots[slot.index] !== slot) return; // already replaced
    const wasReady = slot.ready;
    slot.ready = false;
    slot.task?.reject(new WorkerFailure(`inference worker ${reason}`));
    slot.task = undefined;
    if (this.closed) return;
    if (!wasReady) {
      failed(new WorkerFailure(`inference worker ${reason} while loading models`));
      return;
    }
    this.events.onWorkerLost?.(slot.index, reason);
    this.spawn(slot.index).catch((error: Error) => this.events.onWorkerLost?.(slot.index, error.message));
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.pending.length === 0) return;
      if (!slot || !slot.ready || slot.task) continue;
      const task = this.pending.shift()!;
      slot.task = task;
      slot.worker.postMessage({ type: 'run', id: task.id, key: task.key, feeds: task.feeds });
    }
  }
}
