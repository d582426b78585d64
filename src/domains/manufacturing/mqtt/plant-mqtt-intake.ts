import { Logger } from '@nestjs/common';
import { AppError } from '../../../common/errors/app-error';
import { errorCodeOf } from '../../../database/storage-unavailable';
import { AssetRegistry } from '../assets/asset-registry.service';
import { Channel, PlantStream, RawReading, ReadingOutcome, ReadingsKept } from '../plant-stream.service';
import { noUsableValue } from '../reading-validation.util';
import { PlantRecordsRepository } from '../records/plant-records.repository';
import {
  decodeSparkplug,
  DecodedSparkplug,
  bringsBirthOf,
  followsEveryMessageOf,
  NULL_VALUE,
  parseSparkplugTopic,
  seqOutOfRange,
  SparkplugAliases,
  sparkplugReadings,
  SparkplugReadings,
  SparkplugTopic,
} from '../sparkplug.util';
import {
  deadLetterPayload,
  epochMsRefusal,
  ingestFailedPayload,
  MAX_READINGS_PER_MESSAGE,
  parseTelemetry,
  parseTelemetryTopic,
  TOO_MANY_READINGS,
} from './plant-telemetry.util';

export type MqttMessageKind = 'json' | 'sparkplug' | 'unknown';
/** `unacked`: not even its dead letter could be written; the broker keeps it and sends it again. */
export type MqttOutcome = 'ingested' | 'dead-lettered' | 'ignored' | 'unacked';

export interface IntakeResult {
  kind: MqttMessageKind;
  outcome: MqttOutcome;
  /**
   * A Sparkplug edge node to ask to rebirth: its aliases are unknown, a message of its sequence was missed, or
   * its NBIRTH was never seen (it was born before the gateway started or subscribed).
   */
  rebirth?: { group: string; edgeNode: string; reason: 'unknown-alias' | 'sequence-gap' | 'no-birth' };
  /** Why an `unacked` message's dead letter could not be written (for the log). */
  error?: string;
}

/** Dead letters named item by item for one message; the rest are counted in one more. */
const MAX_ITEM_LETTERS = 20;

interface DeadLetter {
  reason: string;
  detail: string;
  assetId: string | null;
  /** Its payload; the message's own (up to 4 KiB) when absent. */
  payload?: string;
}

/**
 * One MQTT message into the plant stream, whatever happens: readings are ingested, anything unusable
 * becomes a dead letter with its reason, and nothing throws (a bad message must not stop the stream).
 * Sparkplug B: the device id is the asset id (the edge node is the gateway's peer, its devices the
 * machines), so `spBv1.0/{group}/DDATA/{edge}/{assetId}`; node-level metrics feed no asset.
 */
export class PlantMqttIntake {
  private readonly logger = new Logger('PlantMqtt');
  private readonly aliases = new SparkplugAliases();

  /**
   * @param subscriptions the topic filters subscribed: an edge node's seq is followed only when they bring
   * every message of its sequence.
   */
  constructor(
    private readonly stream: PlantStream,
    private readonly registry: AssetRegistry,
    private readonly records: PlantRecordsRepository,
    private readonly subscriptions: readonly string[] = [],
    private readonly maxPayloadBytes = Infinity,
  ) {}

