/**
 * One asset's reading stream, put in timestamp order and cut into model rows and windows.
 *
 * Semantics (the service relies on every one of them):
 * - `newest` is the largest timestamp ever accepted; the horizon is `newest - lateToleranceMs`.
 * - push: a timestamp equal to one still held or to one of the last RECENT_RELEASED released is a
 *   `duplicate` (the first copy wins: MQTT QoS 1 redelivers the same message, and a sender retries a
 *   whole batch after an error). Any other timestamp below the horizon, or below the last released one
 *   (possible after `drain(true)`), is `late`: its place in the sequence is gone. Anything else is
 *   held, in order, whatever order it arrived in.
 * - drain: releases held readings with timestamp <= horizon, strictly in timestamp order, so with
 *   lateToleranceMs = 0 an in-order reading is released by the next drain; `drain(true)` releases
 *   everything held (end of a batch, shutdown).
 * - Carry-forward: a reading may carry a subset of the inputs (SCADA reports by exception, only
 *   changed tags); a missing input takes its last released value. Until every input has had a value
 *   a released reading yields no row: it is still counted `accepted`, and also `incomplete`.
 *   Names that are not model inputs are ignored; values are validated by the caller (checkValue).
 * - A window (oldest row first, input order within a row) comes with every row once windowLength
 *   rows exist; windowLength = 1 makes the window the row itself.
 * - Opening rows (takeOpening): what a release leaves in the window without a row to predict (a row before
 *   the window is full, a reading whose inputs were never all seen), for the caller to keep, so that a
 *   restart can rebuild the window the stored predictions alone do not (restore).
 * - Memory: a ring of windowLength rows, the last RECENT_RELEASED timestamps, and the held readings,
 *   which are only those inside the tolerance horizon when the caller drains after each push or batch.
 */
export interface ReadingIn {
  /** Epoch milliseconds. */
  timestamp: number;
  /** Model input name -> value, already in the model's unit. */
  values: Record<string, number>;
}

export type ReadingVerdict = { accepted: true } | { accepted: false; reason: 'duplicate' | 'late' };

export interface ReleasedReading {
  timestamp: number;
  /** One model row in input order (a copy: the caller may keep it). */
  row: Float32Array;
  /** windowLength rows, oldest first, once that many rows have been released. */
  window?: Float32Array;
}

/**
 * A released reading that gave no row to predict: a row before the window is full, or, with NaN for each input
 * never seen yet, the last values of a reading whose inputs were never all seen. `first`: nothing of this
 * window before it is needed to rebuild it (its first row, or a reading whose inputs were never all seen, whose
 * values carry every earlier one's): a restart takes nothing further back.
 */
export interface OpeningRow {
  timestamp: number;
  /** Input order; NaN for an input that never had a value. */
  row: Float32Array;
  first: boolean;
}

/** Adds an opening row to those not kept yet: a `first` one makes the ones before it needless. */
export function addOpening(rows: OpeningRow[], row: OpeningRow): void {
  if (row.first) rows.length = 0;
  rows.push(row);
}

export interface AssetWindowOptions {
  /** Model input names, in the model's column order. */
  inputs: string[];
  /** Rows per window: 1 for per-reading models. */
  windowLength: number;
  lateToleranceMs: number;
}

export interface AssetWindowCounts {
  accepted: number;
  duplicates: number;
  late: number;
  /** Accepted and released, but no row yet because some input never had a value. */
  incomplete: number;
}

// Compacting the held list once its consumed head is this long keeps removal amortised O(1).
const COMPACT_AT = 64;

/** Released timestamps remembered to tell a repeat from a late reading: as many as one HTTP batch holds. */
export const RECENT_RELEASED = 10_000;

export class AssetWindow {
  private readonly index = new Map<string, number>();
  private readonly windowLength: number;
  private readonly toleranceMs: number;
  private readonly width: number;

  private readonly held: ReadingIn[] = [];
  private head = 0;
  private newest = -Infinity;
  private lastReleased = -Infinity;
  /** The last RECENT_RELEASED released timestamps from `recentHead` on, ascending (releases only grow). */
  private recent: number[] = [];
  private recentHead = 0;

