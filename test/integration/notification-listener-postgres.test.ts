import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Logger } from '@nestjs/common';
import { Client } from 'pg';
import { LISTENER_DEFAULTS, notificationsOf } from '../../src/database/notification-listener';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;
const APPLICATION = 'gateway-test-notification-listener';

// Before, nothing was told on a drop: the alarm listener's /health/ready detail kept saying `checking` or `delivered`
// all the while its connection was down and connecting again.
describe(
  'a notification listener whose connection drops',
  { skip: DATABASE_URL ? false : 'DATABASE_URL is not set' },
  () => {
    let watch: Client;
    before(async () => {
      watch = new Client({ connectionString: DATABASE_URL });
      await watch.connect();
    });
    after(async () => {
      await watch?.end();
    });

    const listenerPid = async (): Promise<number | undefined> =>
      (
        await watch.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
          [APPLICATION],
        )
      ).rows[0]?.pid;

    it('tells `dropped` once it stops listening, then `listening` when its LISTEN takes effect again', async () => {
      const kinds: string[] = [];
      const logger = new Logger('test');
      logger.warn = () => undefined;
      logger.log = () => undefined;
      const subscription = notificationsOf(
        { connectionString: DATABASE_URL, application_name: APPLICATION },
        'test_listener_drop',
        logger,
        { ...LISTENER_DEFAULTS, firstRetryMs: 200, random: () => 0.5 },
      ).subscribe((notice) => kinds.push(notice.kind));
      try {
        await until('listening', () => (kinds.includes('listening') ? true : undefined));
        await until('heard', () => (kinds.includes('heard') ? true : undefined));
        const pid = await until('the LISTEN in pg_stat_activity', listenerPid);
        await watch.query('SELECT pg_terminate_backend($1)', [pid]);
        await until('listening again', () => (kinds.filter((k) => k === 'listening').length === 2 ? true : undefined));
        const again = kinds.lastIndexOf('listening');
        assert.deepEqual(kinds.slice(0, again + 1), ['listening', 'heard', 'dropped', 'listening']);
      } finally {
        subscription.unsubscribe();
      }
    });
  },
);