  async handle(topic: string, payload: Buffer): Promise<IntakeResult> {
    const sparkplug = parseSparkplugTopic(topic);
    const kind: MqttMessageKind = sparkplug ? 'sparkplug' : parseTelemetryTopic(topic) ? 'json' : 'unknown';
    if (payload.length === 0 && !isDeath(sparkplug)) {
      // A zero-length payload is how MQTT clears a topic's retained message (a SCADA engineer tidying the broker),
      // delivered to the topics' subscribers: no telemetry and no error. On a Sparkplug topic it is no payload
      // either (one decodes as an empty one: a birth of no metrics would wipe the node's aliases, a DATA of no seq
      // ask for a rebirth); a death is a death whatever it carries.
      this.logger.debug({ msg: 'MQTT message with an empty payload ignored (a retained message cleared)', topic });
      return { kind, outcome: 'ignored' };
    }
    let dead: DeadLetter[] = [];
    let result: IntakeResult = { kind, outcome: 'ingested' };
    if (payload.length > this.maxPayloadBytes) {
      // Refused unread: decoding it would hold the event loop for seconds (MQTT_MAX_PAYLOAD_BYTES). A Sparkplug
      // node is not asked for a rebirth; it would send the same message again.
      dead = [
        {
          reason: 'too-large',
          detail: `a payload of ${payload.length} bytes, over MQTT_MAX_PAYLOAD_BYTES (${this.maxPayloadBytes}): not read`,
          assetId: assetOf(topic, sparkplug),
        },
      ];
      return this.deadLettered(kind, topic, payload, result, dead);
    }
    let keptError: ReadingsKept | undefined;
    let refused: boolean | undefined;
    try {
      if (sparkplug) {
        ({ result, dead, kept: keptError, refused } = await this.sparkplug(sparkplug, topic, payload));
      } else if (kind === 'json') {
        ({ dead, kept: keptError, refused } = await this.json(topic, payload));
      } else {
        dead = [{ reason: 'unknown-topic', detail: 'neither factory/.../telemetry nor Sparkplug B', assetId: null }];
      }
    } catch (error) {
      // Failed before any reading was taken: the message is kept as a dead letter, not lost.
      dead.push(this.ingestFailed(topic, assetOf(topic, sparkplug), error, undefined));
    }
    // Readings accepted but not yet predicted are predicted later by the stream; the message is left
    // unacknowledged, so that a crash before then has the broker send it again.
    if (keptError) result = { ...result, outcome: 'unacked', error: withCause(keptError) };
    else if (refused && result.outcome === 'ingested') result = { ...result, outcome: 'dead-lettered' };
    if (dead.length === 0) return result;
    return this.deadLettered(kind, topic, payload, result, dead);
  }

  /** Stores a message's dead letters; the message is acknowledged only once they are stored. */
  private async deadLettered(
    kind: MqttMessageKind,
    topic: string,
    payload: Buffer,
    result: IntakeResult,
    dead: DeadLetter[],
  ): Promise<IntakeResult> {
    try {
      await this.records.addDeadLetters(
        dead.map((d) => ({
          receivedAt: new Date(),
          source: kind === 'sparkplug' ? 'sparkplug' : 'mqtt',
          channel: topic.slice(0, 512),
          assetId: d.assetId,
          reason: d.reason,
          detail: d.detail.slice(0, 1000),
          payload: d.payload ?? deadLetterPayload(payload, kind === 'sparkplug'),
        })),
      );
    } catch (error) {
      return { ...result, outcome: 'unacked', error: withCause(error) };
    }
    return { ...result, outcome: result.outcome === 'ingested' && dead.length > 0 ? 'dead-lettered' : result.outcome };
  }

  private async json(
    topic: string,
    payload: Buffer,
  ): Promise<{ dead: DeadLetter[]; kept?: ReadingsKept; refused?: boolean }> {
    const place = parseTelemetryTopic(topic)!;
    const asset = this.registry.find(place.assetId);
    if (!asset) {
      return { dead: [{ reason: 'unknown-asset', detail: `no asset ${place.assetId}`, assetId: place.assetId }] };
    }
    if (asset.site !== place.site || asset.line !== place.line) {
      // Alarms go back to the asset's own site and line; a message on another path is misrouted.
      return {
        dead: [
          {
            reason: 'asset-mismatch',
            detail: `asset ${asset.assetId} is on ${asset.site}/${asset.line}, not ${place.site}/${place.line}`,
            assetId: asset.assetId,
          },
        ],
      };
    }
    const parsed = parseTelemetry(payload);
    // Each dead letter keeps the message's payload (up to 4 KiB): a message of 10,000 broken items
    // gets the first few by name and one letter counting the rest, not 40 MB of copies.
    const dead: DeadLetter[] = parsed.errors.slice(0, MAX_ITEM_LETTERS).map((e) => ({
      reason: 'malformed',
      detail: `[${e.index}] ${e.reason}`,
      assetId: asset.assetId,
    }));
    if (parsed.errors.length > MAX_ITEM_LETTERS) {
      const rest = parsed.errors.slice(MAX_ITEM_LETTERS);
      dead.push({
        reason: 'malformed',
        detail: `${rest.length} more items refused, the first of them [${rest[0].index}] ${rest[0].reason}`,
        assetId: asset.assetId,
      });
    }
    const { kept, refused, failed } =
      parsed.readings.length > 0
        ? await this.ingest(asset.assetId, parsed.readings, { source: 'mqtt', name: topic })
        : { kept: undefined, refused: false, failed: undefined };
    if (failed) dead.push(failed);
    return { dead, kept, refused };
  }

