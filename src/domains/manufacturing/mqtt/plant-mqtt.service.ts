import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { connect, IPublishPacket, MqttClient } from 'mqtt';
import { Counter, Gauge } from 'prom-client';
import { get as sparkplugCodec } from 'sparkplug-payload';
import { ReadinessService } from '../../../common/health/readiness.service';
import { MetricsService } from '../../../common/metrics/metrics.service';
import { AppConfig } from '../../../config/app-config';
import { AssetRegistry } from '../assets/asset-registry.service';
import { AlarmEvent, PlantStream } from '../plant-stream.service';
import { PlantRecordsRepository } from '../records/plant-records.repository';
import {
  parseSparkplugState,
  RebirthRequests,
  SPARKPLUG_NAMESPACE,
  sparkplugStatePayload,
  sparkplugStateTopic,
} from '../sparkplug.util';
import { IntakeResult, MqttMessageKind, MqttOutcome, PlantMqttIntake } from './plant-mqtt-intake';

/** At most one rebirth request per edge node in this long: a burst of unknown aliases is one problem. */
const REBIRTH_INTERVAL_MS = 5000;

/**
 * Passed to mqtt.js's handleMessage callback: it then reads the next packet without sending the
 * PUBACK itself (an error there skips the acknowledgement and nothing else), and we send it later.
 */
const ACK_DEFERRED = new Error('acknowledged later, in arrival order');

/** How often a connection holding unacknowledged messages checks whether their readings are stored. */
const STRANDED_CHECK_MS = 1000;
/**
 * A session resumed again soon after the last waits twice as long each time, up to this: a message that
 * can never be acknowledged (a bug, not an outage) costs a reconnection a minute, not one a second.
 */
const MAX_RESUME_BACKOFF_MS = 60_000;

/** A message taken from the broker, from arrival until its acknowledgement is sent (or withheld). */
interface Delivery {
  messageId: number | undefined;
  qos: number;
  /** The connection it came on: an acknowledgement belongs to that connection only. */
  stream: unknown;
  settled: boolean;
  acknowledge: boolean;
}

/** mqtt.js writes acknowledgements through this (internal) method; used for PUBACKs sent in order. */
interface PacketSender {
  _sendPacket(packet: { cmd: 'puback'; messageId: number }, callback?: (error?: Error) => void): void;
}

/**
 * The plant's MQTT link, when MQTT_URL is set. A persistent session (fixed client id, clean: false)
 * subscribed with QoS 1, whose PUBACK is sent only after the message is ingested or dead-lettered
 * (its predictions committed), so a gateway that stops mid-message leaves it unacknowledged and the
 * broker sends it again. Up to MQTT_MAX_IN_FLIGHT messages are handled side by side, so that their
 * readings share runtime calls and database commits; each asset's readings still go through its
 * window in arrival order (the stream takes them synchronously), and the PUBACKs go out in arrival
 * order as MQTT asks, each once it and every message before it are settled. mqtt.js has no public
 * way to acknowledge later than its handleMessage callback, which also gates reading the next
 * packet; so the callback is told to skip its PUBACK and the PUBACK is written here.
 * Alarms go back out as JSON (QoS 1).
 */
