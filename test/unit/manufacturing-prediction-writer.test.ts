import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { QueryFailedError } from 'typeorm';
import { FIRST_INCARNATION } from '../../src/domains/manufacturing/assets/asset.entity';
import {
  droppedSummary,
  PredictionRow,
  PredictionWriter,
} from '../../src/domains/manufacturing/records/prediction-writer';

const row = (assetId: string, i: number): PredictionRow => ({
  assetId,
  at: new Date(Date.UTC(2026, 10, 24, 0, 0, i)),
  modelVersion: '1',
  value: i / 100,
  modes: null,
  inputs: null,
  incarnation: FIRST_INCARNATION,
});

/** Errors as the `pg` driver gives them, wrapped by TypeORM: a message and a SQLSTATE (or an errno). */
const failedQuery = (message: string, code: string) =>
  new QueryFailedError('INSERT ...', [], Object.assign(new Error(message), { code }));
/** The database away (isStorageOutage): the rows are held and written again. */
const away = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
/** A row's own content refused (not an outage). */
const checkViolation = () => failedQuery('new row violates check constraint "value_range"', '23514');

/** What the writer hands over as refused, and its options (a variable, not a literal: the old writer took none). */
function refusals(retryDelayMs?: number) {
  const refused: Array<{ row: PredictionRow; error: unknown }> = [];
  const options = {
    retryDelayMs,
    onRefused: (rows: Array<{ row: PredictionRow; error: unknown }>) => {
      refused.push(...rows);
      return Promise.resolve();
    },
  };
  return { refused, options };
}

/** A database that commits every statement but those holding a row `bad` says it refuses. */
function refusingInsert(bad: (row: PredictionRow) => Error | undefined) {
  const statements: PredictionRow[][] = [];
  const stored: PredictionRow[] = [];
  const insert = (rows: PredictionRow[]) => {
    statements.push(rows);
    for (const r of rows) {
      const error = bad(r);
      if (error) return Promise.reject(error);
    }
    stored.push(...rows);
    return Promise.resolve();
  };
  return { insert, statements, stored };
}

const ids = (rows: PredictionRow[]) => rows.map((r) => `${r.assetId}${Math.round(r.value * 100)}`);

/** Lets the writer run until `done` holds (turns of the event loop, not time). */
async function turnsUntil(done: () => boolean): Promise<void> {
  for (let turns = 0; !done(); turns++) {
    if (turns > 1000) assert.fail('the writer never got there');
    await new Promise((r) => setImmediate(r));
  }
}