  private async sparkplug(
    topic: SparkplugTopic,
    name: string,
    payload: Buffer,
  ): Promise<{ result: IntakeResult; dead: DeadLetter[]; kept?: ReadingsKept; refused?: boolean }> {
    const assetId = topic.device ?? null;
    // A host application's STATE is JSON, not a Sparkplug payload (the gateway's own, when it is the host).
    if (topic.messageType === 'STATE') return { result: { kind: 'sparkplug', outcome: 'ignored' }, dead: [] };
    let decoded: DecodedSparkplug | undefined;
    try {
      decoded = decodeSparkplug(payload);
    } catch (error) {
      // A death certificate may be the broker's will with an empty body: still a death.
      if (topic.messageType !== 'NDEATH' && topic.messageType !== 'DDEATH') {
        const ok = { result: { kind: 'sparkplug', outcome: 'ingested' } as IntakeResult };
        return { ...ok, dead: [{ reason: 'malformed', detail: (error as Error).message, assetId }] };
      }
    }
    // A seq past 255 is malformed, not a gap: dead-lettered as other malformed payloads are, asking no rebirth (the
    // node would be born again and go on numbering the same way) and leaving the node's aliases and sequence as
    // they were. A death is a death all the same: taken, its seq not followed.
    const badSeq = decoded && seqOutOfRange(topic.messageType, decoded);
    const seqLetters: DeadLetter[] = badSeq ? [{ reason: 'malformed', detail: badSeq, assetId }] : [];
    if (badSeq && topic.messageType !== 'DDEATH') {
      return { result: { kind: 'sparkplug', outcome: 'ingested' }, dead: seqLetters };
    }
    if (badSeq && decoded) decoded = { metrics: decoded.metrics, timestamp: decoded.timestamp };
    // A message of the node's sequence missed (lost, or yet to come out of order): the values carried forward
    // for its devices may be stale, so the node is asked to rebirth, its births giving every current value.
    // The message itself is taken all the same: its readings are real, and put in order by their timestamps.
    let rebirth: IntakeResult['rebirth'];
    // A node whose NBIRTH the gateway never saw (born before it started or subscribed): its seq cannot be
    // followed and the current values of tags reported by exception are unknown until each changes, so it is
    // asked to rebirth as a host application does on a node's first message; the message is taken as it comes.
    if (
      ['NDATA', 'DBIRTH', 'DDATA'].includes(topic.messageType) &&
      !this.aliases.hasNodeBirth(topic) &&
      bringsBirthOf(this.subscriptions, topic.group, topic.edgeNode)
    ) {
      rebirth = { group: topic.group, edgeNode: topic.edgeNode, reason: 'no-birth' };
    }
    const sequenced = ['NDATA', 'DBIRTH', 'DDATA', 'DDEATH'].includes(topic.messageType);
    if (
      sequenced &&
      this.aliases.followSequence(topic, decoded) === 'gap' &&
      followsEveryMessageOf(this.subscriptions, topic.group, topic.edgeNode)
    ) {
      rebirth = { group: topic.group, edgeNode: topic.edgeNode, reason: 'sequence-gap' };
    }
    const ignored = { result: { kind: 'sparkplug', outcome: 'ignored', rebirth } as IntakeResult, dead: [] };
    const ok = { result: { kind: 'sparkplug', outcome: 'ingested', rebirth } as IntakeResult, dead: [] };
    switch (topic.messageType) {
      case 'NDEATH':
      case 'DDEATH':
        this.aliases.onDeath(topic, decoded);
        return { ...ignored, dead: seqLetters };
      case 'NBIRTH':
        this.aliases.onBirth(topic, decoded!);
        return ignored; // node metrics belong to no asset
      case 'DBIRTH':
      case 'DDATA':
        break;
      case 'NDATA':
      case 'NCMD':
      case 'DCMD':
        return ignored;
    }
    if (topic.messageType === 'DBIRTH') this.aliases.onBirth(topic, decoded!);
    const asset = assetId === null ? undefined : this.registry.find(assetId);
    if (!asset) {
      // Births of other devices are remembered (the asset may be registered later) but feed nothing.
      if (topic.messageType === 'DBIRTH') return ignored;
      return { ...ok, dead: [{ reason: 'unknown-asset', detail: `no asset ${assetId}`, assetId }] };
    }
    const found = sparkplugReadings(topic, decoded!, this.aliases, { receivedAt: Date.now() });
    const dead: DeadLetter[] = [];
    const noValue = topic.messageType === 'DDATA' ? noUsableValueLetter(found, asset.sensors) : undefined;
    if (noValue) dead.push({ reason: 'invalid-value', detail: noValue, assetId: asset.assetId });
    // As a JSON message: a DDATA of metrics at as many times is as many readings, and was taken whatever its count.
    if (found.readings.length > MAX_READINGS_PER_MESSAGE) {
      found.readings = [];
      dead.push({ reason: 'malformed', detail: TOO_MANY_READINGS, assetId: asset.assetId });
    }
    // Sparkplug B times are epoch milliseconds too: a node that sends seconds is refused as JSON telemetry is.
    const readings = found.readings.filter((r) => {
      const refusal = epochMsRefusal(r.timestamp);
      if (refusal) dead.push({ reason: 'malformed', detail: refusal, assetId: asset.assetId });
      return !refusal;
    });
    this.historical(asset, found.historical);
    // A message with no usable value names its NaN and infinite tags in that letter.
    const nan = noValue ? undefined : notFiniteLetter(found.notFinite, asset.sensors);
    if (nan) dead.push({ reason: 'invalid-value', detail: nan, assetId: asset.assetId });
    const notNumeric = notNumericLetter(found.ignored, asset.sensors);
    if (notNumeric) dead.push({ reason: 'invalid-value', detail: notNumeric, assetId: asset.assetId });
    if (found.shared.length > 0) {
      // Not a rebirth: the node would send the same birth again.
      const list = found.shared.map((s) => `${s.alias} (${s.names.join(', ')})`).join(', ');
      dead.push({
        reason: 'unknown-alias',
        detail:
          `aliases ${list} were each given to more than one metric in the birth certificate; their values are not ` +
          "read (each metric needs its own alias), the message's other metrics taken",
        assetId: asset.assetId,
      });
    }
    if (found.unknown.length > 0) {
      dead.push({
        reason: 'unknown-alias',
        detail: `aliases ${found.unknown.join(', ')} were not in a birth certificate; rebirth requested`,
        assetId: asset.assetId,
      });
      rebirth = { group: topic.group, edgeNode: topic.edgeNode, reason: 'unknown-alias' };
    }
    const { kept, refused, failed } =
      readings.length > 0
        ? await this.ingest(asset.assetId, readings, { source: 'sparkplug', name })
        : { kept: undefined, refused: false, failed: undefined };
    if (failed) dead.push(failed);
    return { result: { kind: 'sparkplug', outcome: 'ingested', rebirth }, dead, kept, refused };
  }