@Injectable()
export class PlantMqttService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('PlantMqtt');
  private readonly intake: PlantMqttIntake;
  private readonly messages: Counter<'kind' | 'outcome'>;
  private readonly alarmsPublished: Counter<'outcome'>;
  private readonly inFlight: Gauge;
  private client?: MqttClient;
  private closing = false;
  private hasSubscribed = false;
  /** The client's last error (a refused connection, a broker's refusal), shown while the link is down. */
  private lastError: string | undefined;
  private corked = false;
  /** Messages not yet acknowledged, in arrival order. */
  private readonly deliveries: Delivery[] = [];
  /** Messages being handled; shutdown lets them finish so that their acknowledgements go out. */
  private readonly handling = new Set<Promise<void>>();
  /** mqtt.js's go-ahead for reading the next packet, held while MQTT_MAX_IN_FLIGHT messages are in hand. */
  private resumeReading: (() => void) | undefined;
  private readonly rebirthAsked = new RebirthRequests(REBIRTH_INTERVAL_MS);
  /** Watches a connection that holds messages left unacknowledged, to resume the session once they are stored. */
  private strandedWatch: NodeJS.Timeout | undefined;
  private lastResumeAt = 0;
  private resumeBackoffMs = STRANDED_CHECK_MS;
  /**
   * The time of the MQTT CONNECT whose will is registered (SPARKPLUG_HOST_ID set): the STATE birth that
   * follows carries the same timestamp, as Sparkplug 3.0 asks.
   */
  private stateTimestamp = 0;
  /** The connection (mqtt.js's stream) on which the STATE birth was last published. */
  private stateBornOn: unknown;
  private markSubscribed!: () => void;
  /** Settles once the first subscription is granted (tests wait on it; nothing published before is queued for us). */
  readonly subscribed = new Promise<void>((resolve) => (this.markSubscribed = resolve));

  constructor(
    private readonly config: AppConfig,
    private readonly stream: PlantStream,
    registry: AssetRegistry,
    private readonly records: PlantRecordsRepository,
    metrics: MetricsService,
    readiness: ReadinessService,
  ) {
    this.intake = new PlantMqttIntake(stream, registry, records, this.topics(), this.config.MQTT_MAX_PAYLOAD_BYTES);
    this.inFlight = new Gauge({
      name: 'gateway_mqtt_messages_in_flight',
      help: 'MQTT messages received and not yet acknowledged',
      registers: [metrics.registry],
      collect: () => this.inFlight.set(this.deliveries.length),
    });
    // Informative, never "not ready": readiness steers HTTP traffic, and a broker outage stops none of it.
    readiness.register('mqtt', () => ({
      ready: true,
      detail: this.client
        ? {
            connected: this.client.connected,
            subscribed: this.hasSubscribed,
            inFlight: this.deliveries.length,
            // Why the link is down, while it is: the broker's or the socket's last error.
            ...(!this.client.connected && this.lastError ? { lastError: this.lastError } : {}),
          }
        : 'MQTT_URL not set',
    }));
    this.messages = new Counter({
      name: 'gateway_mqtt_messages_total',
      help: 'MQTT messages by kind (json, sparkplug, unknown) and outcome (ingested, dead-lettered, ignored, unacked)',
      labelNames: ['kind', 'outcome'],
      registers: [metrics.registry],
    });
    this.alarmsPublished = new Counter({
      name: 'gateway_mqtt_alarms_published_total',
      help: 'Alarm events published to MQTT, by outcome (ok, failed)',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
  }

  onApplicationBootstrap(): void {
    const url = this.config.MQTT_URL;
    if (!url) return;
    const client = connect(url, {
      clientId: this.config.MQTT_CLIENT_ID,
      // MQTT 5: the session outlives the connection for MQTT_SESSION_EXPIRY_SECONDS, and Receive Maximum
      // tells the broker how many unacknowledged messages to send us at once (a 3.1.1 broker's own
      // setting, e.g. Mosquitto's max_inflight_messages of 20, would cap that instead).
      protocolVersion: 5,
      properties: {
        sessionExpiryInterval: this.config.MQTT_SESSION_EXPIRY_SECONDS,
        receiveMaximum: Math.min(65_535, this.config.MQTT_MAX_IN_FLIGHT),
      },
      clean: false,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      manualConnect: true, // handleMessage must be in place before the first packet
    });
    const hostId = this.config.SPARKPLUG_HOST_ID;
    if (hostId) {
      // Sparkplug's Primary Host Application: the will is its STATE death, stamped with each CONNECT's time.
      this.registerStateWill(client, hostId);
      client.on('reconnect', () => this.registerStateWill(client, hostId));
    }
    client.handleMessage = (packet, callback) => {
      const delivery: Delivery = {
        messageId: packet.messageId,
        qos: packet.qos,
        stream: client.stream,
        settled: false,
        acknowledge: false,
      };
      this.deliveries.push(delivery);
      const work = this.onMessage(packet).then((acknowledge) => {
        delivery.settled = true;
        delivery.acknowledge = acknowledge;
        if (!acknowledge) this.resumeWhenStored(client, delivery.stream);
        this.handling.delete(work);
        this.releaseAcknowledgements(client);
      });
      this.handling.add(work);
      const readOn = () => callback(ACK_DEFERRED);
      if (this.deliveries.length < this.config.MQTT_MAX_IN_FLIGHT) readOn();
      else this.resumeReading = readOn;
    };
    client.on('connect', (connack) => {
      this.logger.log({ msg: 'MQTT connected', clientId: this.config.MQTT_CLIENT_ID, resumed: connack.sessionPresent });
      // A new gateway subscribes on its (resumed) session; on a reconnect of this one mqtt.js sends nothing for
      // topics it holds, and renews them itself when the broker lost the session. Retain Handling 1 (MQTT 5):
      // retained messages come with a new subscription only, not again with one the session kept, so a restarted
      // gateway is not sent each topic's retained message once more (a duplicate reading, a second dead letter of
      // one message); mqtt.js keeps the option for the subscriptions it renews.
      // A host application subscribes to its own STATE too, before it publishes it (Sparkplug 3.0).
      const topics = hostId ? [...this.topics(), sparkplugStateTopic(hostId)] : this.topics();
      client.subscribe(topics, { qos: 1, rh: 1 }, (error, granted) => {
        if (error) this.logger.error({ msg: 'MQTT subscribe failed', error: String(error) });
        const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
        if (refused.length > 0) this.logger.error({ msg: 'MQTT subscriptions refused', topics: refused });
        if (!error) {
          this.hasSubscribed = true;
          this.markSubscribed();
          if (hostId) {
            this.stateBornOn = client.stream;
            this.publishState(client, hostId, true, this.stateTimestamp);
          }
        }
      });
    });
    client.on('error', (error) => {
      this.lastError = error.message;
      this.logger.warn({ msg: 'MQTT error', error: error.message });
    });
    client.on('offline', () => this.logger.warn({ msg: 'MQTT offline; reconnecting' }));
    this.stream.onAlarm((event) => {
      this.publishAlarm(event);
      return Promise.resolve();
    });
    this.client = client;
    client.connect();
  }

  /**
   * A message left unacknowledged (its readings kept while the database or the runtime refused them)
   * holds one of the Receive Maximum slots the broker gives this connection, and the broker sends it
   * again only on a new connection: enough of them and the broker sends nothing more. So once what was
   * kept is stored and the database answers, the session is resumed on a new connection; the broker
   * then sends those messages again (their readings duplicates, acknowledged) and goes on with the rest.
   */
  private resumeWhenStored(client: MqttClient, stream: unknown): void {
    if (this.strandedWatch || this.closing) return;
    let probing = false;
    this.strandedWatch = setInterval(() => {
      if (this.closing || this.client !== client || client.stream !== stream) {
        // Shutting down, or already on a new connection, on which the broker sent them again.
        clearInterval(this.strandedWatch);
        this.strandedWatch = undefined;
        return;
      }
      if (probing || !client.connected || this.stream.keptRows() > 0) return;
      if (Date.now() - this.lastResumeAt < this.resumeBackoffMs) return;
      probing = true;
      this.records.ping().then(
        () => {
          probing = false;
          if (this.closing || this.client !== client || client.stream !== stream) return;
          clearInterval(this.strandedWatch);
          this.strandedWatch = undefined;
          const now = Date.now();
          this.resumeBackoffMs =
            now - this.lastResumeAt < 2 * this.resumeBackoffMs
              ? Math.min(MAX_RESUME_BACKOFF_MS, this.resumeBackoffMs * 2)
              : STRANDED_CHECK_MS;
          this.lastResumeAt = now;
          this.logger.log({ msg: 'MQTT session resumed on a new connection: unacknowledged messages come again' });
          client.reconnect();
        },
        () => (probing = false),
      );
    }, STRANDED_CHECK_MS);
    this.strandedWatch.unref();
  }

  /** Ends the connection without unsubscribing: the broker keeps queueing for this session while we are down. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.strandedWatch);
    this.strandedWatch = undefined;
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    this.closing = true;
    // A graceful end says so first (the DISCONNECT then discards the will): edge nodes waiting on this
    // host stop publishing. Never stamped before the birth, so a clock set back cannot make it look stale.
    const hostId = this.config.SPARKPLUG_HOST_ID;
    if (hostId && client.connected) {
      this.publishState(client, hostId, false, Math.max(Date.now(), this.stateTimestamp));
    }
    const grace = sleep(this.config.SHUTDOWN_GRACE_MS, 'timeout' as const, { ref: false });
    await Promise.race([Promise.all(this.handling), grace]);
    // A graceful end waits for our own QoS 1 publishes (alarms) to be acknowledged; a dead broker would not.
    if ((await Promise.race([client.endAsync().then(() => 'ended' as const), grace])) === 'timeout') {
      await client.endAsync(true);
    }
  }

  private topics(): string[] {
    return this.config.MQTT_TOPICS.split(',').filter((t) => t !== '');
  }

  /**
   * Sends the PUBACKs of the settled messages at the head of the arrival order, and lets mqtt.js read
   * on if it was held back. A message that came on an earlier connection is not acknowledged on this
   * one: the broker sends it again, and the asset's window drops the repeat as a duplicate.
   */
  private releaseAcknowledgements(client: MqttClient): void {
    while (this.deliveries.length > 0 && this.deliveries[0].settled) {
      const delivery = this.deliveries.shift()!;
      if (!delivery.acknowledge || delivery.qos === 0 || delivery.messageId === undefined) continue;
      if (delivery.stream !== client.stream || !client.connected) continue;
      this.corkUntilNextTurn(client);
      (client as unknown as PacketSender)._sendPacket({ cmd: 'puback', messageId: delivery.messageId }, (error) => {
        if (error) this.logger.warn({ msg: 'PUBACK not sent', error: error.message });
      });
    }
    const resume = this.resumeReading;
    if (resume && this.deliveries.length < this.config.MQTT_MAX_IN_FLIGHT) {
      this.resumeReading = undefined;
      resume();
    }
  }

  /**
   * Messages committed together settle together: their PUBACKs go out in one socket write at the
   * end of this turn of the event loop instead of one system call each.
   */
  private corkUntilNextTurn(client: MqttClient): void {
    const stream = client.stream as Partial<Pick<Writable, 'cork' | 'uncork'>>;
    if (this.corked || typeof stream.cork !== 'function') return;
    stream.cork();
    this.corked = true;
    setImmediate(() => {
      this.corked = false;
      stream.uncork?.();
    });
  }

  /** Handles one message; true when it may be acknowledged. Never throws. */
  private async onMessage(packet: IPublishPacket): Promise<boolean> {
    // Stopping: leave it unacknowledged, so the broker sends it to the next gateway session.
    if (this.closing) return false;
    const topic = packet.topic;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : Buffer.from(packet.payload);
    let kind: MqttMessageKind = 'unknown';
    let outcome: MqttOutcome = 'unacked';
    let error: string | undefined;
    this.answerOwnState(topic, payload);
    try {
      const result = await this.intake.handle(topic, payload);
      kind = result.kind;
      outcome = result.outcome;
      error = result.error;
      if (result.rebirth) this.askRebirth(result.rebirth);
    } catch (thrown) {
      this.logger.error({ msg: 'MQTT message not handled', topic, error: String(thrown) });
    }
    this.messages.inc({ kind, outcome });
    if (outcome === 'unacked') this.logger.error({ msg: 'MQTT message left unacknowledged', topic, error });
    return outcome !== 'unacked';
  }

  /**
   * Not awaited: the acknowledgement of a publish is read by the same packet loop that is waiting
   * for the message being handled, so awaiting it there would never return.
   */
  private publishAlarm(event: AlarmEvent): void {
    const client = this.client;
    if (!client) return;
    const topic = `${this.config.MQTT_ALARM_TOPIC_PREFIX}/${event.site}/${event.line}/${event.assetId}/alarms`;
    client.publish(topic, JSON.stringify(event), { qos: 1, retain: false }, (error) => {
      this.alarmsPublished.inc({ outcome: error ? 'failed' : 'ok' });
      if (error) this.logger.warn({ msg: 'alarm publish failed', topic, error: error.message });
    });
  }

  /** Sets the will of the next CONNECT to the STATE death, stamped now (mqtt.js reads it when it connects). */
  private registerStateWill(client: MqttClient, hostId: string): void {
    this.stateTimestamp = Date.now();
    client.options.will = {
      topic: sparkplugStateTopic(hostId),
      payload: Buffer.from(sparkplugStatePayload(false, this.stateTimestamp)),
      qos: 1,
      retain: true,
    };
  }

  /** Publishes the host's STATE, retained with QoS 1. Not awaited, as for alarms (see publishAlarm). */
  private publishState(client: MqttClient, hostId: string, online: boolean, timestamp: number): void {
    const topic = sparkplugStateTopic(hostId);
    client.publish(topic, sparkplugStatePayload(online, timestamp), { qos: 1, retain: true }, (error) => {
      if (error) this.logger.warn({ msg: 'Sparkplug STATE publish failed', topic, online, error: error.message });
    });
    this.logger.log({ msg: 'Sparkplug STATE published', topic, online, timestamp });
  }

  /**
   * Sparkplug 3.0 (message-flow-hid-sparkplug-state-message-delivered): a host that, after its birth, is
   * delivered a STATE of its own id saying online false publishes its birth again at once, with the timestamp
   * of its current CONNECT's will. Such an offline is not this host's: the will of a connection the broker
   * dropped or took over (which may land after the new connection's birth), a previous instance's retained
   * offline, another client; left standing, it tells every edge node that waits for this host to stop
   * publishing while the host is up. Not answered: an offline before this connection's birth (the birth comes
   * after it anyway), and the gateway's own at a graceful stop (`closing` is set before it is published).
   */
  private answerOwnState(topic: string, payload: Buffer): void {
    const hostId = this.config.SPARKPLUG_HOST_ID;
    const client = this.client;
    if (!hostId || !client || this.closing || topic !== sparkplugStateTopic(hostId)) return;
    const state = parseSparkplugState(payload);
    if (!state || state.online) return;
    if (!client.connected || this.stateBornOn !== client.stream) return;
    this.logger.warn({
      msg: 'Sparkplug STATE offline received for this host while online; birth published again',
      topic,
      offline: state.timestamp,
    });
    this.publishState(client, hostId, true, this.stateTimestamp);
  }

  /** Sparkplug's `Node Control/Rebirth` NCMD, so the node sends its birth certificates (and aliases) again. */
  private askRebirth({ group, edgeNode, reason }: NonNullable<IntakeResult['rebirth']>): void {
    const client = this.client;
    if (!client || !this.rebirthAsked.take(group, edgeNode)) return;
    this.logger.log({ msg: 'Sparkplug rebirth requested', group, edgeNode, reason });
    const now = Date.now();
    const codec = sparkplugCodec(SPARKPLUG_NAMESPACE);
    if (!codec) return;
    const payload = codec.encodePayload({
      timestamp: now,
      metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }],
    });
    client.publish(`${SPARKPLUG_NAMESPACE}/${group}/NCMD/${edgeNode}`, Buffer.from(payload), { qos: 0 }, (error) => {
      if (error) this.logger.warn({ msg: 'rebirth request failed', group, edgeNode, error: error.message });
    });
  }
}
