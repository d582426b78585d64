import { Observable } from 'rxjs';
import { containsPan } from '../../common/pan';
import { MAX_BIGINT } from '../../common/storable-text';
import type { AlarmEvent, StreamedAlarm } from './plant-stream.service';

/** The most alarms a reconnect is sent again; the older ones it missed are left to GET /v1/manufacturing/alarms. */
export const REPLAY_LIMIT = 1000;

/**
 * How long a gateway's shared alarm read waits for more streams to join it (SharedAlarmReads): the replays of a mass
 * reconnect come each in its request's turn, within a few ms of each other; a live alarm is sent that much later.
 */
export const REPLAY_WINDOW_MS = 5;

/** What the alarm stream's Last-Event-ID may be: an id the stream gave, a whole number that fits a bigint. */
const EVENT_ID = /^(0|[1-9]\d{0,18})$/;

export const NOT_AN_EVENT_ID =
  'must be the id of an event of this stream: a whole number from 0 to 9223372036854775807';

const CARD_NUMBER_EVENT_ID = 'looks like a card number (PAN); never send one';

/**
 * A Last-Event-ID header: undefined where none (or an empty one, which EventSource never sends) came. One that
 * looks like a card number is refused: the resume point is audited and may be sent back (alarms-missed's `after`),
 * and no stream's ids reach 13 digits.
 */
export function lastEventIdOf(value: string | string[] | undefined): { after?: bigint } | { reason: string } {
  if (Array.isArray(value)) return { reason: 'must be sent once' };
  if (value === undefined || value === '') return {};
  if (!EVENT_ID.test(value) || BigInt(value) > MAX_BIGINT) return { reason: NOT_AN_EVENT_ID };
  if (containsPan(value)) return { reason: CARD_NUMBER_EVENT_ID };
  return { after: BigInt(value) };
}

/** An alarm as sent: one stored before its site, line and model were kept has none of them. */
export type AlarmData = Omit<AlarmEvent, 'site' | 'line' | 'model'> &
  Partial<Pick<AlarmEvent, 'site' | 'line' | 'model'>>;

/** The stored alarms, as the replay reads them. */
export interface AlarmLog {
  /**
   * Alarms stored with an id greater than `after` (and below `below`), newest first, at most `limit`. Read in insert
   * order: every alarm with an id below the newest returned is committed (on a server shared by gateways, the read
   * waits for the inserts in flight), so that the stream never moves past one committed later.
   */
  newestAfter(after: bigint, limit: number, below?: bigint): Promise<Array<AlarmData & { id: string }>>;
  /** The newest stored alarm's id, 0 where there is none. */
  newestId(): Promise<bigint>;
}

type StoredRows = Array<AlarmData & { id: string }>;

/**
 * The reads of one gateway's alarm streams, shared: each notification of another gateway's alarms fires every open
 * stream at once, and a read each (every one taking the alarm order lock, which alarm inserts wait on) made one
 * database read per dashboard per alarm; so did a mass reconnect (a failover: every dashboard's replay at once). The
 * streams that ask before a read starts (those fired by one notification, those reconnecting within one window: a
 * turn of the event loop, or `windowMs`) join it: one read from the lowest of their ids, each given the rows after
 * its own. Those that ask while it runs join the next, started when it is done: a read already begun may have missed
 * what they were told of. However many join, a read is of REPLAY_LIMIT + 1 rows at most.
 *
 * A stream given the rows after its id of the newest REPLAY_LIMIT + 1 after a lower id is given what a read of its own
 * would have returned: the rows above its id are the newest, so they are all there, or REPLAY_LIMIT + 1 of them are.
 * The read is in insert order (AlarmLog.newestAfter): every alarm below the newest it returned is committed. A read
 * begins after every stream that joined it asked (each subscribed to the live alarms first), so it holds whatever a
 * read of their own would have.
 */