  /**
   * Metrics of the asset's tags sent as is_historical (an edge node's store and forward after a connection loss) are
   * taken as history: counted, one reading per time, and logged, but not fed to the live window, where the spec says
   * a past value must not update the current one (nor raise a live alarm). Fed so, a backfill was behind the asset's
   * newest reading and dead-lettered as late, metric by metric. No readings history keeps them: the gateway stores
   * predictions, made in order from its live window.
   */
  private historical(
    asset: { assetId: string; sensors: ReadonlyArray<{ tag: string }> },
    found: SparkplugReadings['historical'],
  ): void {
    const tags = new Set(asset.sensors.map((s) => s.tag));
    const times = [...new Set(found.filter((h) => tags.has(h.metric)).map((h) => h.timestamp))].sort((a, b) => a - b);
    if (times.length === 0) return;
    this.stream.countHistorical(times.length);
    const at = (t: number) => (Math.abs(t) <= 8.64e15 ? new Date(t).toISOString() : String(t));
    this.logger.debug({
      msg: 'Sparkplug B historical metrics taken as history, not fed to the live window',
      assetId: asset.assetId,
      readings: times.length,
      from: at(times[0]),
      to: at(times[times.length - 1]),
    });
  }

  /**
   * Awaited before the message is acknowledged; the stream keeps each asset's readings in order.
   * Nothing before this call in `handle` may await: messages are handled side by side, and their
   * readings must reach the asset's window (synchronously, inside `ingest`) in arrival order.
   */
  private async ingest(
    assetId: string,
    readings: RawReading[],
    channel: Channel,
  ): Promise<{ kept?: ReadingsKept; refused: boolean; failed?: DeadLetter }> {
    const placed: { outcomes?: ReadingOutcome[] } = {};
    try {
      const summary = await this.stream.ingest(assetId, readings, channel, (outcomes) => (placed.outcomes = outcomes));
      // Readings refused one by one (a bad value, too late) have their dead letters from the stream.
      return { refused: summary.invalid.length + summary.late > 0 };
    } catch (error) {
      if (error instanceof ReadingsKept) return { kept: error, refused: false };
      return { refused: false, failed: this.ingestFailed(channel.name, assetId, error, placed.outcomes) };
    }
  }

