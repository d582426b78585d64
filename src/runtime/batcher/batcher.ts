import { AppError, shuttingDown } from '../../common/errors/app-error';
import { concatBatch, splitBatch, Tensor, zeros } from '../tensor';
import type { TensorPool } from '../tensor-pool';

export interface BatcherOptions {
  /** Largest number of rows stacked into one run (a single larger request runs alone). */
  maxBatchSize: number;
  /** How long the first waiting request may wait for others to join it. */
  maxQueueDelayMs: number;
  /** Requests waiting beyond this are refused at once (503 with Retry-After). */
  maxQueueSize: number;
  /** Batches of this model running at the same time (usually the worker count). */
  maxConcurrentBatches: number;
  /** False for a graph without a dynamic batch axis: each request runs alone. */
  batchable: boolean;
}

/**
 * `owned`: the batcher stacked these tensors itself, or their caller gave them up, so their buffers may
 * be moved rather than copied.
 */
export type RunBatch = (
  inputs: Record<string, Tensor>,
  owned: boolean,
) => Promise<{ outputs: Record<string, Tensor>; computeMs: number }>;

export interface BatchResult {
  outputs: Record<string, Tensor>;
  queueMs: number;
  computeMs: number;
  batchSize: number;
}

export type BatchOutcome = 'ok' | 'queue_full' | 'deadline_exceeded' | 'not_ready' | 'error' | 'shutting_down';

export interface BatcherObserver {
  batch?(rows: number, computeMs: number): void;
  queued?(queueMs: number): void;
  outcome?(outcome: BatchOutcome): void;
  depth?(waiting: number): void;
}

/** Where stacked batches get their buffers and where a given input's buffer goes once copied into one. */
export type BatchBuffers = Pick<TensorPool, 'allocate' | 'recycle'>;

const UNPOOLED: BatchBuffers = { allocate: zeros, recycle: () => undefined };

interface Pending {
  inputs: Record<string, Tensor>;
  /** The caller gave the inputs' buffers up: nobody reads them after the run. */
  given: boolean;
  rows: number;
  signature: string;
  enqueuedAt: number;
  deadline: number;
  /** Armed until the request is answered: it answers DEADLINE_EXCEEDED whether the request waits or runs. */
  deadlineTimer: NodeJS.Timeout;
  /** The first of its run's answer and its deadline has answered it; what comes after is dropped. */
  answered: boolean;
  resolve: (result: BatchResult) => void;
  reject: (error: Error) => void;
}

/**
 * A model whose requests have not overlapped (one arriving while another was queued or running) for
 * this long sees lone traffic: waiting for company would only add the delay to each request.
 */
export const LONE_TRAFFIC_MS = 1000;

/**
 * Dynamic batching for one model version. Requests that arrive together and share trailing
 * dimensions are stacked along axis 0, run once, and split back. A batch leaves, when a runner is
 * free, as soon as it is full or its oldest request has waited maxQueueDelayMs (with 0, at the end
 * of the event-loop turn that read it, with the other requests of that turn: no timer, and no batch
 * of one for each request of a burst); while every runner is busy, requests gather into the next
 * batch. The delay applies only while requests overlap: after LONE_TRAFFIC_MS without one arriving
 * while another was queued or running (one client at a time, a PACS sending now and then), a batch
 * leaves at the end of its turn, as with 0. Each request has a deadline: one still waiting
 * when it passes is answered DEADLINE_EXCEEDED and never run; one whose run has not answered by then (a
 * worker stalled) is answered DEADLINE_EXCEEDED then, and its run's answer dropped. The timer is the one
 * armed at submit, cleared at the answer rather than at dispatch: nothing added per request. A stacked run
 * that fails is run again one request at a time (runAlone), so that each request gets its own outcome;
 * not when no worker can run it (MODEL_NOT_READY), which each request would only meet again.
 */
