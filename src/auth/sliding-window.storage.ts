import type { ThrottlerStorage } from '@nestjs/throttler';

type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/** How often windows without live hits are dropped, as @nestjs/throttler's own storage does. */
const SWEEP_MS = 60_000;

/** One key's hits: their expiry times, oldest first, in a ring that grows as needed. */
interface Window {
  expiries: Float64Array;
  head: number;
  count: number;
  /** End of the fixed window reported as timeToExpire (as the library's storage reports it). */
  expiresAt: number;
  blocked: boolean;
  blockExpiresAt: number;
}

/**
 * @nestjs/throttler's storage contract with the library's own semantics (ThrottlerStorageService: a
 * sliding log of hits, each expiring `ttl` after it, and a block of `blockDuration` once a key goes
 * past its limit), at a constant cost per request. The library's storage copies and filters every
 * live hit of the key at each request: at 5,000 requests per second from one subject that was
 * 36 us and a 40 KB array per request, growing with the rate it is meant to limit. Here the hits
 * are a ring of expiry times, oldest first, pruned from the front.
 *
 * Expiry times of one key only grow as long as its ttl does not change, which holds here: one
 * throttler, no per-route overrides. A hit with a shorter ttl than the hits before it is still
 * counted; it leaves the log when the hits before it have expired.
 */
export class SlidingWindowThrottlerStorage implements ThrottlerStorage {
  private readonly windows = new Map<string, Window>();
  private sweep: NodeJS.Timeout | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  increment(
    key: string,
    ttl: number,
    limit: number,
    blockDuration: number,
    throttlerName: string,
  ): Promise<ThrottlerStorageRecord> {
    const now = this.now();
    const id = `${throttlerName}\u0000${key}`;
    let w = this.windows.get(id);
    if (!w) {
      w = {
        expiries: new Float64Array(16),
        head: 0,
        count: 0,
        expiresAt: now + ttl,
        blocked: false,
        blockExpiresAt: 0,
      };
      this.windows.set(id, w);
      this.sweep ??= setInterval(() => this.evictIdle(), SWEEP_MS).unref();
    }
    prune(w, now);
    let timeToExpire = Math.ceil((w.expiresAt - now) / 1000);
    if (timeToExpire <= 0) {
      w.expiresAt = now + ttl;
      timeToExpire = Math.ceil(ttl / 1000);
    }
    if (blockDuration <= 0) {
      // The library's path without blocking: a hit past the limit is refused and not counted.
      const blocked = w.count >= limit;
      if (!blocked) push(w, now + ttl);
      return Promise.resolve({
        totalHits: w.count + (blocked ? 1 : 0),
        timeToExpire,
        isBlocked: blocked,
        timeToBlockExpire: !blocked ? 0 : w.count > 0 ? Math.ceil((w.expiries[w.head] - now) / 1000) : timeToExpire,
      });
    }
    if (!w.blocked) push(w, now + ttl);
    if (w.count > limit && !w.blocked) {
      w.blocked = true;
      w.blockExpiresAt = now + blockDuration;
    }
    const timeToBlockExpire = Math.ceil((w.blockExpiresAt - now) / 1000);
    if (timeToBlockExpire <= 0 && w.blocked) {
      w.blocked = false;
      w.head = 0;
      w.count = 0;
      push(w, now + ttl);
    }
    return Promise.resolve({ totalHits: w.count, timeToExpire, isBlocked: w.blocked, timeToBlockExpire });
  }

  /** Keys seen so far that still hold a window (for tests). */
  get size(): number {
    return this.windows.size;
  }

  /** Drops windows with no live hit and no block; stops sweeping once none is left. */
  evictIdle(): void {
    const now = this.now();
    for (const [id, w] of this.windows) {
      prune(w, now);
      if (w.count === 0 && !(w.blocked && w.blockExpiresAt > now) && w.expiresAt <= now) this.windows.delete(id);
    }
    if (this.windows.size === 0 && this.sweep) {
      clearInterval(this.sweep);
      this.sweep = undefined;
    }
  }
}

function prune(w: Window, now: number): void {
  const capacity = w.expiries.length;
  while (w.count > 0 && w.expiries[w.head] <= now) {
    w.head = w.head + 1 === capacity ? 0 : w.head + 1;
    w.count--;
  }
}

function push(w: Window, expiry: number): void {
  let capacity = w.expiries.length;
  if (w.count === capacity) {
    const grown = new Float64Array(capacity * 2);
    for (let i = 0; i < w.count; i++) grown[i] = w.expiries[(w.head + i) % capacity];
    w.expiries = grown;
    w.head = 0;
    capacity *= 2;
  }
  w.expiries[(w.head + w.count) % capacity] = expiry;
  w.count++;
}