/** An INSERT that the test finishes by hand, recording what each statement carried. */
function manualInsert() {
  const statements: PredictionRow[][] = [];
  const pending: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  const insert = (rows: PredictionRow[]) =>
    new Promise<void>((resolve, reject) => {
      statements.push(rows);
      pending.push({ resolve, reject });
    });
  // Waits by the clock, not by turns of the event loop: a retry comes after its timer (5, then 10 ms),
  // and a thousand turns can pass sooner than that on a fast machine.
  const settle = async (error?: Error) => {
    const deadline = Date.now() + 5000;
    while (pending.length === 0) {
      if (Date.now() > deadline) assert.fail('no INSERT came within 5 s');
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
    const writer = new PredictionWriter(db.insert, refusals().options);
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

  it('fails every caller of an INSERT the database is away for, and goes on with the next group', async () => {
    const db = manualInsert();
    const writer = new PredictionWriter(db.insert, refusals().options);
    const a = writer.write([row('a', 1)]);
    const b = writer.write([row('b', 1)]);
    await db.settle(away());
    await assert.rejects(a, /ECONNREFUSED/);
    await assert.rejects(b, /ECONNREFUSED/);
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
    const writer = new PredictionWriter(db.insert, refusals(5).options);
    try {
      const a = writer.write([row('a', 1), row('a', 2)]);
      await db.settle(failedQuery('the database system is starting up', '57P03'));
      await assert.rejects(a, /starting up/);
      assert.equal(writer.waitingForRetry, 2);
      await db.settle(failedQuery('the database system is starting up', '57P03')); // the first retry fails too
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
    const writer = new PredictionWriter(db.insert, refusals(5).options);
    try {
      const writes = Promise.allSettled(
        Array.from({ length: 30 }, (_, g) => writer.write(Array.from({ length: 5000 }, (_, i) => row(`a${g}`, i)))),
      );
      for (let g = 0; g < 30; g++) await db.settle(away());
      await writes;
      assert.equal(writer.waitingForRetry, 150_000);
      mock.timers.tick(5);
      await db.settle(away()); // the retry fails too: its rows are kept again
      await turnsUntil(() => writer.waitingForRetry === 150_000);
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

  it("tells which asset incarnation it keeps rows of: an asset made again does not keep the removed one's", async () => {
    const made = '6f1c2b8e-0d7a-4c1e-9a53-2f9b7c1d4e50';
    const writer = new PredictionWriter(() => Promise.reject(away()), refusals(60_000).options);
    try {
      await assert.rejects(writer.write([row('a', 1)]));
      assert.deepEqual([writer.keeps('a', FIRST_INCARNATION), writer.keeps('a', made)], [true, false]);
      await assert.rejects(writer.write([{ ...row('a', 2), incarnation: made }]));
      assert.equal(writer.keeps('a', made), true);
    } finally {
      writer.close();
    }
  });

  it('tells which assets it keeps rows of, and writes them again at once when asked, at most once per first retry delay', async () => {
    let up = false;
    const stored: PredictionRow[] = [];
    const insert = (rows: PredictionRow[]) => {
      if (!up) return Promise.reject(away());
      stored.push(...rows);
      return Promise.resolve();
    };
    // A long first delay: nothing here is written by the timer.
    const writer = new PredictionWriter(insert, refusals(60_000).options);
    try {
      await assert.rejects(writer.write([row('a', 1), row('a', 2)]));
      assert.deepEqual([writer.keeps('a', FIRST_INCARNATION), writer.keeps('b', FIRST_INCARNATION)], [true, false]);
      await writer.retryNow();
      assert.equal(writer.keeps('a', FIRST_INCARNATION), true, 'still away');
      up = true;
      // Asked again within the first delay: not tried again (that the database is not hammered by every call).
      await writer.retryNow();
      assert.equal(writer.keeps('a', FIRST_INCARNATION), true);
      assert.deepEqual(ids(stored), []);
      const fast = new PredictionWriter(insert, refusals(0).options);
      up = false;
      await assert.rejects(fast.write([row('c', 3)]));
      up = true;
      await fast.retryNow();
      assert.deepEqual([fast.keeps('c', FIRST_INCARNATION), fast.kept], [false, 0]);
      assert.deepEqual(ids(stored), ['c3']);
      fast.close();
    } finally {
      writer.close();
    }
  });

  it('splits a group larger than one statement may carry, and writes nothing for no rows', async () => {
    const inserted: number[] = [];
    const writer = new PredictionWriter((rows) => {
      inserted.push(rows.length);
      return Promise.resolve();
    }, refusals().options);
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

describe('manufacturing: predictions the database refuses (not an outage)', () => {
  it('a row refused for its content holds no other: the group is halved down to it, the rest written, it handed over, and only its caller fails', async () => {
    const db = refusingInsert((r) => (r.assetId === 'b' && r.value === 0.02 ? checkViolation() : undefined));
    const { refused, options } = refusals();
    const writer = new PredictionWriter(db.insert, options);
    const [a, b, c, d] = await Promise.allSettled([
      writer.write([row('a', 1), row('a', 2)]),
      writer.write([row('b', 1), row('b', 2), row('b', 3)]),
      writer.write([row('c', 1)]),
      writer.write([row('d', 1), row('d', 2)]),
    ]);
    assert.deepEqual(
      [a.status, c.status, d.status],
      ['fulfilled', 'fulfilled', 'fulfilled'],
      'callers whose rows were all written',
    );
    assert.equal(b.status, 'rejected');
    assert.match(String(b.reason), /check constraint/);
    assert.deepEqual(ids(db.stored).sort(), ['a1', 'a2', 'b1', 'b3', 'c1', 'd1', 'd2']);
    assert.deepEqual(
      refused.map((r) => ids([r.row])[0]),
      ['b2'],
    );
    assert.equal((refused[0].error as { code?: string }).code, '23514');
    assert.equal(writer.kept, 0, 'nothing left to write again');
    assert.ok(db.statements.length <= 7, `${db.statements.length} statements for 8 rows`);
  });

  it('finds two bad rows among 5,000 in a bounded number of statements', async () => {
    const bad = new Set([1234, 4321]);
    const db = refusingInsert((r) => (bad.has(Math.round(r.value * 100)) ? checkViolation() : undefined));
    const { refused, options } = refusals();
    const writer = new PredictionWriter(db.insert, options);
    await assert.rejects(writer.write(Array.from({ length: 5000 }, (_, i) => row('a', i))), /check constraint/);
    assert.equal(db.stored.length, 4998);
    assert.deepEqual(refused.map((r) => Math.round(r.row.value * 100)).sort(), [1234, 4321]);
    // Halving: at most two statements per level (13 levels for 5,000 rows) for each bad row, and the first.
    assert.ok(db.statements.length <= 1 + 2 * 2 * 13, `${db.statements.length} statements`);
    assert.equal(writer.kept, 0);
  });

  it('many bad rows are found over several tries, each soon after the last, and every other row is written once', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const db = refusingInsert((r) =>
      r.assetId === 'a' && Math.round(r.value * 100) % 50 === 7 ? checkViolation() : undefined,
    );
    const { refused, options } = refusals(5);
    const writer = new PredictionWriter(db.insert, options);
    try {
      await assert.rejects(writer.write(Array.from({ length: 5000 }, (_, i) => row('a', i))), /check constraint/);
      assert.ok(db.statements.length <= 101, `one try spends at most 100 statements looking: ${db.statements.length}`);
      assert.ok(writer.waitingForRetry > 0 && writer.waitingForRetry < 5000, `${writer.waitingForRetry} left`);
      for (let tries = 0; writer.waitingForRetry > 0; tries++) {
        assert.ok(tries < 100, 'done in fewer than 100 tries');
        const left = writer.waitingForRetry;
        mock.timers.tick(5); // a try that got anywhere: the next one comes at the first delay again
        await writer.write([row('probe', tries)]); // queued behind the retry, which goes alone
        assert.ok(writer.waitingForRetry < left, `try ${tries} got nowhere`);
      }
      assert.equal(refused.length, 100);
      assert.equal(db.stored.filter((r) => r.assetId === 'a').length, 4900);
      assert.equal(new Set(db.stored).size, db.stored.length, 'none written twice');
    } finally {
      writer.close();
      mock.timers.reset();
    }
  });

  it('a database that refuses every row (a bug, not the rows) has none handed over: they are kept and written once it takes them', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    let granted = false;
    const db = refusingInsert(() =>
      granted ? undefined : failedQuery('permission denied for table manufacturing_predictions', '42501'),
    );
    const { refused, options } = refusals(5);
    const writer = new PredictionWriter(db.insert, options);
    try {
      await assert.rejects(writer.write(Array.from({ length: 5000 }, (_, i) => row('a', i))), /permission denied/);
      assert.equal(refused.length, 0);
      assert.equal(writer.waitingForRetry, 5000);
      assert.ok(db.statements.length <= 101, `${db.statements.length} statements`);
      granted = true;
      mock.timers.tick(5);
      await writer.write([row('probe', 1)]);
      assert.equal(writer.kept, 0);
      assert.equal(db.stored.length, 5001);
      assert.equal(refused.length, 0);
    } finally {
      writer.close();
      mock.timers.reset();
    }
  });

  it('a row refused alone while nothing else is written waits; once the database takes other rows, it is handed over', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const db = refusingInsert((r) => (r.assetId === 'bad' ? checkViolation() : undefined));
    const { refused, options } = refusals(5);
    const writer = new PredictionWriter(db.insert, options);
    try {
      await assert.rejects(writer.write([row('bad', 1)]), /check constraint/);
      assert.equal(refused.length, 0, 'nothing shows yet that the database takes rows');
      assert.equal(writer.waitingForRetry, 1);
      await writer.write([row('good', 1)]);
      mock.timers.tick(5);
      await writer.write([row('good', 2)]);
      assert.deepEqual(
        refused.map((r) => ids([r.row])[0]),
        ['bad1'],
      );
      assert.equal(writer.kept, 0);
    } finally {
      writer.close();
      mock.timers.reset();
    }
  });

  it('an outage in the middle of the search holds what is not written yet and hands nothing over', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    let down = false;
    let statements = 0;
    const db = refusingInsert((r) => {
      if (down) return away();
      return r.assetId === 'b' ? checkViolation() : undefined;
    });
    const insert = (rows: PredictionRow[]) => {
      // The database goes away right after refusing the first statement.
      if (++statements === 2) down = true;
      return db.insert(rows);
    };
    const { refused, options } = refusals(5);
    const writer = new PredictionWriter(insert, options);
    try {
      const [a, b] = await Promise.allSettled([
        writer.write([row('a', 1), row('a', 2)]),
        writer.write([row('b', 1), row('c', 1)]),
      ]);
      assert.equal(a.status, 'rejected');
      assert.match(String(a.status === 'rejected' && a.reason), /ECONNREFUSED/, 'told of the outage');
      assert.equal(b.status, 'rejected');
      assert.match(String(b.status === 'rejected' && b.reason), /ECONNREFUSED/);
      assert.equal(refused.length, 0);
      assert.equal(writer.waitingForRetry, 4);
      down = false;
      mock.timers.tick(5);
      await writer.write([row('d', 1)]);
      assert.deepEqual(
        refused.map((r) => ids([r.row])[0]),
        ['b1'],
      );
      assert.deepEqual(ids(db.stored).sort(), ['a1', 'a2', 'c1', 'd1']);
      assert.equal(writer.kept, 0);
    } finally {
      writer.close();
      mock.timers.reset();
    }
  });
});

describe('manufacturing: predictions dropped past what the writer keeps', () => {
  it('hands over the rows it drops, the oldest, so that their assets and times can be told', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const db = manualInsert();
    const dropped: PredictionRow[][] = [];
    const writer = new PredictionWriter(db.insert, {
      ...refusals(5).options,
      onDropped: (rows: PredictionRow[]) => dropped.push(rows),
    });
    try {
      // 40 groups of 5,000 fill the 200,000 the writer keeps; a 41st (another asset) pushes out the oldest 5,000.
      const writes = Promise.allSettled(
        Array.from({ length: 41 }, (_, g) =>
          writer.write(Array.from({ length: 5000 }, (_, i) => row(g === 0 ? 'first' : `a${g}`, i))),
        ),
      );
      for (let g = 0; g < 41; g++) await db.settle(away());
      await writes;
      assert.equal(writer.waitingForRetry, 200_000);
      assert.equal(dropped.length, 1);
      assert.equal(dropped[0].length, 5000);
      assert.ok(
        dropped[0].every((r) => r.assetId === 'first'),
        'the oldest dropped',
      );
    } finally {
      writer.close();
      mock.timers.reset();
    }
  });

  it('summarises dropped rows by asset, with their first and last times, naming at most 20 assets', () => {
    const rows = [row('b', 3), row('a', 1), row('b', 1), row('a', 2)];
    assert.deepEqual(droppedSummary(rows), {
      rows: 4,
      from: row('a', 1).at.toISOString(),
      to: row('b', 3).at.toISOString(),
      assets: [
        { assetId: 'b', rows: 2, from: row('b', 1).at.toISOString(), to: row('b', 3).at.toISOString() },
        { assetId: 'a', rows: 2, from: row('a', 1).at.toISOString(), to: row('a', 2).at.toISOString() },
      ],
    });
    // Ever more assets do not make the line longer: the largest named, the rest counted.
    const many = Array.from({ length: 1000 }, (_, a) =>
      Array.from({ length: a === 500 ? 3 : 1 }, (_, i) => row(`asset-${a}`, i)),
    ).flat();
    const summary = droppedSummary(many);
    assert.equal(summary.rows, 1002);
    assert.equal(summary.assets.length, 20);
    assert.equal(summary.assets[0].assetId, 'asset-500', 'the asset that lost most first');
    assert.deepEqual(summary.otherAssets, { assets: 980, rows: 980 });
    assert.ok(JSON.stringify(summary).length < 4000);
  });
});
