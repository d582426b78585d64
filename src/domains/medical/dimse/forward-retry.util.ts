export interface RetryPolicy {
  /** Attempts after the first; 0: none. */
  retries: number;
  /** Wait before the first retry; each later one waits twice the one before. */
  firstDelayMs: number;
  /** Most SR bytes held for retry at once. */
  maxBytes: number;
}

/** An SR whose forward failed, held in memory (never in the database: it names the patient). */
export interface PendingForward<T> {
  sr: Buffer;
  /** What the owner needs to report on it (no patient data). */
  meta: T;
  /** Attempts made so far. */
  attempts: number;
  dueAt: number;
}

/** REFUSED: the destination answered with a failure another attempt would get again. */
export type DropReason = 'RETRIES_EXHAUSTED' | 'REFUSED' | 'QUEUE_FULL' | 'SHUTDOWN';

export interface RetryEvents<T> {
  /** One attempt; rejects when the SR was not stored. */
  send(sr: Buffer): Promise<void>;
  /** Whether a failure would come again whatever the wait. */
  permanent(error: unknown): boolean;
  delivered(entry: PendingForward<T>): void;
  /** An attempt failed and another is due at `entry.dueAt`. */
  failed(entry: PendingForward<T>, error: unknown): void;
  dropped(entry: PendingForward<T>, reason: DropReason, error?: unknown): void;
}

/**
 * Failed SR forwards, retried with doubling delays, one attempt at a time (a destination that is down is not
 * hit by every waiting SR at once), within a bound on the bytes held. What it holds is lost with the process.
 */
export class ForwardRetryQueue<T> {
  private readonly waiting: Array<PendingForward<T>> = [];
  private bytes = 0;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly policy: RetryPolicy,
    private readonly events: RetryEvents<T>,
  ) {}

  get size(): number {
    return this.waiting.length;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  /** Takes an SR whose first attempt failed; past the retries or the byte bound it is dropped at once. */
  add(sr: Buffer, meta: T, error: unknown): void {
    const entry: PendingForward<T> = { sr, meta, attempts: 1, dueAt: 0 };
    if (this.stopped) return this.events.dropped(entry, 'SHUTDOWN', error);
    if (this.events.permanent(error)) return this.events.dropped(entry, 'REFUSED', error);
    if (this.policy.retries < 1) return this.events.dropped(entry, 'RETRIES_EXHAUSTED', error);
    if (this.bytes + sr.length > this.policy.maxBytes) return this.events.dropped(entry, 'QUEUE_FULL', error);
    this.hold(entry, error);
  }

  /** Stops retrying: settles once the attempt in progress has, and drops (reports) what still waits. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    for (const entry of this.waiting.splice(0)) this.events.dropped(entry, 'SHUTDOWN');
    this.bytes = 0;
  }

  private hold(entry: PendingForward<T>, error: unknown): void {
    entry.dueAt = Date.now() + this.policy.firstDelayMs * 2 ** (entry.attempts - 1);
    this.waiting.push(entry);
    this.bytes += entry.sr.length;
    this.events.failed(entry, error);
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.running || this.waiting.length === 0) return;
    clearTimeout(this.timer);
    const next = Math.min(...this.waiting.map((e) => e.dueAt));
    this.timer = setTimeout(() => this.runDue(), Math.max(0, next - Date.now()));
  }

  private runDue(): void {
    this.timer = undefined;
    const now = Date.now();
    const entry = this.waiting.filter((e) => e.dueAt <= now).sort((a, b) => a.dueAt - b.dueAt)[0];
    if (!entry) return this.schedule();
    this.waiting.splice(this.waiting.indexOf(entry), 1);
    this.bytes -= entry.sr.length;
    this.running = this.attempt(entry)
      .catch(() => undefined)
      .finally(() => {
        this.running = undefined;
        this.schedule();
      });
  }

  private async attempt(entry: PendingForward<T>): Promise<void> {
    entry.attempts++;
    try {
      await this.events.send(entry.sr);
      this.events.delivered(entry);
    } catch (error) {
      if (this.stopped) this.events.dropped(entry, 'SHUTDOWN', error);
      else if (this.events.permanent(error)) this.events.dropped(entry, 'REFUSED', error);
      else if (entry.attempts > this.policy.retries) this.events.dropped(entry, 'RETRIES_EXHAUSTED', error);
      else this.hold(entry, error);
    }
  }
}
