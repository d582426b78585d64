import assert from 'node:assert/strict';
import { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Client } from 'pg';
import request from 'supertest';
import {
  alarmInsertSql,
  deadLetterInsertSql,
  PlantRecordsRepository,
} from '../../src/domains/manufacturing/records/plant-records.repository';
import { ALARMS_ORDER_LOCK } from '../../src/database/insert-order';
import { PlantStream } from '../../src/domains/manufacturing/plant-stream.service';
import { alarmStream } from '../fixtures/alarm-stream';
import { pressDeadLetter } from '../fixtures/plant-data';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;

/** An alarm row as addAlarm takes it, as alarmInsertSql's parameters. */
function alarmParams(assetId: string, at: number): unknown[] {
  return [assetId, 'raised', 'failure', 0.9, 0.5, new Date(at).toISOString(), 's', 'l', 'mill', '1', null];
}

/** A dead letter as insertDeadLetters writes it, as deadLetterInsertSql's array parameters. */
function deadLetterParams(at: number, reason: string): unknown[] {
  const row = pressDeadLetter(at, reason);
  return [
    [row.receivedAt.toISOString()],
    [row.source],
    [row.channel],
    [row.assetId],
    [row.reason],
    [row.detail],
    [row.payload],
  ];
}

interface Table {
  name: string;
  route: string;
  list: (body: Record<string, Array<{ id: string }>>) => Array<{ id: string }>;
  /** Holds an insert open on `client` (another gateway in the middle of its write): its id drawn, not committed. */
  hold: (client: Client, n: number) => Promise<string>;
  /** Commits `n` rows through the gateway's own insert path. */
  add: (app: NestFastifyApplication, n: number) => Promise<void>;
}

const TABLES: Table[] = [
  {
    name: 'alarms',
    route: '/v1/manufacturing/alarms',
    list: (body) => body.alarms,
    hold: async (client, n) => {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string }>(alarmInsertSql(true), alarmParams('mill-held', n));
      return rows[0].id;
    },
    add: async (app, n) => {
      for (let i = 0; i < n; i++) {
        await app.get(PlantRecordsRepository).addAlarm({
          assetId: `mill-${i}`,
          state: 'raised',
          metric: 'failure',
          value: 0.9,
          threshold: 0.5,
          at: new Date(),
          site: 's',
          line: 'l',
          modelName: 'mill',
          modelVersion: '1',
          reason: null,
        });
      }
    },
  },
  {
    name: 'dead letters',
    route: '/v1/manufacturing/dead-letters',
    list: (body) => body.deadLetters,
    hold: async (client, n) => {
      await client.query('BEGIN');
      await client.query(deadLetterInsertSql(true), deadLetterParams(Date.now(), `held-${n}`));
      const { rows } = await client.query<{ id: string }>('SELECT max(id)::text AS id FROM manufacturing_dead_letters');
      return rows[0].id;
    },
    add: async (app, n) => {
      for (let i = 0; i < n; i++) {
        await app.get(PlantRecordsRepository).addDeadLetters([pressDeadLetter(Date.now(), `after-${i}`)]);
      }
    },
  },
];