export class Batcher {
  private readonly queue: Pending[] = [];
  private inFlight = 0;
  private delayTimer?: NodeJS.Timeout;
  /** With maxQueueDelayMs 0: armed for the end of the event-loop turn, when the batch leaves. */
  private turnEnd?: NodeJS.Immediate;
  private turnEnded = false;
  /** When a request last arrived while another was queued or running. */
  private lastOverlapAt = -Infinity;
  private closing = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly options: BatcherOptions,
    private readonly runBatch: RunBatch,
    private readonly observer: BatcherObserver = {},
    private readonly now: () => number = () => performance.now(),
    private readonly buffers: BatchBuffers = UNPOOLED,
  ) {}

  get waiting(): number {
    return this.queue.length;
  }

  /** With `given`, the inputs' buffers are the batcher's: the caller does not read or write them again. */
  submit(inputs: Record<string, Tensor>, timeoutMs: number, given = false): Promise<BatchResult> {
    if (this.closing) {
      this.observer.outcome?.('shutting_down');
      return Promise.reject(shuttingDown());
    }
    if (this.queue.length >= this.options.maxQueueSize) {
      this.observer.outcome?.('queue_full');
      return Promise.reject(
        new AppError('QUEUE_FULL', `the model's queue is full (${this.options.maxQueueSize} waiting)`, {
          retryAfterSeconds: 1,
        }),
      );
    }
    return new Promise<BatchResult>((resolve, reject) => {
      const enqueuedAt = this.now();
      if (this.queue.length > 0 || this.inFlight > 0) this.lastOverlapAt = enqueuedAt;
      const item: Pending = {
        inputs,
        given,
        rows: this.options.batchable ? rowsOf(inputs) : 1,
        signature: signatureOf(inputs),
        enqueuedAt,
        deadline: enqueuedAt + timeoutMs,
        deadlineTimer: setTimeout(() => this.expire(item), timeoutMs),
        answered: false,
        resolve,
        reject,
      };
      this.queue.push(item);
      this.observer.depth?.(this.queue.length);
      this.schedule();
    });
  }

  /** Stops accepting, lets everything queued and running finish. */
  drain(): Promise<void> {
    this.closing = true;
    this.schedule();
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private expire(item: Pending): void {
    if (!this.settle(item)) return;
    this.observer.outcome?.('deadline_exceeded');
    const index = this.queue.indexOf(item);
    if (index < 0) {
      // Its run has not answered: a worker stalled (the pool replaces it), or a run longer than the deadline.
      item.reject(new AppError('DEADLINE_EXCEEDED', 'the model did not answer the request by its deadline'));
      return;
    }
    this.queue.splice(index, 1);
    this.observer.depth?.(this.queue.length);
    item.reject(new AppError('DEADLINE_EXCEEDED', 'the request waited past its deadline and was not run'));
    this.checkIdle();
  }

  /** Marks the request answered (false if it was already) and disarms its deadline. */
  private settle(item: Pending): boolean {
    if (item.answered) return false;
    item.answered = true;
    clearTimeout(item.deadlineTimer);
    return true;
  }

  private fail(item: Pending, error: Error): void {
    if (!this.settle(item)) return;
    this.observer.outcome?.(outcomeOf(error));
    item.reject(error);
  }

  private schedule(): void {
    while (this.queue.length > 0 && this.inFlight < this.options.maxConcurrentBatches) {
      const head = this.queue[0];
      const now = this.now();
      const waited = now - head.enqueuedAt;
      const full = this.rowsLike(head) >= this.options.maxBatchSize;
      const delay = now - this.lastOverlapAt > LONE_TRAFFIC_MS ? 0 : this.options.maxQueueDelayMs;
      const due = delay > 0 ? waited >= delay : this.turnEnded;
      if (!this.options.batchable || full || due || this.closing) {
        this.dispatch(head.signature);
        continue;
      }
      if (delay === 0) {
        // No waiting for company: the batch leaves once this turn's I/O has been read, with every
        // request that arrived in the same turn.
        this.turnEnd ??= setImmediate(() => {
          this.turnEnd = undefined;
          this.turnEnded = true;
          try {
            this.schedule();
          } finally {
            this.turnEnded = false;
          }
        });
        return;
      }
      if (!this.delayTimer) {
        this.delayTimer = setTimeout(
          () => {
            this.delayTimer = undefined;
            this.schedule();
          },
          Math.max(0, delay - waited),
        );
      }
      return;
    }
  }

  private rowsLike(head: Pending): number {
    let rows = 0;
    for (const item of this.queue) if (item.signature === head.signature) rows += item.rows;
    return rows;
  }

  private dispatch(signature: string): void {
    // The pending delay belonged to the head that leaves now; schedule() arms a new one if needed.
    clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    const taken: Pending[] = [];
    let rows = 0;
    for (let i = 0; i < this.queue.length;) {
      const item = this.queue[i];
      const fits = taken.length === 0 || (this.options.batchable && rows + item.rows <= this.options.maxBatchSize);
      if (item.signature === signature && fits) {
        taken.push(item);
        rows += item.rows;
        this.queue.splice(i, 1);
        if (rows >= this.options.maxBatchSize || !this.options.batchable) break;
      } else {
        i++;
      }
    }
    this.observer.depth?.(this.queue.length);
    const now = this.now();
    const live = taken.filter((item) => {
      if (item.deadline > now) return true;
      this.settle(item);
      this.observer.outcome?.('deadline_exceeded');
      item.reject(new AppError('DEADLINE_EXCEEDED', 'the request waited past its deadline and was not run'));
      return false;
    });
    if (live.length === 0) return;
    for (const item of live) this.observer.queued?.(now - item.enqueuedAt);
    this.inFlight++;
    void this.execute(live, now);
  }

  private async execute(items: Pending[], startedAt: number): Promise<void> {
    try {
      const names = Object.keys(items[0].inputs);
      const stacked: Record<string, Tensor> = {};
      const alone = items.length === 1;
      for (const name of names) {
        stacked[name] = concatBatch(
          items.map((item) => item.inputs[name]),
          (dtype, dims) => this.buffers.allocate(dtype, dims),
        );
      }
      const { outputs, computeMs } = await this.runBatch(stacked, alone ? items[0].given : true);
      const rows = items.map((item) => item.rows);
      const pieces: Record<string, Tensor[]> = {};
      for (const [name, tensor] of Object.entries(outputs)) {
        pieces[name] = items.length === 1 ? [tensor] : splitBatch(tensor, rows);
      }
      // Copied into the stack, and split back: nothing reads them again. Not before the split, which may
      // throw, and then runAlone runs (and moves) these very buffers: pooled, a new request would overwrite them.
      if (!alone) for (const item of items) if (item.given) this.recycleInputs(item.inputs);
      const total = rows.reduce((a, b) => a + b, 0);
      this.observer.batch?.(total, computeMs);
      items.forEach((item, i) => {
        if (!this.settle(item)) return; // answered at its deadline already
        const own: Record<string, Tensor> = {};
        for (const name of Object.keys(pieces)) own[name] = pieces[name][i];
        this.observer.outcome?.('ok');
        item.resolve({ outputs: own, queueMs: startedAt - item.enqueuedAt, computeMs, batchSize: total });
      });
    } catch (error) {
      if (items.length > 1 && !notReady(error)) {
        await this.runAlone(items, startedAt);
      } else {
        // Stacked (copied), not moved: not run again, so nothing reads them any more.
        if (items.length > 1) for (const item of items) if (item.given) this.recycleInputs(item.inputs);
        for (const item of items) this.fail(item, error as Error);
      }
    } finally {
      this.inFlight--;
      this.schedule();
      this.checkIdle();
    }
  }

  /**
   * A stacked run failed: each of its requests is run once more on its own, one after the other, so
   * that one request's input (or one that takes its worker down) fails only itself, not the callers it
   * happened to be stacked with. A given request's buffers move to its worker here, and come back to the
   * pool with its answer (never before: see execute).
   */
  private async runAlone(items: Pending[], startedAt: number): Promise<void> {
    for (const item of items) {
      if (item.answered) {
        // Its deadline passed while the others ran: not run again, its (stacked, not moved) inputs are free.
        if (item.given) this.recycleInputs(item.inputs);
        continue;
      }
      try {
        const { outputs, computeMs } = await this.runBatch(item.inputs, item.given);
        this.observer.batch?.(item.rows, computeMs);
        if (!this.settle(item)) continue;
        this.observer.outcome?.('ok');
        item.resolve({ outputs, queueMs: startedAt - item.enqueuedAt, computeMs, batchSize: item.rows });
      } catch (error) {
        this.fail(item, error as Error);
      }
    }
  }

  private recycleInputs(inputs: Record<string, Tensor>): void {
    for (const tensor of Object.values(inputs)) this.buffers.recycle(tensor.data.buffer as ArrayBuffer);
  }

  private checkIdle(): void {
    if (this.queue.length === 0 && this.inFlight === 0 && this.idleWaiters.length > 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }
}

/** No worker can run the model now: running the requests of a failed batch again, one by one, would not help. */
function notReady(error: unknown): boolean {
  return error instanceof AppError && error.code === 'MODEL_NOT_READY';
}

function outcomeOf(error: unknown): BatchOutcome {
  return notReady(error) ? 'not_ready' : 'error';
}

function rowsOf(inputs: Record<string, Tensor>): number {
  const first = Object.values(inputs)[0];
  return first.dims.length > 0 ? first.dims[0] : 1;
}

/** Requests can share a batch only when everything but the batch axis agrees. */
function signatureOf(inputs: Record<string, Tensor>): string {
  return Object.keys(inputs)
    .sort()
    .map((name) => `${name}:${inputs[name].dtype}:${inputs[name].dims.slice(1).join('x')}`)
    .join('|');
}