export class SharedAlarmReads {
  /** The reads that have not started yet, by their `below` ('' for none), with the lowest id of those waiting. */
  private readonly next = new Map<string, { after: bigint; rows: Promise<StoredRows> }>();
  /** The newest id's read that has not started yet. */
  private nextNewest: Promise<bigint> | undefined;
  /** The read in progress (or waiting to start), if any: the one after it starts when it is done. */
  private running: Promise<void> | undefined;

  /** `windowMs`: how long a read waits for more streams to join it; 0, until the event loop's next turn. */
  constructor(
    private readonly log: AlarmLog,
    private readonly windowMs = 0,
  ) {}

  /**
   * The stored alarms after `after` (and below `below`), newest first, at most REPLAY_LIMIT + 1: as `log.newestAfter`
   * answers. Those asking with the same `below` share a read (this gateway's live alarm, past the ids of several
   * streams by more than one, is read before once, not once a stream; the replays of streams reconnecting at once
   * are read once).
   */
  async newestAfter(after: bigint, below?: bigint): Promise<StoredRows> {
    const key = below === undefined ? '' : String(below);
    const batch = this.next.get(key) ?? this.open(key, below);
    if (after < batch.after) batch.after = after;
    const rows = await batch.rows;
    return rows.filter((row) => BigInt(row.id) > after);
  }

  /** The newest stored alarm's id (`log.newestId`), one read for those asking in the same window. */
  newestId(): Promise<bigint> {
    if (this.nextNewest) return this.nextNewest;
    const newest = this.queue(() => {
      if (this.nextNewest === newest) this.nextNewest = undefined;
      return this.log.newestId();
    });
    this.nextNewest = newest;
    return newest;
  }

  /** A read that starts once those asking in this window have joined it, and the read before it is done. */
  private open(key: string, below: bigint | undefined): { after: bigint; rows: Promise<StoredRows> } {
    const batch: { after: bigint; rows: Promise<StoredRows> } = { after: MAX_BIGINT, rows: Promise.resolve([]) };
    batch.rows = this.queue(() => {
      // Those asking from now on wait for the next read.
      if (this.next.get(key) === batch) this.next.delete(key);
      return this.log.newestAfter(batch.after, REPLAY_LIMIT + 1, below);
    });
    this.next.set(key, batch);
    return batch;
  }

  /** Runs `read` after the window, and after the read before it: one at a time. */
  private queue<T>(read: () => Promise<T>): Promise<T> {
    // The streams fired by one notification (or sent one live alarm) all ask in the turn it came in (a subject's
    // subscribers, in turn); the replays of a mass reconnect, each in its request's turn, within a few ms.
    const window = new Promise<void>((resolve) =>
      this.windowMs > 0 ? setTimeout(resolve, this.windowMs) : setImmediate(resolve),
    );
    const result = Promise.all([window, this.running]).then(read);
    const running = result.then(
      () => undefined,
      () => undefined,
    );
    this.running = running;
    void running.then(() => {
      if (this.running === running) this.running = undefined;
    });
    return result;
  }
}

/**
 * What the alarm stream sends, in order. `id` is what the client's last event id becomes: an alarm's row id, or,
 * for an alarm that must not move it (not stored, or stored late: see resumeAlarms), the one it already has.
 */
export type AlarmStreamItem =
  | { kind: 'alarm'; id: string; alarm: AlarmData }
  /** Where a connection without Last-Event-ID starts: the newest stored alarm's id (no event, only the id). */
  | { kind: 'position'; id: string }
  /**
   * Alarms with an id above `after` up to `through` (its `id`) are not sent: more were missed than REPLAY_LIMIT
   * (`too-many`), or Last-Event-ID is past the newest stored alarm (`unknown-id`: the database is not the one
   * that gave it, reset or restored). `cursor` pages them from GET /v1/manufacturing/alarms.
   */
  | { kind: 'gap'; id: string; reason: 'too-many' | 'unknown-id'; after: string; cursor: string }
  /** The stored alarms could not be read: the stream ends, the client's last event id unchanged. */
  | { kind: 'unreadable' };