  private readonly last: Float64Array;
  private readonly known: Uint8Array;
  private knownCount = 0;

  private readonly ring: Float32Array;
  private ringNext = 0;
  private rows = 0;

  private readonly tally: AssetWindowCounts = { accepted: 0, duplicates: 0, late: 0, incomplete: 0 };
  /** The last timestamp a restored window took up from (restore): anything at or before it is a duplicate. */
  private restoredThrough = -Infinity;
  /** Released without a row to predict, not taken yet (takeOpening). */
  private opening: OpeningRow[] = [];

  constructor(opts: AssetWindowOptions) {
    if (opts.inputs.length === 0) throw new RangeError('AssetWindow needs at least one input');
    if (!Number.isInteger(opts.windowLength) || opts.windowLength < 1) {
      throw new RangeError(`AssetWindow windowLength must be an integer >= 1, got ${opts.windowLength}`);
    }
    if (!Number.isFinite(opts.lateToleranceMs) || opts.lateToleranceMs < 0) {
      throw new RangeError(`AssetWindow lateToleranceMs must be a finite number >= 0, got ${opts.lateToleranceMs}`);
    }
    opts.inputs.forEach((name, i) => {
      if (this.index.has(name)) throw new RangeError(`AssetWindow input "${name}" is listed twice`);
      this.index.set(name, i);
    });
    this.windowLength = opts.windowLength;
    this.toleranceMs = opts.lateToleranceMs;
    this.width = opts.inputs.length;
    this.last = new Float64Array(this.width);
    this.known = new Uint8Array(this.width);
    this.ring = new Float32Array(this.windowLength * this.width);
  }

  get counts(): Readonly<AssetWindowCounts> {
    return this.tally;
  }

  /** Readings held, not yet released (memory check). */
  get size(): number {
    return this.held.length - this.head;
  }

  /** The readings held, not yet released, in timestamp order. */
  heldReadings(): ReadingIn[] {
    return this.held.slice(this.head);
  }

  /** The timestamp of the last reading released (-Infinity before the first): every one at or before it is released. */
  get releasedThrough(): number {
    return this.lastReleased;
  }

  /**
   * Takes up where an earlier window of the same asset and model left off (after a restart): `rows` are its
   * last released rows, oldest first: rows it predicted (as a stored prediction keeps them) and opening rows
   * (takeOpening), whose NaN inputs had no value yet. They fill the ring (those with every input) and the last
   * values, and the last of them is where the window takes up: a reading at or before it is a duplicate
   * (released before the restart, whether or not it gave a row that was kept: a batch sent again, a message
   * delivered again). Only on a window nothing has been pushed to yet.
   */
  restore(rows: ReadonlyArray<{ timestamp: number; row: ArrayLike<number> }>): void {
    if (this.newest !== -Infinity || this.held.length > 0)
      throw new RangeError('AssetWindow.restore on a window in use');
    for (const { timestamp, row } of rows) {
      if (row.length !== this.width)
        throw new RangeError(`AssetWindow.restore: a row of ${row.length} values, not ${this.width}`);
      if (!(timestamp > this.lastReleased)) throw new RangeError('AssetWindow.restore: rows out of timestamp order');
      for (let i = 0; i < this.width; i++) {
        if (Number.isNaN(row[i])) continue;
        this.last[i] = row[i];
        if (!this.known[i]) {
          this.known[i] = 1;
          this.knownCount++;
        }
      }
      if (this.knownCount === this.width) this.keep(Float32Array.from(this.last));
      this.lastReleased = this.newest = this.restoredThrough = timestamp;
      this.remember(timestamp);
    }
  }

  /** The opening rows released since the last call (see OpeningRow), oldest first; only the last `first` one and those after it. */
  takeOpening(): OpeningRow[] {
    const rows = this.opening;
    this.opening = [];
    return rows;
  }

