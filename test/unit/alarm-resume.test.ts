import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Subject } from 'rxjs';
import {
  AlarmLog,
  AlarmStreamItem,
  lastEventIdOf,
  NOT_AN_EVENT_ID,
  REPLAY_LIMIT,
  resumeAlarms,
  SharedAlarmReads,
} from '../../src/domains/manufacturing/alarm-resume.util';
import type { AlarmEvent, StreamedAlarm } from '../../src/domains/manufacturing/plant-stream.service';
import { seededRandom } from '../fixtures/random';

const alarm = (at: number): AlarmEvent => ({
  assetId: 'mill-1',
  site: 'plant-1',
  line: 'line-b',
  state: at % 2 === 0 ? 'raised' : 'cleared',
  metric: 'failure',
  value: 0.9,
  threshold: 0.5,
  at: new Date(at * 1000).toISOString(),
  model: { name: 'machine-failure', version: '1' },
});
const stored = (id: number): StreamedAlarm & { id: string } => ({ ...alarm(id), id: String(id) });

/** A log whose read answers when the test says so, the rows newest first as the repository gives them. */
function heldLog(rows: Array<StreamedAlarm & { id: string }>, newest = 0n) {
  let answer!: () => void;
  let fail!: (error: Error) => void;
  const answered = new Promise<void>((resolve, reject) => {
    answer = resolve;
    fail = reject;
  });
  // Failed before a read awaits it (reads wait a turn for others to join): the read is refused all the same.
  answered.catch(() => undefined);
  const log: AlarmLog = {
    newestAfter: async (after, limit, below) => {
      await answered;
      return rows.filter((r) => BigInt(r.id) > after && (below === undefined || BigInt(r.id) < below)).slice(0, limit);
    },
    newestId: async () => {
      await answered;
      return newest;
    },
  };
  return { log, answer, fail };
}

function collect(live: Subject<StreamedAlarm>, log: AlarmLog, after: bigint | undefined, stored?: Subject<void>) {
  const items: AlarmStreamItem[] = [];
  let completed = false;
  const subscription = resumeAlarms(live, log, after, stored).subscribe({
    next: (item) => items.push(item),
    complete: () => (completed = true),
  });
  return { items, done: () => completed, subscription };
}