  /**
   * The ingest-failed dead letter of a message whose ingest threw, logged (a bug with its stack). Once its
   * readings were taken (`outcomes`), the accepted ones are kept and predicted whatever failed after, so the
   * letter keeps not the message, which sent again would make them duplicates at best, but what became of
   * each reading: those not ingested named, the others counted. Before, it keeps the message.
   */
  private ingestFailed(
    topic: string,
    assetId: string | null,
    error: unknown,
    outcomes: ReadingOutcome[] | undefined,
  ): DeadLetter {
    // An AppError's detail is meant to be shown; a bug's own text (SQL, a driver's message) stays in the log.
    const code = errorCodeOf(error);
    const why =
      error instanceof AppError ? error.detail : `an internal error${code ? ` (SQLSTATE ${code})` : ''}, logged`;
    const log = { msg: 'MQTT message ingest failed', topic, assetId, readingsTaken: outcomes !== undefined };
    if (error instanceof AppError) this.logger.warn({ ...log, error: String(error) });
    else this.logger.error({ ...log, error: error instanceof Error ? (error.stack ?? String(error)) : String(error) });
    if (!outcomes)
      return { reason: 'ingest-failed', detail: `no reading of the message was ingested: ${why}`, assetId };
    const count = (...of: Array<ReadingOutcome['outcome']>) => outcomes.filter((o) => of.includes(o.outcome)).length;
    return {
      reason: 'ingest-failed',
      detail:
        `ingest failed once the message's readings were taken: ${count('accepted')} accepted (kept and predicted), ` +
        `${count('duplicate')} duplicates of readings taken before, ${count('late', 'invalid')} not ingested ` +
        `(named in the payload, refused with dead letters of their own unless those failed too); only those may ` +
        `need sending again: ${why}`,
      assetId,
      payload: ingestFailedPayload(outcomes),
    };
  }
}

/**
 * The detail of the dead letter naming the asset's tags a message sent as NaN or an infinity (taken as no value, the
 * message's other metrics kept), grouped by the value sent; undefined when none of them is a tag of the asset (others
 * feed nothing, as ever).
 */
