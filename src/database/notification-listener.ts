import { randomUUID } from 'node:crypto';
import type { Logger } from '@nestjs/common';
import { Client, type ClientConfig, type Notification } from 'pg';
import { Observable } from 'rxjs';

/**
 * What a listener gives: `listening` each time its LISTEN takes effect (at first and again after a drop: whatever
 * was notified while it was not listening is lost, so a follower reads what it missed then), and each notification.
 * `dropped` when it stops listening (its connection failed, ended or missed a ping) and is connecting again, once
 * until it listens again: what it told of delivery before holds no longer.
 * `heard` once the probe sent after LISTEN came back: notifications reach this connection. `unheard` while it has
 * not, probeMs after LISTEN and every pollMs after that: notifications may be lost (a pooler in transaction mode
 * takes the LISTEN's session back at once), so a follower reads what may have been notified, as after a drop.
 */
export type Notice =
  | { kind: 'listening' }
  | { kind: 'notified'; payload: string }
  | { kind: 'heard' }
  | { kind: 'unheard' }
  | { kind: 'dropped' };

/**
 * How a probe's payload starts: the listener takes these (its own, and other listeners' on the channel) for itself,
 * never gives them. A channel's other payloads must not start so.
 */
export const PROBE_PREFIX = 'listener-probe:';

export interface ListenerOptions {
  /** First wait before connecting again after a drop; doubled up to maxRetryMs while it keeps failing. */
  firstRetryMs: number;
  maxRetryMs: number;
  /** How often the connection is checked with a query: a server gone silent sends no error, only no notifications. */
  pingMs: number;
  /** The retry jitter's random source (0 to 1). */
  random: () => number;
  /** How long the probe NOTIFY sent after LISTEN may take to come back before notifications count as not delivered. */
  probeMs: number;
  /** How often `unheard` is given while they do not come. */
  pollMs: number;
  /** Sends the probe: by default from a connection of its own (see sendProbe). */
  probe: (config: ClientConfig, channel: string, payload: string) => Promise<void>;
}

export const LISTENER_DEFAULTS: ListenerOptions = {
  firstRetryMs: 1000,
  maxRetryMs: 30_000,
  pingMs: 30_000,
  random: Math.random,
  probeMs: 5000,
  pollMs: 5000,
  probe: sendProbe,
};

/**
 * NOTIFY from a connection of its own, not the listener's: behind a pooler in transaction mode, the listener's own
 * NOTIFY could run in the very session its LISTEN ran in and be handed back to it, though no other session's would.
 */
export async function sendProbe(config: ClientConfig, channel: string, payload: string): Promise<void> {
  const client = new Client(config);
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT pg_notify($1, $2)', [channel, payload]);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * PostgreSQL notifications on `channel`, on a connection of its own (one held by the pool would be handed to other
 * queries, and LISTEN holds for a session): opened on subscription, closed on unsubscription, so nothing is held
 * while no one follows. A connection that drops (a server restart, pg_terminate_backend, a failed ping) is opened
 * again after 1 s, doubling up to 30 s while it fails, each wait jittered (±25%) so that the gateways that share the
 * server do not come back in the same moment; each LISTEN that takes effect is told (`listening`).
 *
 * After each LISTEN a probe is notified on the channel: should it not come back within probeMs, notifications are
 * not delivered to this connection (a pooler such as PgBouncer in transaction mode gives the session that ran LISTEN
 * to other clients; PostgreSQL says nothing of it), which is logged once, with what the follower gets instead:
 * `unheard` every pollMs, until the probe comes back late or the connection is opened again (and probed again).
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
    /** Waits for the probe, then gives `unheard` every pollMs while it has not come back. */
    let poller: NodeJS.Timeout | undefined;
    /** The payload of the probe the connection now listening waits for; undefined once it came back. */
    let awaited: string | undefined;
    /** Not delivered was logged (once, whatever the reconnects, until a probe comes back, which is logged too). */
    let deafLogged = false;
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
          clearTimeout(poller);
          awaited = undefined;
        }
        void connection.end().catch(() => undefined);
        if (stopped) return;
        if (!down) {
          down = true;
          logger.warn({ msg: 'not listening for notifications; connecting again', channel, error: reasonOf(error) });
          subscriber.next({ kind: 'dropped' });
        }
        retry();
      };
      connection.on('error', drop);
      connection.on('end', () => drop(new Error('connection ended')));
      connection.on('notification', (notification: Notification) => {
        if (lost || notification.channel !== channel) return;
        const payload = notification.payload ?? '';
        if (!payload.startsWith(PROBE_PREFIX)) {
          subscriber.next({ kind: 'notified', payload });
        } else if (payload === awaited) {
          awaited = undefined;
          clearTimeout(poller);
          if (deafLogged) logger.log({ msg: 'notifications are delivered after all; no more periodic reads', channel });
          deafLogged = false;
          subscriber.next({ kind: 'heard' });
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
      if (!stopped && client === connection) probe(connection);
    };

    /** Notifies a probe for `connection`, now listening, and gives `unheard` should it not come back in time. */
    const probe = (connection: Client): void => {
      const payload = PROBE_PREFIX + randomUUID();
      awaited = payload;
      // A probe that cannot be sent is as one that does not come back: the follower reads on a timer all the same.
      void options.probe(config, channel, payload).catch(() => undefined);
      const unheard = (): void => {
        if (client !== connection || awaited !== payload) return;
        if (!deafLogged) {
          deafLogged = true;
          logger.warn({
            msg:
              `notifications are not delivered: a probe notified on ${channel} did not come back within ` +
              `${options.probeMs} ms (a connection pooler in transaction mode, such as PgBouncer's, does not keep ` +
              "LISTEN's session); what they would have told is read every " +
              `${options.pollMs} ms instead, so it arrives late. Set DATABASE_LISTEN_URL to the database at the ` +
              "server's own address, or through a pooler in session mode, for this listener alone",
            channel,
          });
        }
        poller = setTimeout(unheard, options.pollMs);
        poller.unref();
        subscriber.next({ kind: 'unheard' });
      };
      poller = setTimeout(unheard, options.probeMs);
      poller.unref();
    };

    void connect();
    return () => {
      stopped = true;
      clearTimeout(retryTimer);
      clearInterval(pinger);
      clearTimeout(poller);
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