/** Lets the reads (each waits a turn for others to join it: SharedAlarmReads) and their answers reach the stream. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

describe('alarm stream resume (Last-Event-ID)', () => {
  it('sends the stored alarms after Last-Event-ID, oldest first, then the held and live ones, none twice', async () => {
    const live = new Subject<StreamedAlarm>();
    const { log, answer } = heldLog([stored(8), stored(7), stored(5)]);
    const { items } = collect(live, log, 5n);
    // Streamed while the read runs: 7 is in the read too, 9 is not.
    live.next(stored(7));
    live.next(stored(9));
    assert.equal(items.length, 0, 'nothing before the read answers');
    answer();
    await settle();
    // Stored late (6, below 8 already sent) and refused by the database (no id): the client's id stays 9.
    live.next(stored(6));
    live.next(alarm(100));
    live.next(stored(10));
    assert.deepEqual(
      items.map((i) => (i.kind === 'alarm' ? [i.id, i.alarm.at] : [i.kind])),
      [
        ['7', alarm(7).at],
        ['8', alarm(8).at],
        ['9', alarm(9).at],
        ['9', alarm(6).at],
        ['9', alarm(100).at],
        ['10', alarm(10).at],
      ],
    );
    assert.ok(
      items.every((i) => i.kind !== 'alarm' || !('id' in i.alarm)),
      'the row id is not in the data',
    );
  });

  it('without Last-Event-ID, starts at the newest stored id; an alarm it holds at or below it is sent at it', async () => {
    const live = new Subject<StreamedAlarm>();
    const { log, answer } = heldLog([], 41n);
    const { items } = collect(live, log, undefined);
    live.next(stored(41));
    live.next(stored(42));
    answer();
    await settle();
    assert.deepEqual(
      items.map((i) => [i.kind, 'id' in i ? i.id : undefined]),
      [
        ['position', '41'],
        ['alarm', '41'],
        ['alarm', '42'],
      ],
    );
  });

  it(`past ${REPLAY_LIMIT} missed, says which were not sent, then sends the newest ${REPLAY_LIMIT}`, async () => {
    const live = new Subject<StreamedAlarm>();
    const rows = Array.from({ length: REPLAY_LIMIT + 50 }, (_, i) => stored(REPLAY_LIMIT + 60 - i));
    const { log, answer } = heldLog(rows);
    const { items } = collect(live, log, 3n);
    answer();
    await settle();
    // Ids 11 to 1060 missed: 61 to 1060 are sent, 11 to 60 are left to GET /v1/manufacturing/alarms?cursor=61.
    assert.deepEqual(items[0], { kind: 'gap', id: '60', reason: 'too-many', after: '3', cursor: '61' });
    const sent = items.slice(1).map((i) => (i.kind === 'alarm' ? Number(i.id) : NaN));
    assert.equal(sent.length, REPLAY_LIMIT);
    assert.deepEqual(
      sent,
      Array.from({ length: REPLAY_LIMIT }, (_, i) => 61 + i),
    );
  });

  it('past the newest stored id, says the id is unknown and goes on from the newest', async () => {
    const live = new Subject<StreamedAlarm>();
    const { log, answer } = heldLog([stored(2), stored(1)], 2n);
    const { items } = collect(live, log, 500n);
    answer();
    await settle();
    live.next(stored(3));
    assert.deepEqual(items, [
      { kind: 'gap', id: '2', reason: 'unknown-id', after: '500', cursor: '3' },
      { kind: 'alarm', id: '3', alarm: alarm(3) },
    ]);
  });

  it('ends, sending nothing more, when the stored alarms cannot be read', async () => {
    const live = new Subject<StreamedAlarm>();
    const { log, fail } = heldLog([]);
    const { items, done } = collect(live, log, 5n);
    live.next(stored(6));
    fail(new Error('connection refused'));
    await settle();
    live.next(stored(7));
    assert.deepEqual(items, [{ kind: 'unreadable' }]);
    assert.equal(done(), true);
    assert.equal(live.observed, false, 'the live alarms are let go');
  });

  it('ends once what it held is sent when the live alarms end during the read (shutdown)', async () => {
    const live = new Subject<StreamedAlarm>();
    const { log, answer } = heldLog([], 5n);
    const { items, done } = collect(live, log, 5n);
    live.next(stored(6));
    live.complete();
    assert.equal(done(), false);
    answer();
    await settle();
    assert.deepEqual(items, [{ kind: 'alarm', id: '6', alarm: alarm(6) }]);
    assert.equal(done(), true);
  });

  it("sends another gateway's stored alarms before a live one whose id is past the client's by more than one, so the client's id passes none unsent", async () => {
    const live = new Subject<StreamedAlarm>();
    // Newest first, as the repository gives them; other gateways' alarms are stored in the same table.
    const rows = [stored(6)];
    const { log, answer } = heldLog(rows);
    const reads: Array<bigint | undefined> = [];
    const newestAfter = log.newestAfter.bind(log);
    log.newestAfter = (after, limit, below) => {
      reads.push(below);
      return newestAfter(after, limit, below);
    };
    const { items } = collect(live, log, 5n);
    answer();
    await settle();
    // Another gateway stores 7 and 8; this one streams 9 (read first: 7 and 8), then 10 (right after: no read).
    rows.unshift(stored(8), stored(7));
    live.next(stored(9));
    await settle();
    live.next(stored(10));
    // Another gateway stores 11; this one streams 12 and 13: 13 waits for the read that 12 asks.
    rows.unshift(stored(10), stored(9), stored(11));
    rows.sort((a, b) => Number(b.id) - Number(a.id));
    live.next(stored(12));
    live.next(stored(13));
    await settle();
    assert.deepEqual(
      items.map((i) => (i.kind === 'alarm' ? [i.id, i.alarm.at] : [i.kind])),
      [6, 7, 8, 9, 10, 11, 12, 13].map((n) => [String(n), alarm(n).at]),
    );
    assert.deepEqual(reads, [undefined, 9n, 12n], 'the replay, then a read below each live alarm past the next id');
  });

  it('ends, the live alarm unsent, when the stored alarms before it cannot be read', async () => {
    const live = new Subject<StreamedAlarm>();
    const { log, answer } = heldLog([], 5n);
    const newestAfter = log.newestAfter.bind(log);
    log.newestAfter = (after, limit, below) =>
      below === undefined ? newestAfter(after, limit) : Promise.reject(new Error('lock timeout'));
    const { items, done } = collect(live, log, 5n);
    answer();
    await settle();
    live.next(stored(6));
    live.next(stored(8));
    live.next(stored(9));
    await settle();
    // The client resumes from 6: its reconnect is sent 7 (another gateway's), 8 and 9 from the table.
    assert.deepEqual(items, [{ kind: 'alarm', id: '6', alarm: alarm(6) }, { kind: 'unreadable' }]);
    assert.equal(done(), true);
    assert.equal(live.observed, false, 'the live alarms are let go');
  });

  it("sends another gateway's alarms when they are stored, with no live alarm after them; this gateway's, read so, is not sent twice", async () => {
    const live = new Subject<StreamedAlarm>();
    const stored$ = new Subject<void>();
    const rows = [stored(5)];
    const { log, answer } = heldLog(rows, 5n);
    /** The reads' `after`, each held until the test lets it answer (`next`). */
    const reads: bigint[] = [];
    let gate = Promise.resolve();
    let open = () => undefined as void;
    const newestAfter = log.newestAfter.bind(log);
    log.newestAfter = async (after, limit, below) => {
      reads.push(after);
      await gate;
      return newestAfter(after, limit, below);
    };
    const hold = (): void => {
      gate = new Promise<void>((resolve) => (open = resolve));
    };
    const { items } = collect(live, log, 5n, stored$);
    // Fired during the replay: read once after it.
    stored$.next();
    answer();
    await settle();
    assert.deepEqual(reads, [5n, 5n], 'the replay, then the alarms stored while it ran');

    // Another gateway stores 6, this one 7: both are read at the next fire, before 7 is streamed here.
    rows.unshift(stored(7), stored(6));
    hold();
    stored$.next();
    // Fired again and streamed while that read runs: one read after it, and 7 is not sent again.
    stored$.next();
    stored$.next();
    live.next(stored(7));
    open();
    await settle();
    await settle();
    // This gateway's next, right after the client's id: sent with no read.
    rows.unshift(stored(8));
    live.next(stored(8));
    await settle();
    assert.deepEqual(
      items.map((i) => (i.kind === 'alarm' ? [i.id, i.alarm.at] : [i.kind])),
      [6, 7, 8].map((n) => [String(n), alarm(n).at]),
    );
    assert.deepEqual(reads, [5n, 5n, 5n, 7n], 'one read per fire, but those during a read: one after it');
  });

  it('sends a live alarm at or below where a fresh stream started, but not one a read after it sent', async () => {
    const live = new Subject<StreamedAlarm>();
    const stored$ = new Subject<void>();
    const rows = [stored(41)];
    const { log, answer } = heldLog(rows, 41n);
    const { items } = collect(live, log, undefined, stored$);
    answer();
    await settle();
    rows.unshift(stored(43), stored(42));
    stored$.next();
    await settle();
    // 41 was stored before the stream started (and is not in any read), 42 and 43 were read.
    live.next(stored(41));
    live.next(stored(42));
    live.next(stored(43));
    live.next(stored(44));
    assert.deepEqual(
      items.map((i) => [i.kind, 'id' in i ? i.id : undefined, i.kind === 'alarm' ? i.alarm.at : undefined]),
      [
        ['position', '41', undefined],
        ['alarm', '42', alarm(42).at],
        ['alarm', '43', alarm(43).at],
        ['alarm', '43', alarm(41).at],
        ['alarm', '44', alarm(44).at],
      ],
    );
  });

  // Before, each stream read the table on each notification: with many dashboards open, as many reads, each taking
  // the alarm order lock that alarm inserts wait on.
  it("makes one read per notification for all of a gateway's streams, from the lowest id, each sent what is after its own", async () => {
    const live = new Subject<StreamedAlarm>();
    const stored$ = new Subject<void>();
    const rows = [stored(9), stored(7), stored(5)];
    const { log, answer } = heldLog(rows, 9n);
    const reads: Array<[bigint, number, bigint | undefined]> = [];
    const newestAfter = log.newestAfter.bind(log);
    log.newestAfter = (after, limit, below) => {
      reads.push([after, limit, below]);
      return newestAfter(after, limit, below);
    };
    const shared = new SharedAlarmReads(log);
    const open = (after: bigint) => {
      const items: AlarmStreamItem[] = [];
      resumeAlarms(live, log, after, stored$, shared).subscribe({ next: (item) => items.push(item) });
      return items;
    };
    const streams = [9n, 5n, 7n].map(open);
    answer();
    await settle();
    // Another gateway stores 10 and 11, not notified yet: a fourth stream, opened after 10, replays 11 and is at 11.
    rows.unshift(stored(11), stored(10));
    streams.push(open(10n));
    await settle();
    assert.equal(reads.length, 2, "one read for the three streams' replays, one for the fourth's");
    reads.length = 0;

    stored$.next();
    await settle();
    assert.deepEqual(reads, [[9n, REPLAY_LIMIT + 1, undefined]], 'one read for the four streams, from the lowest id');
    rows.unshift(stored(12));
    stored$.next();
    await settle();
    assert.equal(reads.length, 2, 'one read per notification');
    const ids = (items: AlarmStreamItem[]) => items.map((i) => (i.kind === 'alarm' ? i.id : i.kind));
    assert.deepEqual(streams.map(ids), [
      ['10', '11', '12'],
      ['7', '9', '10', '11', '12'],
      ['9', '10', '11', '12'],
      ['11', '12'],
    ]);
  });

  it("makes one read for all of a gateway's streams before its live alarm past their ids by more than one", async () => {
    const live = new Subject<StreamedAlarm>();
    const rows = [stored(5)];
    const { log, answer } = heldLog(rows, 5n);
    const shared = new SharedAlarmReads(log);
    const streams = [5n, 5n, 5n].map((after) => {
      const items: AlarmStreamItem[] = [];
      resumeAlarms(live, log, after, undefined, shared).subscribe({ next: (item) => items.push(item) });
      return items;
    });
    answer();
    await settle();
    const reads: Array<[bigint, bigint | undefined]> = [];
    const newestAfter = log.newestAfter.bind(log);
    log.newestAfter = (after, limit, below) => {
      reads.push([after, below]);
      return newestAfter(after, limit, below);
    };
    // Another gateway's 6, not notified; this gateway's 7.
    rows.unshift(stored(7), stored(6));
    live.next(stored(7));
    await settle();
    assert.deepEqual(reads, [[5n, 7n]]);
    const ids = (items: AlarmStreamItem[]) => items.map((i) => (i.kind === 'alarm' ? i.id : i.kind));
    assert.deepEqual(streams.map(ids), [
      ['6', '7'],
      ['6', '7'],
      ['6', '7'],
    ]);
  });

  it('a shared read gives each stream what its own read would have, gaps included, and the next read waits for it', async () => {
    const rows = Array.from({ length: REPLAY_LIMIT + 10 }, (_, i) => stored(REPLAY_LIMIT + 10 - i));
    const { log, answer } = heldLog(rows);
    let running = 0;
    let most = 0;
    const newestAfter = log.newestAfter.bind(log);
    log.newestAfter = async (after, limit, below) => {
      most = Math.max(most, ++running);
      try {
        return await newestAfter(after, limit, below);
      } finally {
        running--;
      }
    };
    const shared = new SharedAlarmReads(log);
    const first = [0n, 5n, 100n].map((after) => shared.newestAfter(after));
    await settle();
    // Asked while that read runs: a read after it.
    const second = shared.newestAfter(BigInt(REPLAY_LIMIT + 5));
    answer();
    for (const [i, after] of [0n, 5n, 100n].entries()) {
      assert.deepEqual(await first[i], await newestAfter(after, REPLAY_LIMIT + 1));
    }
    assert.deepEqual(await second, await newestAfter(BigInt(REPLAY_LIMIT + 5), REPLAY_LIMIT + 1));
    assert.equal(most, 1, 'one read at a time');
  });

  // A failover drops every dashboard at once, and they all reconnect with their Last-Event-IDs: before, each replay
  // was a read of its own (500 dashboards, 500 reads, each taking the alarm order lock that alarm inserts wait on).
  it('serves a mass reconnect with one read, each stream exactly the alarms it missed, in order, then the live ones', async () => {
    const live = new Subject<StreamedAlarm>();
    const newest = REPLAY_LIMIT + 200;
    const rows = Array.from({ length: newest }, (_, i) => stored(newest - i));
    const { log, answer } = heldLog(rows, BigInt(newest));
    answer();
    const reads = { newestAfter: 0, newestId: 0 };
    const [newestAfter, newestId] = [log.newestAfter.bind(log), log.newestId.bind(log)];
    log.newestAfter = (after, limit, below) => (reads.newestAfter++, newestAfter(after, limit, below));
    log.newestId = () => (reads.newestId++, newestId());
    const shared = new SharedAlarmReads(log);
    const random = seededRandom(500);
    const afters: Array<bigint | undefined> = [
      ...Array.from({ length: 500 }, () => BigInt(Math.floor(random() * (newest + 1)))),
      0n,
      BigInt(newest),
      BigInt(newest + 50),
      undefined,
      undefined,
    ];
    const streams: AlarmStreamItem[][] = [];
    for (const [i, after] of afters.entries()) {
      const items: AlarmStreamItem[] = [];
      resumeAlarms(live, log, after, undefined, shared).subscribe({ next: (item) => items.push(item) });
      streams.push(items);
      // Each reconnect in a turn of its own (its own request), within the window.
      if (i % 100 === 0) await Promise.resolve();
    }
    await settle();
    await settle();
    assert.equal(reads.newestAfter, 1, 'one read of the missed alarms for every replay');
    assert.ok(reads.newestId <= 2, `the newest id read once for the fresh streams and once for those that missed none`);
    live.next(stored(newest + 1));
    await settle();

    for (const [i, after] of afters.entries()) {
      const missed = after === undefined || after >= BigInt(newest) ? 0 : newest - Number(after);
      const expected: AlarmStreamItem[] = [];
      if (after === undefined) expected.push({ kind: 'position', id: String(newest) });
      else if (after > BigInt(newest)) {
        expected.push({
          kind: 'gap',
          id: String(newest),
          reason: 'unknown-id',
          after: String(after),
          cursor: String(newest + 1),
        });
      } else if (missed > REPLAY_LIMIT) {
        const through = newest - REPLAY_LIMIT;
        expected.push({
          kind: 'gap',
          id: String(through),
          reason: 'too-many',
          after: String(after),
          cursor: String(through + 1),
        });
      }
      for (let id = newest - Math.min(missed, REPLAY_LIMIT) + 1; id <= newest + 1; id++) {
        const { id: _, ...data } = stored(id);
        expected.push({ kind: 'alarm', id: String(id), alarm: data });
      }
      assert.deepEqual(streams[i], expected, `the stream resumed after ${after}`);
    }
  });

  it('ends when the alarms stored cannot be read, and lets go of what tells it of them', async () => {
    const live = new Subject<StreamedAlarm>();
    const stored$ = new Subject<void>();
    const { log, answer } = heldLog([], 5n);
    const newestAfter = log.newestAfter.bind(log);
    let reads = 0;
    log.newestAfter = (after, limit, below) =>
      ++reads === 1 ? newestAfter(after, limit, below) : Promise.reject(new Error('lock timeout'));
    const { items, done } = collect(live, log, 5n, stored$);
    answer();
    await settle();
    stored$.next();
    await settle();
    assert.deepEqual(items, [{ kind: 'unreadable' }]);
    assert.equal(done(), true);
    assert.equal(stored$.observed, false, 'no more reads');
    assert.equal(live.observed, false);
  });

  it('reads Last-Event-ID: absent or empty is none, anything but a bigint id is refused', () => {
    assert.deepEqual(lastEventIdOf(undefined), {});
    assert.deepEqual(lastEventIdOf(''), {});
    assert.deepEqual(lastEventIdOf('0'), { after: 0n });
    assert.deepEqual(lastEventIdOf('9223372036854775807'), { after: 9223372036854775807n });
    for (const bad of ['x', '-1', '+1', '01', '1.0', ' 1', '1e3', '9223372036854775808', '99999999999999999999']) {
      assert.deepEqual(lastEventIdOf(bad), { reason: NOT_AN_EVENT_ID }, bad);
    }
    assert.deepEqual(lastEventIdOf(['1', '2']), { reason: 'must be sent once' });
  });

  // A whole number that is a card number was taken as the resume point: written to the audit row (its output
  // summary's lastEventId) and, past the newest alarm, sent back in the alarms-missed event's `after`.
  it('refuses a Last-Event-ID that looks like a card number, which no event of the stream has', () => {
    for (const pan of ['4222222222222', '4111111111111111', '4917610000000000003']) {
      assert.deepEqual(lastEventIdOf(pan), { reason: 'looks like a card number (PAN); never send one' }, pan);
    }
    assert.deepEqual(lastEventIdOf('4111111111111112'), { after: 4111111111111112n });
  });
});
