import type { Logger } from '@nestjs/common';
import { Client, type ClientConfig, type Notification } from 'pg';
import { Observable } from 'rxjs';

/**
 * What a listener gives: `listening` each time its LISTEN takes effect (at first and again after a drop: whatever
 * was notified while it was not listening is lost, so a follower reads what it missed then), and each notification.
 */
export type Notice = { kind: 'listening' } | { kind: 'notified'; payload: string };

export interface ListenerOptions {
  /** First wait before connecting again after a drop; doubled up to maxRetryMs while it keeps failing. */
  firstRetryMs: number;
  maxRetryMs: number;
  /** How often the connection is checked with a query: a server gone silent sends no error, only no notifications. */
  pingMs: number;
  /** The retry jitter's random source (0 to 1). */
  random: () => number;
}

export const LISTENER_DEFAULTS: ListenerOptions = {
  firstRetryMs: 1000,
  maxRetryMs: 30_000,
  pingMs: 30_000,
  random: Math.random,
};

/**
 * PostgreSQL notifications on `channel`, on a connection of its own (one held by the pool would be handed to other
 * queries, and LISTEN holds for a session): opened on subscription, closed on unsubscription, so nothing is held
 * while no one follows. A connection that drops (a server restart, pg_terminate_backend, a failed ping) is opened
 * again after 1 s, doubling up to 30 s while it fails, each wait jittered (±25%) so that the gateways that share the
 * server do not come back in the same moment; each LISTEN that takes effect is told (`listening`).
 */
export function notificationsOf(
  config: ClientConfig,
  channel: string,
  logger: Logger,
  options: ListenerOptions = LISTENER_DEFAULTS,
): Observable<Notice> {
  return new Observable<Notice>((subscriber) => {
    let client: Client | undefined;
    let retryTimer: NodeJS.Timeout | undefined;
    /** Checks the connection now listening. */
    let pinger: NodeJS.Timeout | undefined;
    let delayMs = options.firstRetryMs;
    let stopped = false;
    /** Not listening (the connection failed or dropped) since the last LISTEN: logged once, not once per try. */
    let down = false;

    const retry = (): void => {
      retryTimer = setTimeout(
        () => {
          retryTimer = undefined;
          void connect();
        },
        delayMs * (0.75 + options.random() / 2),
      );
      // The connection it opens holds the process; the wait does not.
      retryTimer.unref();
      delayMs = Math.min(options.maxRetryMs, delayMs * 2);
    };

    const connect = async (): Promise<void> => {
      const connection = new Client(config);
      client = connection;
      let lost = false;
      const drop = (error?: unknown): void => {
        if (lost) return;
        lost = true;
        if (client === connection) {
          client = undefined;
          clearInterval(pinger);
        }
        void connection.end().catch(() => undefined);
        if (stopped) return;
        if (!down) {
          down = true;
          logger.warn({ msg: 'not listening for notifications; connecting again', channel, error: reasonOf(error) });
        }
        retry();
      };
      connection.on('error', drop);
      connection.on('end', () => drop(new Error('connection ended')));
      connection.on('notification', (notification: Notification) => {
        if (!lost && notification.channel === channel) {
          subscriber.next({ kind: 'notified', payload: notification.payload ?? '' });
        }
      });
      try {
        await connection.connect();
        await connection.query(`LISTEN ${quoteIdentifier(channel)}`);
      } catch (error) {
        drop(error);
        return;
      }
      // Unsubscribed while it connected: the connection is ending.
      if (lost || stopped) return;
      delayMs = options.firstRetryMs;
      if (down) logger.log({ msg: 'listening for notifications again', channel });
      down = false;
      pinger = setInterval(() => void connection.query('SELECT 1').catch(drop), options.pingMs);
      pinger.unref();
      subscriber.next({ kind: 'listening' });
    };

    void connect();
    return () => {
      stopped = true;
      clearTimeout(retryTimer);
      clearInterval(pinger);
      const connection = client;
      client = undefined;
      // Ends its socket: the process exits without waiting for it.
      void connection?.end().catch(() => undefined);
    };
  });
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
