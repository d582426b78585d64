import { setTimeout as sleep } from 'node:timers/promises';
import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { connect, IPublishPacket, MqttClient } from 'mqtt';
import { Counter } from 'prom-client';
import { get as sparkplugCodec } from 'sparkplug-payload';
import { MetricsService } from '../../../common/metrics/metrics.service';
import { AppConfig } from '../../../config/app-config';
import { AssetRegistry } from '../assets/asset-registry.service';
import { AlarmEvent, PlantStream } from '../plant-stream.service';
import { PlantRecordsRepository } from '../records/plant-records.repository';
import { SPARKPLUG_NAMESPACE } from '../sparkplug.util';
import { MqttMessageKind, MqttOutcome, PlantMqttIntake } from './plant-mqtt-intake';

/** At most one rebirth request per edge node in this long: a burst of unknown aliases is one problem. */
const REBIRTH_INTERVAL_MS = 5000;

/**
 * The plant's MQTT link, when MQTT_URL is set. A persistent session (fixed client id, clean: false)
 * subscribed with QoS 1, whose PUBACK is sent only after the message is ingested or dead-lettered:
 * mqtt.js calls `handleMessage` before it acknowledges and reads no further packet until it answers,
 * so a gateway that stops mid-message leaves it unacknowledged and the broker sends it again, and
 * messages are handled one at a time in arrival order. Alarms go back out as JSON (QoS 1).
 */
@Injectable()
export class PlantMqttService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('PlantMqtt');
  private readonly intake: PlantMqttIntake;
  private readonly messages: Counter<'kind' | 'outcome'>;
  private readonly alarmsPublished: Counter<'outcome'>;
  private client?: MqttClient;
  private closing = false;
  /** The message being handled; shutdown lets it finish so that its acknowledgement goes out. */
  private current: Promise<void> = Promise.resolve();
  private readonly rebirthAsked = new Map<string, number>();
  private markSubscribed!: () => void;
  /** Settles once the first subscription is granted (tests wait on it; nothing published before is queued for us). */
  readonly subscribed = new Promise<void>((resolve) => (this.markSubscribed = resolve));

  constructor(
    private readonly config: AppConfig,
    private readonly stream: PlantStream,
    registry: AssetRegistry,
    records: PlantRecordsRepository,
    metrics: MetricsService,
  ) {
    this.intake = new PlantMqttIntake(stream, registry, records);
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
      clean: false,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      manualConnect: true, // handleMessage must be in place before the first packet
    });
    client.handleMessage = (packet, callback) => {
      const work = this.onMessage(packet).then(
        (acknowledge) => callback(acknowledge ? undefined : new Error('not acknowledged')),
        (error: unknown) => callback(error as Error), // onMessage catches; this is a last resort
      );
      this.current = work;
    };
    client.on('connect', (connack) => {
      this.logger.log({ msg: 'MQTT connected', clientId: this.config.MQTT_CLIENT_ID, resumed: connack.sessionPresent });
      // Subscribing again on a resumed session is harmless and covers a broker that lost it.
      client.subscribe(this.topics(), { qos: 1 }, (error, granted) => {
        if (error) this.logger.error({ msg: 'MQTT subscribe failed', error: String(error) });
        const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
        if (refused.length > 0) this.logger.error({ msg: 'MQTT subscriptions refused', topics: refused });
        if (!error) this.markSubscribed();
      });
    });
    client.on('error', (error) => this.logger.warn({ msg: 'MQTT error', error: error.message }));
    client.on('offline', () => this.logger.warn({ msg: 'MQTT offline; reconnecting' }));
    this.stream.onAlarm((event) => {
      this.publishAlarm(event);
      return Promise.resolve();
    });
    this.client = client;
    client.connect();
  }

  /** Ends the connection without unsubscribing: the broker keeps queueing for this session while we are down. */
  async beforeApplicationShutdown(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    this.closing = true;
    const grace = sleep(this.config.SHUTDOWN_GRACE_MS, 'timeout' as const, { ref: false });
    await Promise.race([this.current, grace]);
    // A graceful end waits for our own QoS 1 publishes (alarms) to be acknowledged; a dead broker would not.
    if ((await Promise.race([client.endAsync().then(() => 'ended' as const), grace])) === 'timeout') {
      await client.endAsync(true);
    }
  }

  private topics(): string[] {
    return this.config.MQTT_TOPICS.split(',').filter((t) => t !== '');
  }

  /** Handles one message; true when it may be acknowledged. Never throws. */
  private async onMessage(packet: IPublishPacket): Promise<boolean> {
    // Stopping: leave it unacknowledged, so the broker sends it to the next gateway session.
    if (this.closing) return false;
    const topic = packet.topic;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : Buffer.from(packet.payload);
    let kind: MqttMessageKind = 'unknown';
    let outcome: MqttOutcome = 'unacked';
    try {
      const result = await this.intake.handle(topic, payload);
      kind = result.kind;
      outcome = result.outcome;
      if (result.rebirth) this.askRebirth(result.rebirth.group, result.rebirth.edgeNode);
    } catch (error) {
      this.logger.error({ msg: 'MQTT message not handled', topic, error: String(error) });
    }
    this.messages.inc({ kind, outcome });
    if (outcome === 'unacked') this.logger.error({ msg: 'MQTT message left unacknowledged', topic });
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

  /** Sparkplug's `Node Control/Rebirth` NCMD, so the node sends its birth certificates (and aliases) again. */
  private askRebirth(group: string, edgeNode: string): void {
    const client = this.client;
    const key = `${group}/${edgeNode}`;
    const now = Date.now();
    if (!client || now - (this.rebirthAsked.get(key) ?? 0) < REBIRTH_INTERVAL_MS) return;
    this.rebirthAsked.set(key, now);
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