/**
 * An alarm stream that starts after `after` (a Last-Event-ID), else at the newest stored alarm: the stored alarms
 * after it (at most REPLAY_LIMIT, the newest, oldest first), then the live ones, none twice and none left out
 * between the two. The live ones are subscribed to before the log is read and held until it has been: an alarm
 * stored while the read runs is in the read, or held, or both (it is then sent once).
 *
 * The live alarms are this gateway's (PlantStream streams its own, in id order); gateways that share the database
 * store theirs in the same table, and their ids interleave. A live alarm whose id is past the client's by more than
 * one is sent after the stored alarms between the two (another gateway's, read from the log, at most REPLAY_LIMIT as
 * for the replay): the client's last event id moves past none that is not sent, so a reconnect that resumes from it
 * leaves none out. Another gateway's alarm is so sent late, before this gateway's next one, or by the replay of the
 * next reconnect; it is never skipped. Should that read fail, the stream ends as for the replay, the client's last
 * event id where it was: its reconnect is sent the live alarm too.
 *
 * With `stored` (on a PostgreSQL server: each time another gateway stores alarms, and each time the listener for
 * them starts listening, again after a drop), the stored alarms after the client's id are read and sent as soon as
 * it fires, not only before this gateway's next alarm: another gateway's reach the client within a read's time.
 * Fires that come during a read are taken up by one read after it. Those reads, those before a live alarm and the
 * replay go through `reads`, shared by the gateway's streams (one read per notification, or per live alarm, or per
 * window of reconnects, however many are open; by default the stream's own). A live alarm that such a read has sent already
 * (this gateway's own, read from the table before it was streamed) is not sent again: every id above where the
 * replay left the client and at or below the client's id has been sent, or named by an `alarms-missed` event.
 *
 * The client's last event id never goes back: a live alarm whose id is at or below what it has already been sent
 * (a newer one was read by the replay first, or streamed first: a fresh stream starts at the newest id of every
 * gateway's) is sent with the id the client has, unless a read sent it. An alarm with no row (the database
 * refused it) is sent with the id the client has too: it cannot be sent again on a reconnect.
 */