export function notFiniteLetter(
  notFinite: SparkplugReadings['notFinite'],
  sensors: ReadonlyArray<{ tag: string }>,
): string | undefined {
  const tags = new Set(sensors.map((s) => s.tag));
  const named = notFinite.filter((n) => tags.has(n.metric));
  if (named.length === 0) return undefined;
  const at = (t: number) => (Math.abs(t) <= 8.64e15 ? new Date(t).toISOString() : String(t));
  const byValue = new Map<string, string[]>();
  for (const n of named) {
    const kind = String(n.value); // NaN, Infinity or -Infinity
    byValue.set(kind, [...(byValue.get(kind) ?? []), `${n.metric} at ${at(n.timestamp)}`]);
  }
  const lists = [...byValue].map(([kind, list]) => `value is ${kind}: ${list.join(', ')}`).join('; ');
  return (
    `${lists}; taken as no value (as a null metric), the tag keeping its last value, and the ` +
    "message's other metrics taken"
  );
}

/**
 * The detail of the dead letter of a DDATA that sends the asset's tags but not one usable value: each null (no value)
 * or NaN or infinite (taken as no value), with no reading and no historical metric of its tags beside them, in the
 * words of a JSON reading whose tag values are all null. Undefined when the message gives a reading (the stream refuses one with no usable value itself), is history, or
 * sends none of the asset's tags.
 */
export function noUsableValueLetter(
  found: SparkplugReadings,
  sensors: ReadonlyArray<{ tag: string }>,
): string | undefined {
  const tags = new Set(sensors.map((s) => s.tag));
  if (found.readings.length > 0 || found.historical.some((h) => tags.has(h.metric))) return undefined;
  const nulls = found.ignored.filter((i) => i.reason === NULL_VALUE && tags.has(i.metric)).map((i) => i.metric);
  const notFinite = found.notFinite.filter((n) => tags.has(n.metric)).map((n) => ({ tag: n.metric, value: n.value }));
  if (nulls.length === 0 && notFinite.length === 0) return undefined;
  return noUsableValue({ nulls, notFinite }, [...tags]);
}

/**
 * The detail of the dead letter naming the asset's tags a message sent as no numeric reading (a String, a DataSet, an
 * integer beyond 2^53: a node's datatype that does not match the tag's); undefined when there are none. A null is no
 * value, not a fault, and metrics that are no tag of the asset feed nothing, as ever. Such a tag was dropped with
 * no word: the asset's predictions went on with its last value, or none came while it had never been seen.
 */
export function notNumericLetter(
  ignored: SparkplugReadings['ignored'],
  sensors: ReadonlyArray<{ tag: string }>,
): string | undefined {
  const tags = new Set(sensors.map((s) => s.tag));
  const named = ignored.filter((i) => i.reason !== NULL_VALUE && tags.has(i.metric));
  if (named.length === 0) return undefined;
  const list = named.map((i) => `${i.metric} (${i.reason})`).join(', ');
  return (
    `not a numeric reading: ${list}; taken as no value, the tag keeping its last value, and the message's ` +
    'other metrics taken'
  );
}

/** NDEATH and DDEATH: a death certificate, which may come empty (the broker's will of a node that set it so). */
function isDeath(sparkplug: SparkplugTopic | undefined): boolean {
  return sparkplug?.messageType === 'NDEATH' || sparkplug?.messageType === 'DDEATH';
}

function assetOf(topic: string, sparkplug: SparkplugTopic | undefined): string | null {
  return sparkplug ? (sparkplug.device ?? null) : (parseTelemetryTopic(topic)?.assetId ?? null);
}

/**
 * An error for the log line of a message left unacknowledged, with the database's own error behind it: a
 * ReadingsKept says only that the store was unavailable, its cause (a timeout, a dropped connection, a
 * SQLSTATE) says why.
 */
export function withCause(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause === undefined) return String(error);
  const code = errorCodeOf(cause);
  const said = cause instanceof Error ? String(cause) : JSON.stringify(cause);
  return `${String(error)} (cause: ${said}${code === undefined ? '' : `, code ${code}`})`;
}
