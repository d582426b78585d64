/**
 * Counts per key in fixed windows of `windowMs`: one window for every key, begun by the first count after
 * the last one ended. At most `maxKeys` keys are tracked in a window; a key first seen past that is counted
 * under the `overflow` key the caller gives, so that callers who make up keys at will (addresses, topics)
 * cannot grow the map without bound.
 */
export class FixedWindowCounts {
  private counts = new Map<string, number>();
  private windowStart = Number.NEGATIVE_INFINITY;

  constructor(
    readonly windowMs: number,
    private readonly maxKeys: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one for `key` (or `overflow`): the key counted, its count in this window, and the ms left of it. */
  add(key: string, overflow: string): { key: string; count: number; msLeft: number } {
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.counts = new Map();
    }
    const counted = !this.counts.has(key) && this.counts.size >= this.maxKeys ? overflow : key;
    const count = (this.counts.get(counted) ?? 0) + 1;
    this.counts.set(counted, count);
    return { key: counted, count, msLeft: this.windowStart + this.windowMs - now };
  }
}