describe(
  'manufacturing alarms and dead letters listed on a PostgreSQL server',
  { skip: DATABASE_URL ? false : 'DATABASE_URL is not set' },
  () => {
    let scratch: ScratchDatabase;
    before(async () => {
      scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_plant_list');
    });
    after(() => scratch?.drop());

    // Gateways (and, for dead letters, one gateway's intakes) insert side by side: a row whose id was drawn first could
    // become visible after rows drawn later, and a page read in between was paged past it for good (the next page,
    // cursor = beforeId, lists only lower ids).
    for (const table of TABLES) {
      it(`a listing of ${table.name} waits for an insert in flight: the row whose id was drawn first is on the page, not skipped`, async () => {
        const token = bearer(tokenFor(['plant-operator']));
        const app = await createTestApp({ DATABASE_URL: scratch.url });
        const other = new Client({ connectionString: scratch.url });
        await other.connect();
        try {
          const http = request(app.getHttpServer());
          // Another gateway in the middle of its insert: its id drawn, not committed yet.
          const held = await table.hold(other, 1);
          // Rows drawn after it, committed by this gateway.
          await table.add(app, 3);
          const listed = http.get(table.route).set('Authorization', token).expect(200);
          setTimeout(() => void other.query('COMMIT'), 300);
          const ids = table.list((await listed).body).map((row) => row.id);
          assert.ok(ids.includes(held), `row ${held} is on the page with the rows after it: ${ids.join(',')}`);
          assert.ok(ids.length >= 4, `the page holds the rows after it: ${ids.join(',')}`);
          // An insert that hangs holds a listing for 2 s at most (lock_timeout), then it is a 503; inserts go on.
          await table.hold(other, 2);
          const refused = await http.get(table.route).set('Authorization', token).expect(503);
          assert.equal(refused.body.code, 'STORAGE_UNAVAILABLE');
          await table.add(app, 1);
          await other.query('COMMIT');
          await http.get(table.route).set('Authorization', token).expect(200);
        } finally {
          await other.end();
          await app.close();
        }
      });
    }

    // The alarm stream resumes (Last-Event-ID) from the table and moves the client's last event id to the newest id
    // it sends: a resume that read past an insert in flight sent the rows after it, and the reconnect that followed
    // resumed above the held row once it was committed, so it was never sent (live alarms are each gateway's own).
    it("the alarm stream resumes in insert order: an alarm committed by another gateway after later ones is sent, as is one committed before this gateway's next live alarm; a fresh stream starts below no insert in flight", async () => {
      const token = bearer(tokenFor(['plant-operator']));
      const app = await createTestApp({ DATABASE_URL: scratch.url });
      await app.listen(0, '127.0.0.1');
      const port = (app.getHttpServer().address() as AddressInfo).port;
      const other = new Client({ connectionString: scratch.url });
      const watch = new Client({ connectionString: scratch.url });
      await other.connect();
      await watch.connect();
      const newest = async () =>
        (await watch.query<{ id: string }>('SELECT coalesce(max(id), 0)::text AS id FROM manufacturing_alarms')).rows[0]
          .id;
      // A read waiting for ALARMS_ORDER_LOCK, held shared by the insert in flight.
      const waiting = async () =>
        (
          await watch.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = ${ALARMS_ORDER_LOCK[0]} AND objid = ${ALARMS_ORDER_LOCK[1]} AND objsubid = 2`,
          )
        ).rows[0].n > 0;
      const alarms = TABLES[0];
      try {
        const resumeFrom = await newest();
        const held = await alarms.hold(other, 1);
        await alarms.add(app, 3);
        const last = await newest();
        const resumed = alarmStream(port, token, resumeFrom);
        await resumed.ready;
        // The resume waits for the insert in flight (this code), or sends the rows after it without it (before).
        await until('the resume waiting for the insert in flight, or sent', async () =>
          resumed.received.some((e) => e.id === last) || (await waiting()) ? true : undefined,
        );
        await other.query('COMMIT');
        await until('the newest alarm sent', () => resumed.received.find((e) => e.id === last));
        const sent = resumed.received.map((e) => e.id!);
        assert.ok(sent.includes(held), `alarm ${held} is sent with the alarms after it: ${sent.join(',')}`);

        // Live alarms are each gateway's own: another gateway's, committed now, is not streamed here; this gateway's
        // next one, whose id is past it, is sent after it (read from the table), so the client's id passes it sent.
        const others = await alarms.hold(other, 3);
        await other.query('COMMIT');
        const own = {
          assetId: 'mill-own',
          site: 's',
          line: 'l',
          state: 'raised' as const,
          metric: 'failure' as const,
          value: 0.9,
          threshold: 0.5,
          at: new Date().toISOString(),
          model: { name: 'mill', version: '1' },
        };
        const ownId = await app
          .get(PlantRecordsRepository)
          .addAlarm({ ...own, at: new Date(own.at), modelName: 'mill', modelVersion: '1', reason: null });
        app.get(PlantStream).alarms.next({ ...own, id: ownId });
        await until("this gateway's live alarm sent", () => resumed.received.find((e) => e.id === ownId));
        resumed.close();
        const all = resumed.received.map((e) => e.id!);
        assert.deepEqual(all.slice(-2), [others, ownId], `another gateway's alarm ${others} sent before ${ownId}`);
        assert.deepEqual(
          all,
          [...all].sort((a, b) => Number(a) - Number(b)),
          'oldest first',
        );

        // A stream opened without Last-Event-ID starts at the newest stored id: given while an alarm below it is in
        // flight, that alarm, committed afterwards, was in no replay and on no live stream of this gateway.
        const below = await alarms.hold(other, 2);
        await alarms.add(app, 1);
        const fresh = alarmStream(port, token);
        await fresh.ready;
        await until('the start waiting for the insert in flight, or given', async () =>
          fresh.received.length > 0 || (await waiting()) ? true : undefined,
        );
        assert.deepEqual(fresh.received, [], `the start is given while alarm ${below} is in flight`);
        await other.query('COMMIT');
        await until('the start given', () => (fresh.received.length > 0 ? true : undefined));
        fresh.close();
        assert.deepEqual(fresh.received, [{ type: undefined, id: await newest(), data: undefined }]);
      } finally {
        await other.end();
        await watch.end();
        await app.close();
      }
    });
  },
);