export function resumeAlarms(
  live: Observable<StreamedAlarm>,
  log: AlarmLog,
  after: bigint | undefined,
  stored?: Observable<unknown>,
  reads = new SharedAlarmReads(log),
): Observable<AlarmStreamItem> {
  return new Observable<AlarmStreamItem>((subscriber) => {
    /** Live alarms not sent yet, in the order streamed. */
    const queue: StreamedAlarm[] = [];
    /** A read runs (the replay, then a catch-up): the live alarms wait in the queue. */
    let reading = true;
    let liveEnded = false;
    const replayed = new Set<string>();
    let position = after ?? 0n;
    /**
     * Where the replay left the client: every id above it, up to `position`, was read from the log (and sent, or
     * named by a gap) or streamed live, so a live alarm in between has been sent. Undefined until the replay is sent.
     */
    let replayEnd: bigint | undefined;
    /** Alarms were stored (`stored` fired) since the last read began: read them once the current read is done. */
    let storedSince = false;

    /** Sends what the log gave; false once the stream has ended (the log unreadable). */
    const sendRead = (items: AlarmStreamItem[]): boolean => {
      for (const item of items) {
        subscriber.next(item);
        if (item.kind === 'unreadable') {
          subscriber.complete();
          return false;
        }
        position = BigInt(item.id);
      }
      return true;
    };

    const send = (event: StreamedAlarm): void => {
      const { id, ...alarm } = event;
      if (id !== undefined && BigInt(id) > position) position = BigInt(id);
      subscriber.next({ kind: 'alarm', id: String(position), alarm });
    };

    /** Whether a live alarm was sent already: by the replay, or by a read since (see replayEnd). */
    const sentAlready = (id: bigint): boolean =>
      replayed.has(String(id)) || (replayEnd !== undefined && id > replayEnd && id <= position);

    /** Reads (and sends) the stored alarms after the client's id, then goes on with the live ones. */
    const catchUp = (): void => {
      reading = true;
      storedSince = false;
      const after = position;
      itemsOf(() => reads.newestAfter(after), after).then(
        (items) => {
          if (subscriber.closed || !sendRead(items)) return;
          reading = false;
          pump();
        },
        (error: unknown) => subscriber.error(error),
      );
    };

    /** Sends the queued live alarms, each after the stored ones between it and the client's id, in turn. */
    const pump = (): void => {
      while (!reading && !subscriber.closed && queue.length > 0) {
        const event = queue.shift()!;
        if (event.id !== undefined && sentAlready(BigInt(event.id))) continue;
        if (event.id === undefined || BigInt(event.id) <= position + 1n) {
          send(event);
          continue;
        }
        reading = true;
        const [after, below] = [position, BigInt(event.id)];
        itemsOf(() => reads.newestAfter(after, below), after).then(
          (items) => {
            if (subscriber.closed || !sendRead(items)) return;
            send(event);
            reading = false;
            pump();
          },
          (error: unknown) => subscriber.error(error),
        );
        return;
      }
      if (reading || subscriber.closed) return;
      if (liveEnded) subscriber.complete();
      else if (storedSince) catchUp();
    };

    const subscription = live.subscribe({
      next: (event) => {
        queue.push(event);
        pump();
      },
      error: (error: unknown) => subscriber.error(error),
      complete: () => {
        liveEnded = true;
        pump();
      },
    });

    // Subscribed before the replay reads: alarms stored while it runs are read after it.
    const storedSubscription = stored?.subscribe({
      next: () => {
        storedSince = true;
        pump();
      },
      // Never ends the stream: without it, another gateway's alarms are sent before this gateway's next one.
      error: () => undefined,
    });

    replay(reads, after).then(
      (items) => {
        if (subscriber.closed) return;
        for (const item of items) if (item.kind === 'alarm') replayed.add(item.id);
        if (!sendRead(items)) return;
        replayEnd = position;
        reading = false;
        pump();
      },
      (error: unknown) => subscriber.error(error),
    );
    return () => {
      subscription.unsubscribe();
      storedSubscription?.unsubscribe();
    };
  });
}

/** What is sent before the live alarms, read from the log (with the other streams' replays: see SharedAlarmReads). */
async function replay(reads: SharedAlarmReads, after: bigint | undefined): Promise<AlarmStreamItem[]> {
  try {
    if (after === undefined) return [{ kind: 'position', id: String(await reads.newestId()) }];
    const items = await itemsOf(() => reads.newestAfter(after), after);
    if (items.length === 0) {
      const newest = await reads.newestId();
      if (newest < after) items.push(gap('unknown-id', after, newest));
    }
    return items;
  } catch {
    return [{ kind: 'unreadable' }];
  }
}

/**
 * What `read` (the newest REPLAY_LIMIT + 1 stored alarms after `after`) gives to send, oldest first: the newest
 * REPLAY_LIMIT, after a gap saying which are not sent where there are more. A read that fails is `unreadable`.
 */
async function itemsOf(read: () => Promise<StoredRows>, after: bigint): Promise<AlarmStreamItem[]> {
  let rows: StoredRows;
  try {
    rows = await read();
  } catch {
    return [{ kind: 'unreadable' }];
  }
  const items: AlarmStreamItem[] = [];
  if (rows.length > REPLAY_LIMIT) items.push(gap('too-many', after, BigInt(rows[REPLAY_LIMIT].id)));
  for (const { id, ...alarm } of rows.slice(0, REPLAY_LIMIT).reverse()) items.push({ kind: 'alarm', id, alarm });
  return items;
}

function gap(reason: 'too-many' | 'unknown-id', after: bigint, through: bigint): AlarmStreamItem {
  // GET /v1/manufacturing/alarms?cursor=c pages the alarms below c, newest first.
  const cursor = through < MAX_BIGINT ? through + 1n : through;
  return { kind: 'gap', id: String(through), reason, after: String(after), cursor: String(cursor) };
}
