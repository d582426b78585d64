import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AssetWindow, RECENT_RELEASED, ReleasedReading } from '../../src/domains/manufacturing/asset-window.util';

const stamps = (released: ReleasedReading[]) => released.map((r) => r.timestamp);
const f32 = (values: number[]) => Array.from(Float32Array.from(values));

describe('manufacturing: per-asset reading window', () => {
  it('puts readings that arrive out of order within the tolerance back in order', () => {
    const w = new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: 100 });
    for (const ts of [1000, 1050, 1020, 1010])
      assert.deepEqual(w.push({ timestamp: ts, values: { a: ts } }), { accepted: true });
    assert.deepEqual(w.drain(), [], 'nothing is older than newest - tolerance yet');
    assert.equal(w.size, 4);

    w.push({ timestamp: 1130, values: { a: 1130 } }); // horizon 1030
    const released = w.drain();
    assert.deepEqual(stamps(released), [1000, 1010, 1020]);
    assert.deepEqual(
      released.map((r) => Array.from(r.row)),
      [[1000], [1010], [1020]],
    );
    assert.deepEqual(stamps(w.drain(true)), [1050, 1130]);
    assert.equal(w.size, 0);
  });

  it('drops duplicates, held or just released, and keeps the first copy', () => {
    const w = new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: 100 });
    w.push({ timestamp: 1000, values: { a: 1 } });
    assert.deepEqual(w.push({ timestamp: 1000, values: { a: 2 } }), { accepted: false, reason: 'duplicate' });
    w.push({ timestamp: 1200, values: { a: 3 } });
    assert.deepEqual(
      w.drain().map((r) => r.row[0]),
      [1],
    );
    assert.deepEqual(w.push({ timestamp: 1000, values: { a: 9 } }), { accepted: false, reason: 'duplicate' });
    assert.deepEqual(w.push({ timestamp: 1200, values: { a: 9 } }), { accepted: false, reason: 'duplicate' });
    assert.deepEqual(w.counts, { accepted: 2, duplicates: 3, late: 0, incomplete: 0 });
  });

  it('refuses readings older than newest - tolerance as late, accepts one exactly at the horizon', () => {
    const w = new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: 100 });
    w.push({ timestamp: 1000, values: { a: 1 } });
    w.push({ timestamp: 1200, values: { a: 2 } });
    assert.deepEqual(w.push({ timestamp: 1099, values: { a: 3 } }), { accepted: false, reason: 'late' });
    assert.deepEqual(w.push({ timestamp: 1100, values: { a: 4 } }), { accepted: true });
    assert.deepEqual(stamps(w.drain()), [1000, 1100]);
    assert.deepEqual(w.counts, { accepted: 3, duplicates: 0, late: 1, incomplete: 0 });
  });

  it('releases every in-order reading at once when the tolerance is 0', () => {
    const w = new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: 0 });
    for (let ts = 1; ts <= 5; ts++) {
      w.push({ timestamp: ts, values: { a: ts * 10 } });
      const released = w.drain();
      assert.equal(released.length, 1);
      assert.equal(released[0].timestamp, ts);
      assert.deepEqual(Array.from(released[0].window ?? []), [ts * 10], 'windowLength 1: the window is the row');
    }
    assert.deepEqual(w.push({ timestamp: 3.5, values: { a: 0 } }), { accepted: false, reason: 'late' });
  });

  it('knows a repeat of a released reading from a late one, for the last RECENT_RELEASED releases', () => {
    const w = new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: 0 });
    const n = RECENT_RELEASED + 500;
    for (let ts = 1; ts <= n; ts++) {
      w.push({ timestamp: ts * 10, values: { a: ts } });
      w.drain();
    }
    // A sender retrying a batch after an error sends readings the gateway already has: repeats, not late.
    assert.deepEqual(w.push({ timestamp: n * 10 - 10, values: { a: 0 } }), { accepted: false, reason: 'duplicate' });
    assert.deepEqual(w.push({ timestamp: 5010, values: { a: 0 } }), { accepted: false, reason: 'duplicate' });
    assert.deepEqual(w.push({ timestamp: 5015, values: { a: 0 } }), { accepted: false, reason: 'late' });
    // Older than the last RECENT_RELEASED: no longer known, so late.
    assert.deepEqual(w.push({ timestamp: 4000, values: { a: 0 } }), { accepted: false, reason: 'late' });
    assert.deepEqual(w.counts, { accepted: n, duplicates: 2, late: 2, incomplete: 0 });
  });

  it('carries the last value of a missing input forward, and yields no row until every input is known', () => {
    const w = new AssetWindow({ inputs: ['a', 'b'], windowLength: 1, lateToleranceMs: 0 });
    w.push({ timestamp: 1, values: { a: 1 } });
    w.push({ timestamp: 2, values: { b: 2, unrelated: 99 } });
    w.push({ timestamp: 3, values: { a: 3 } });
    const released = w.drain();
    assert.deepEqual(stamps(released), [2, 3], 'timestamp 1 had no value for b');
    assert.deepEqual(
      released.map((r) => Array.from(r.row)),
      [
        [1, 2],
        [3, 2],
      ],
    );
    assert.deepEqual(w.counts, { accepted: 3, duplicates: 0, late: 0, incomplete: 1 });
  });

  it('carries forward in timestamp order, not arrival order', () => {
    const w = new AssetWindow({ inputs: ['a', 'b'], windowLength: 1, lateToleranceMs: 50 });
    w.push({ timestamp: 10, values: { a: 1, b: 1 } });
    w.push({ timestamp: 30, values: { a: 3 } });
    w.push({ timestamp: 20, values: { b: 2 } }); // late but tolerated: must apply before 30
    const released = w.drain(true);
    assert.deepEqual(
      released.map((r) => Array.from(r.row)),
      [
        [1, 1],
        [1, 2],
        [3, 2],
      ],
    );
  });

  it('assembles windows of windowLength rows, oldest first, in input order', () => {
    const w = new AssetWindow({ inputs: ['x', 'y'], windowLength: 3, lateToleranceMs: 0 });
    const rows = [
      [0.1, 1.5],
      [0.2, 2.5],
      [0.3, 3.5],
      [0.4, 4.5],
      [0.5, 5.5],
    ];
    // Values arrive keyed by name, in an order unlike the inputs'.
    rows.forEach(([x, y], i) => w.push({ timestamp: 100 + i, values: { y, x } }));
    const released = w.drain();
    assert.equal(released.length, 5);
    assert.equal(released[0].window, undefined);
    assert.equal(released[1].window, undefined);
    assert.deepEqual(Array.from(released[2].window ?? []), f32([0.1, 1.5, 0.2, 2.5, 0.3, 3.5]));
    assert.deepEqual(Array.from(released[3].window ?? []), f32([0.2, 2.5, 0.3, 3.5, 0.4, 4.5]));
    assert.deepEqual(Array.from(released[4].window ?? []), f32([0.3, 3.5, 0.4, 4.5, 0.5, 5.5]));
    assert.ok(released[4].window instanceof Float32Array);
    assert.equal(released[4].window.length, 3 * 2);
    assert.deepEqual(Array.from(released[4].row), f32([0.5, 5.5]));
    // Each window is a copy: later rows do not rewrite one already handed out.
    assert.deepEqual(Array.from(released[2].window ?? []), f32([0.1, 1.5, 0.2, 2.5, 0.3, 3.5]));
  });

  it('drain(true) releases everything held; nothing older can then be put in order', () => {
    const w = new AssetWindow({ inputs: ['a'], windowLength: 2, lateToleranceMs: 10_000 });
    w.push({ timestamp: 3000, values: { a: 3 } });
    w.push({ timestamp: 1000, values: { a: 1 } });
    w.push({ timestamp: 2000, values: { a: 2 } });
    assert.deepEqual(w.drain(), []);
    const released = w.drain(true);
    assert.deepEqual(stamps(released), [1000, 2000, 3000]);
    assert.deepEqual(Array.from(released[2].window ?? []), [2, 3]);
    assert.deepEqual(w.push({ timestamp: 2500, values: { a: 9 } }), { accepted: false, reason: 'late' });
    assert.deepEqual(w.push({ timestamp: 3000, values: { a: 9 } }), { accepted: false, reason: 'duplicate' });
    assert.deepEqual(w.push({ timestamp: 3001, values: { a: 4 } }), { accepted: true });
  });

  it('stays bounded over 100k jittered readings and loses none it accepted', () => {
    const w = new AssetWindow({ inputs: ['a', 'b'], windowLength: 30, lateToleranceMs: 50 });
    let released = 0;
    let maxHeld = 0;
    let last: ReleasedReading | undefined;
    for (let i = 0; i < 100_000; i++) {
      // Pairs swapped (odd before even) within the tolerance, a duplicate every 1000th, a straggler every 997th.
      const ts = 10 * (i % 2 === 0 ? i + 1 : i - 1);
      assert.equal(w.push({ timestamp: ts, values: { a: ts, b: -ts } }).accepted, true);
      if (i % 1000 === 999) assert.equal(w.push({ timestamp: ts, values: { a: 0, b: 0 } }).accepted, false);
      if (i % 997 === 996) assert.equal(w.push({ timestamp: ts - 1005, values: { a: 0, b: 0 } }).accepted, false);
      const out = w.drain();
      released += out.length;
      if (out.length) last = out[out.length - 1];
      maxHeld = Math.max(maxHeld, w.size);
    }
    released += w.drain(true).length;
    assert.ok(maxHeld <= 7, `held at most ${maxHeld} readings (tolerance 50 ms at 10 ms steps)`);
    assert.equal(released, 100_000);
    assert.deepEqual(w.counts, { accepted: 100_000, duplicates: 100, late: 100, incomplete: 0 });
    assert.ok(last?.window);
    const newest = last.timestamp;
    assert.deepEqual(Array.from(last.window.subarray(-2)), [newest, -newest]);
    assert.deepEqual(Array.from(last.window.subarray(0, 2)), [newest - 290, -(newest - 290)]);
  });

  it('takes up where a window of the same asset left off: the ring, the last values, the released timestamps', () => {
    const before = new AssetWindow({ inputs: ['a', 'b'], windowLength: 3, lateToleranceMs: 0 });
    const kept: Array<{ timestamp: number; row: number[] }> = [];
    for (let ts = 1; ts <= 5; ts++) {
      before.push({ timestamp: ts * 1000, values: { a: ts, b: -ts } });
      for (const r of before.drain()) kept.push({ timestamp: r.timestamp, row: Array.from(r.row) });
    }
    const after = new AssetWindow({ inputs: ['a', 'b'], windowLength: 3, lateToleranceMs: 0 });
    after.restore(kept.slice(-4)); // more rows than the window holds: the last three fill it
    assert.equal(after.releasedThrough, 5000);
    // A repeat of a released reading is a duplicate, an older one late; the next one comes with a full window,
    // and a reading with one tag takes the others' last values.
    assert.deepEqual(after.push({ timestamp: 5000, values: { a: 5 } }), { accepted: false, reason: 'duplicate' });
    // Older, remembered or not (a row that gave no prediction is not kept): released before the restart.
    assert.deepEqual(after.push({ timestamp: 1000, values: { a: 5 } }), { accepted: false, reason: 'duplicate' });
    assert.deepEqual(after.push({ timestamp: 2500, values: { a: 5 } }), { accepted: false, reason: 'duplicate' });
    after.push({ timestamp: 6000, values: { a: 6 } });
    const [next] = after.drain();
    assert.deepEqual(Array.from(next.row), [6, -5]);
    assert.deepEqual(Array.from(next.window!), [4, -4, 5, -5, 6, -5]);
    // Fewer rows than the window: it fills up as before.
    const short = new AssetWindow({ inputs: ['a', 'b'], windowLength: 3, lateToleranceMs: 0 });
    short.restore(kept.slice(-1));
    short.push({ timestamp: 6000, values: { a: 6, b: -6 } });
    assert.equal(short.drain()[0].window, undefined);
    short.push({ timestamp: 7000, values: { a: 7, b: -7 } });
    assert.deepEqual(Array.from(short.drain()[0].window!), [5, -5, 6, -6, 7, -7]);
    // Only on a new window, rows in order and of the window's width.
    assert.throws(() => after.restore(kept), /in use/);
    const fresh = () => new AssetWindow({ inputs: ['a', 'b'], windowLength: 3, lateToleranceMs: 0 });
    assert.throws(() => fresh().restore([kept[1], kept[0]]), /order/);
    assert.throws(() => fresh().restore([{ timestamp: 1, row: [1] }]), /values/);
  });

  it('hands out the rows that gave no prediction, and a restore from them is the window it was', () => {
    const before = new AssetWindow({ inputs: ['a', 'b'], windowLength: 3, lateToleranceMs: 0 });
    const taken = () =>
      before.takeOpening().map((o) => ({ timestamp: o.timestamp, row: Array.from(o.row), first: o.first }));
    // A reading whose inputs were never all seen: its values so far, NaN for the others; each makes the ones before needless.
    before.push({ timestamp: 1000, values: { a: 1 } });
    before.push({ timestamp: 2000, values: { a: 2 } });
    assert.deepEqual(before.drain(), []);
    assert.deepEqual(taken(), [{ timestamp: 2000, row: [2, NaN], first: true }]);
    // Rows before the window is full; the first complete row is not `first` after an incomplete one.
    before.push({ timestamp: 3000, values: { b: -3 } });
    before.push({ timestamp: 4000, values: { a: 4, b: -4 } });
    assert.equal(before.drain().length, 2);
    const opening = taken();
    assert.deepEqual(opening, [
      { timestamp: 3000, row: [2, -3], first: false },
      { timestamp: 4000, row: [4, -4], first: false },
    ]);
    // Once the window is full, nothing more.
    before.push({ timestamp: 5000, values: { a: 5 } });
    const [full] = before.drain();
    assert.deepEqual(taken(), []);
    // Restored from them (and the predicted row), the window is the one it was.
    const after = new AssetWindow({ inputs: ['a', 'b'], windowLength: 3, lateToleranceMs: 0 });
    after.restore([{ timestamp: 2000, row: [2, NaN] }, ...opening, { timestamp: 5000, row: Array.from(full.row) }]);
    for (const w of [before, after]) w.push({ timestamp: 6000, values: { b: -6 } });
    assert.deepEqual(Array.from(after.drain()[0].window!), Array.from(before.drain()[0].window!));
    // A restore from an incomplete reading alone: the values it had, nothing in the ring.
    const young = new AssetWindow({ inputs: ['a', 'b'], windowLength: 1, lateToleranceMs: 0 });
    young.restore([{ timestamp: 2000, row: [2, NaN] }]);
    young.push({ timestamp: 3000, values: { b: -3 } });
    assert.deepEqual(Array.from(young.drain()[0].row), [2, -3]);
    // A fresh window's first complete row is `first`.
    const fresh = new AssetWindow({ inputs: ['a'], windowLength: 3, lateToleranceMs: 0 });
    fresh.push({ timestamp: 1, values: { a: 1 } });
    fresh.drain();
    assert.deepEqual(
      fresh.takeOpening().map((o) => o.first),
      [true],
    );
  });

  it('lists the readings it holds, in order, and how far it has released', () => {
    const w = new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: 100 });
    for (const ts of [1000, 1050, 1020]) w.push({ timestamp: ts, values: { a: ts } });
    assert.deepEqual(
      w.heldReadings().map((r) => r.timestamp),
      [1000, 1020, 1050],
    );
    assert.equal(w.releasedThrough, -Infinity);
    w.push({ timestamp: 1130, values: { a: 1130 } });
    w.drain();
    assert.equal(w.releasedThrough, 1020);
    assert.deepEqual(
      w.heldReadings().map((r) => r.timestamp),
      [1050, 1130],
    );
  });

  it('refuses options it cannot work with', () => {
    assert.throws(() => new AssetWindow({ inputs: [], windowLength: 1, lateToleranceMs: 0 }), /at least one input/);
    assert.throws(() => new AssetWindow({ inputs: ['a'], windowLength: 0, lateToleranceMs: 0 }), /windowLength/);
    assert.throws(() => new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: -1 }), /lateToleranceMs/);
    assert.throws(() => new AssetWindow({ inputs: ['a', 'a'], windowLength: 1, lateToleranceMs: 0 }), /listed twice/);
    const w = new AssetWindow({ inputs: ['a'], windowLength: 1, lateToleranceMs: 0 });
    assert.throws(() => w.push({ timestamp: Number.NaN, values: { a: 1 } }), /timestamp/);
  });
});
