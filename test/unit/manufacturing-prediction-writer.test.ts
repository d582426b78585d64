import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { PredictionRow, PredictionWriter } from '../../src/domains/manufacturing/records/prediction-writer';

const row = (assetId: string, i: number): PredictionRow => ({
  assetId,
  at: new Date(Date.UTC(2026, 10, 24, 0, 0, i)),
  modelVersion: '1',
  value: i / 100,
  modes: null,
});

/** An INSERT that the test finishes by hand, recording what each statement carried. */
function manualInsert() {
  const statements: PredictionRow[][] = [];
  const pending: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  const insert = (rows: PredictionRow[]) =>
    new Promise<void>((resolve, reject) => {
      statements.push(rows);
      pending.push({ resolve, reject });
    });
  const settle = async (error?: Error) => {
    for (let turns = 0; pending.length === 0; turns++) {
      if (turns > 1000) assert.fail('no INSERT came');
      await new Promise((r) => setImmediate(r));
    }
    const next = pending.shift()!;
    if (error) next.reject(error);
    else next.resolve();
  };
  return { insert, statements, settle };
}

describe('manufacturing: prediction group commit', () => {
  it('writes what arrives during a commit in one following INSERT, and resolves each caller after its own', async () => {
    const db = manualInsert();
    const writer = new PredictionWriter(db.insert);
    const resolved: string[] = [];
    const first = writer.write([row('a', 1)]).then(() => resolved.push('a'));
    await new Promise((r) => setImmediate(r));
    const rest = ['b', 'c', 'd'].map((id, i) =>
      writer.write([row(id, i), row(id, i + 10)]).then(() => resolved.push(id)),
    );
    assert.equal(db.statements.length, 1, 'one INSERT in flight at a time');
    await db.settle();
    await first;
    assert.deepEqual(resolved, ['a'], 'the others wait for their own commit');
    await db.settle();
    await Promise.all(rest);
    assert.equal(db.statements.length, 2);
    assert.deepEqual(
      db.statements[1].map((r) => r.assetId),
      ['b', 'b', 'c', 'c', 'd', 'd'],
      'the three waiting callers share one INSERT, in the order they wrote',
    );
  });

  it('fails every caller of a failed INSERT, and goes on with the next group', async () => {
    const db = manualInsert();
    const writer = new PredictionWriter(db.insert);
    const a = writer.write([row('a', 1)]);
    const b = writer.write([row('b', 1)]);
    await db.settle(new Error('connection lost'));
    await assert.rejects(a, /connection lost/);
    await assert.rejects(b, /connection lost/);
    const c = writer.write([row('c', 1)]);
    await db.settle();
    await c;
    assert.deepEqual(
      db.statements.map((s) => s.map((r) => r.assetId)),
      [['a', 'b'], ['c']],
    );
  });

  it("writes a failed INSERT's rows again later, alone, until the database takes them", async () => {
    // Their readings are in the windows already: a redelivered message would find them duplicates and
    // never predict them again, so the writer itself keeps them.
    const db = manualInsert();
    const writer = new PredictionWriter(db.insert, { retryDelayMs: 5 });
    try {
      const a = writer.write([row('a', 1), row('a', 2)]);
      await db.settle(new Error('database restarting'));
      await assert.rejects(a, /database restarting/);
      assert.equal(writer.waitingForRetry, 2);
      await db.settle(new Error('still restarting')); // the first retry fails too
      const b = writer.write([row('b', 1)]);
      await db.settle(); // the second retry and b, in whichever order they come
      await db.settle();
      await b;
      assert.equal(writer.waitingForRetry, 0);
      // Never in one statement with new rows.
      assert.deepEqual(db.statements.map((s) => s.map((r) => `${r.assetId}${r.value * 100}`).join(' ')).sort(), [
        'a1 a2',
        'a1 a2',
        'a1 a2',
        'b1',
      ]);
    } finally {
      writer.close();
    }
  });

  it('writes again what waits for the database, however many rows (up to the 200,000 it keeps)', async () => {
    // Rows kept across a long outage are written again in one group, and kept again should it fail.
    mock.timers.enable({ apis: ['setTimeout'] });
    const db = manualInsert();
    const writer = new PredictionWriter(db.insert, { retryDelayMs: 5 });
    try {
      const away = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      const writes = Array.from({ length: 30 }, (_, g) =>
        writer.write(Array.from({ length: 5000 }, (_, i) => row(`a${g}`, i))),
      );
      for (let g = 0; g < 30; g++) await db.settle(away());
      await Promise.allSettled(writes);
      assert.equal(writer.waitingForRetry, 150_000);
      mock.timers.tick(5);
      await db.settle(away()); // the retry fails too: its rows are kept again
      mock.timers.tick(10);
      for (let chunk = 0; chunk < 30; chunk++) await db.settle();
      const next = writer.write([row('b', 1)]);
      await db.settle();
      await next;
      assert.equal(writer.kept, 0);
      assert.equal(
        db.statements.slice(31, 61).reduce((n, s) => n + s.length, 0),
        150_000,
        'every kept row written once the database is back',
      );
    } finally {
      writer.close();
      mock.timers.reset();
    }
  });

  it('splits a group larger than one statement may carry, and writes nothing for no rows', async () => {
    const inserted: number[] = [];
    const writer = new PredictionWriter((rows) => {
      inserted.push(rows.length);
      return Promise.resolve();
    });
    await writer.write([]);
    assert.equal(inserted.length, 0);
    await Promise.all([
      writer.write(Array.from({ length: 4000 }, (_, i) => row('a', i))),
      writer.write(Array.from({ length: 4000 }, (_, i) => row('b', i))),
      writer.write(Array.from({ length: 12_000 }, (_, i) => row('c', i))),
    ]);
    assert.ok(
      inserted.every((n) => n <= 5000),
      `statements of at most 5000 rows: ${inserted.join(', ')}`,
    );
    assert.equal(
      inserted.reduce((sum, n) => sum + n, 0),
      20_000,
    );
  });
});