  push(reading: ReadingIn): ReadingVerdict {
    const ts = reading.timestamp;
    if (!Number.isFinite(ts)) throw new RangeError(`reading timestamp must be a finite number, got ${ts}`);
    if (ts <= this.lastReleased && this.releasedLately(ts)) return this.refuse('duplicate');
    // At or before where a restored window took up: released before the restart (a batch sent again, a message
    // delivered again), though not every such timestamp is remembered (rows that gave no prediction).
    if (ts <= this.restoredThrough) return this.refuse('duplicate');

    const end = this.held.length;
    if (end > this.head && ts <= this.held[end - 1].timestamp) {
      // Out of order (or a repeat) inside the held span: binary search for its place.
      const at = this.lowerBound(ts);
      if (at < end && this.held[at].timestamp === ts) return this.refuse('duplicate');
      if (ts < this.newest - this.toleranceMs || ts < this.lastReleased) return this.refuse('late');
      this.held.splice(at, 0, reading);
    } else {
      if (ts < this.newest - this.toleranceMs || ts < this.lastReleased) return this.refuse('late');
      this.held.push(reading);
    }
    if (ts > this.newest) this.newest = ts;
    this.tally.accepted++;
    return { accepted: true };
  }

  drain(flush = false): ReleasedReading[] {
    const horizon = flush ? Infinity : this.newest - this.toleranceMs;
    const out: ReleasedReading[] = [];
    while (this.head < this.held.length && this.held[this.head].timestamp <= horizon) {
      const reading = this.held[this.head];
      this.head++;
      const first = this.lastReleased === -Infinity;
      this.lastReleased = reading.timestamp;
      this.remember(reading.timestamp);
      const released = this.release(reading, first);
      if (released) out.push(released);
    }
    this.compact();
    return out;
  }

  /** `first`: nothing released (or restored) before it. */
  private release(reading: ReadingIn, first: boolean): ReleasedReading | undefined {
    for (const [name, value] of Object.entries(reading.values)) {
      const i = this.index.get(name);
      if (i === undefined) continue;
      this.last[i] = value;
      if (!this.known[i]) {
        this.known[i] = 1;
        this.knownCount++;
      }
    }
    if (this.knownCount < this.width) {
      this.tally.incomplete++;
      const row = Float32Array.from(this.last, (v, i) => (this.known[i] ? v : NaN));
      addOpening(this.opening, { timestamp: reading.timestamp, row, first: true });
      return undefined;
    }
    const row = Float32Array.from(this.last);
    this.keep(row);
    if (this.rows < this.windowLength) {
      addOpening(this.opening, { timestamp: reading.timestamp, row: Float32Array.from(row), first });
      return { timestamp: reading.timestamp, row };
    }
    return { timestamp: reading.timestamp, row, window: this.assemble() };
  }

  private keep(row: Float32Array): void {
    this.ring.set(row, this.ringNext * this.width);
    this.ringNext = (this.ringNext + 1) % this.windowLength;
    this.rows++;
  }

  /** The ring unrolled from its oldest row (the next slot to be overwritten). */
  private assemble(): Float32Array {
    const window = new Float32Array(this.ring.length);
    const split = this.ringNext * this.width;
    window.set(this.ring.subarray(split), 0);
    window.set(this.ring.subarray(0, split), this.ring.length - split);
    return window;
  }

  private refuse(reason: 'duplicate' | 'late'): ReadingVerdict {
    if (reason === 'duplicate') this.tally.duplicates++;
    else this.tally.late++;
    return { accepted: false, reason };
  }

  private remember(ts: number): void {
    this.recent.push(ts);
    if (this.recent.length - this.recentHead <= RECENT_RELEASED) return;
    this.recentHead++;
    if (this.recentHead >= RECENT_RELEASED) {
      this.recent = this.recent.slice(this.recentHead);
      this.recentHead = 0;
    }
  }

  private releasedLately(ts: number): boolean {
    let lo = this.recentHead;
    let hi = this.recent.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.recent[mid] < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.recent.length && this.recent[lo] === ts;
  }

  private lowerBound(ts: number): number {
    let lo = this.head;
    let hi = this.held.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.held[mid].timestamp < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private compact(): void {
    if (this.head === this.held.length) {
      this.held.length = 0;
      this.head = 0;
    } else if (this.head >= COMPACT_AT && this.head * 2 >= this.held.length) {
      this.held.splice(0, this.head);
      this.head = 0;
    }
  }
}
