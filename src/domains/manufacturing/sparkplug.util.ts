import { get } from 'sparkplug-payload';
import { org } from 'sparkplug-payload/lib/sparkplugPayloadProto';

/**
 * Sparkplug B (Eclipse Tahu `sparkplug-payload`) topics, payloads and alias state, turned into
 * timestamped readings keyed by metric name. Choices:
 * - Long values become numbers when exactly representable, else bigint (then refused as a reading:
 *   no sensor sends integers beyond 2^53, and float32 could not hold one anyway).
 * - Booleans become 0/1 (a tag such as "spindle running" can feed an indicator input); strings,
 *   bytes, datasets, templates and DateTime metrics are not readings and are listed as ignored.
 * - Sparkplug 3 says DATA metrics SHOULD NOT repeat their datatype; the library then loses the value,
 *   so such metrics are read from the raw protobuf and typed with the datatype from the last BIRTH.
 * - BIRTH metrics carry current values, so they are readings too (call onBirth first for aliases).
 * - is_historical metrics are past values (store and forward), never readings: listed as historical.
 */
export const SPARKPLUG_NAMESPACE = 'spBv1.0';

const MESSAGE_TYPES = ['NBIRTH', 'NDEATH', 'DBIRTH', 'DDEATH', 'NDATA', 'DDATA', 'NCMD', 'DCMD', 'STATE'] as const;
export type SparkplugMessageType = (typeof MESSAGE_TYPES)[number];

export interface SparkplugTopic {
  group: string;
  messageType: SparkplugMessageType;
  /** The edge node id; for STATE (`spBv1.0/STATE/{hostId}`) the host application id, group ''. */
  edgeNode: string;
  device?: string;
}

export interface SparkplugMetric {
  name?: string;
  alias?: number;
  /** Epoch milliseconds. */
  timestamp?: number;
  /** number (Long converted), bigint (beyond 2^53), boolean, string, null, or the library's object. */
  value: unknown;
  /** Sparkplug datatype name ('Float', 'Int64', ...); absent when the sender left it out. */
  type?: string;
  /** is_historical: a past value (store and forward after a connection loss), not the metric's current one. */
  historical?: boolean;
}

export interface DecodedSparkplug {
  timestamp?: number;
  seq?: number;
  metrics: SparkplugMetric[];
}

export interface SparkplugReadings {
  /** One reading per distinct timestamp, oldest first; values keyed by metric name. */
  readings: Array<{ timestamp: number; values: Record<string, number> }>;
  /** Aliases that no BIRTH defined (the node must be asked to rebirth); never guessed. */
  unknown: number[];
  /** Aliases the BIRTH gave more than one metric, with their names: not read, never guessed. */
  shared: Array<{ alias: number; names: readonly string[] }>;
  /** Metrics that are not numeric readings, with the reason (NULL_VALUE for a null: no value, not a fault). */
  ignored: Array<{ metric: string; reason: string }>;
  /**
   * Float and Double metrics that are NaN or infinite, taken as no value (as is_null): the spec gives neither a
   * meaning, and edge nodes send them for a sensor they cannot read (or a division by a zero span). As a value it
   * refused the whole reading at its time, so the other tags that changed with it (reported by exception, sent
   * once) were lost and kept their stale values.
   */
  notFinite: Array<{ metric: string; timestamp: number; value: number }>;
  /**
   * Metrics sent as is_historical, with their time: past values an edge node's store and forward sends after a
   * connection loss. The spec says they must not update the metric's current value, so they feed no reading (the
   * live window, its predictions and alarms). Fed as readings, they were behind the asset's newest and refused as
   * late, one dead letter each, a whole backfill of them.
   */
  historical: Array<{ metric: string; timestamp: number }>;
}

export class SparkplugDecodeError extends Error {}

const NODE_TYPES = new Set<SparkplugMessageType>(['NBIRTH', 'NDEATH', 'NDATA', 'NCMD']);
const DEVICE_TYPES = new Set<SparkplugMessageType>(['DBIRTH', 'DDEATH', 'DDATA', 'DCMD']);
const READING_TYPES = new Set<SparkplugMessageType>(['NBIRTH', 'DBIRTH', 'NDATA', 'DDATA']);

/** `spBv1.0/{group}/{type}/{edge}[/{device}]` or `spBv1.0/STATE/{hostId}`; undefined otherwise. */
export function parseSparkplugTopic(topic: string): SparkplugTopic | undefined {
  const parts = topic.split('/');
  if (parts[0] !== SPARKPLUG_NAMESPACE || parts.slice(1).some((p) => p === '' || /[+#]/.test(p))) return undefined;
  if (parts.length === 3 && parts[1] === 'STATE') return { group: '', messageType: 'STATE', edgeNode: parts[2] };
  const [, group, type, edgeNode, device] = parts;
  if (!isMessageType(type)) return undefined;
  if (parts.length === 4 && NODE_TYPES.has(type)) return { group, messageType: type, edgeNode };
  if (parts.length === 5 && DEVICE_TYPES.has(type)) return { group, messageType: type, edgeNode, device };
  return undefined;
}

/**
 * Whether a topic filter (MQTT 5 4.7: `+` one level, `#` this level and those below) matches a topic. A
 * shared subscription (`$share/{name}/{filter}`) matches nothing here: it shares the messages among its
 * subscribers, so one of them sees only some of a node's messages.
 */
export function topicFilterMatches(filter: string, topic: string): boolean {
  if (filter.startsWith('$share/')) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** The message types whose seq follows an NBIRTH's (NDEATH is the broker's will, without one). */
const SEQUENCED_TYPES = ['NBIRTH', 'NDATA', 'DBIRTH', 'DDATA', 'DDEATH'] as const;

/** Sparkplug B numbers an edge node's messages 0 to 255, then 0 again. */
export const MAX_SEQ = 255;

/**
 * Why a message of a type whose seq is followed (SEQUENCED_TYPES) is malformed by its seq: one past MAX_SEQ is no
 * message of the sequence (followed, it read as a gap and asked for a rebirth, which the node would answer and go on
 * numbering the same way). Undefined where its seq is in range, absent, or not read (NDEATH, commands).
 */
export function seqOutOfRange(type: SparkplugMessageType, payload: DecodedSparkplug): string | undefined {
  if (payload.seq === undefined || payload.seq <= MAX_SEQ) return undefined;
  if (!(SEQUENCED_TYPES as readonly string[]).includes(type)) return undefined;
  return `malformed Sparkplug B payload: payload seq ${payload.seq} is out of range (0 to ${MAX_SEQ})`;
}

/**
 * Whether the subscriptions bring every sequenced message of the edge node (of all its devices), so that a
 * gap in its seq is a message lost, not one left unsubscribed.
 */
export function followsEveryMessageOf(filters: readonly string[], group: string, edgeNode: string): boolean {
  return SEQUENCED_TYPES.every((type) => bringsType(filters, group, edgeNode, type));
}

/**
 * Whether the subscriptions bring the edge node's messages of one type (of all its devices, for a device type: the
 * device level is tried as U+0000, which no device id can be, MQTT topics holding no NUL, so only a wildcard there
 * counts).
 */
function bringsType(filters: readonly string[], group: string, edgeNode: string, type: SparkplugMessageType): boolean {
  const topic = `${SPARKPLUG_NAMESPACE}/${group}/${type}/${edgeNode}${DEVICE_TYPES.has(type) ? '/\u0000' : ''}`;
  return filters.some((filter) => topicFilterMatches(filter, topic));
}

/**
 * A Sparkplug 3.0 host application's STATE topic, `spBv1.0/STATE/{hostId}`: its birth (online) and death
 * (offline, also its MQTT will) are published there, retained with QoS 1.
 */
export function sparkplugStateTopic(hostId: string): string {
  return `${SPARKPLUG_NAMESPACE}/STATE/${hostId}`;
}

/**
 * A STATE payload (Sparkplug 3.0: UTF-8 JSON, not a Sparkplug payload). `timestamp` is epoch milliseconds:
 * for the will and the birth that follows it, both the time of the MQTT CONNECT; for the death published
 * at a graceful disconnect, the time of that disconnect.
 */
export function sparkplugStatePayload(online: boolean, timestamp: number): string {
  return JSON.stringify({ online, timestamp });
}

/**
 * A STATE payload read back: UTF-8 JSON with a boolean `online` and a `timestamp` of epoch milliseconds (other
 * members are let be). Undefined for anything else: an empty body (the retained STATE cleared), 2.2's
 * `ONLINE`/`OFFLINE`, JSON of another shape.
 */
export function parseSparkplugState(payload: Buffer): { online: boolean; timestamp: number } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const { online, timestamp } = json as Record<string, unknown>;
  if (typeof online !== 'boolean' || typeof timestamp !== 'number') return undefined;
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) return undefined;
  return { online, timestamp };
}

/** Whether the subscriptions bring the edge node's NBIRTH (asking it to rebirth is otherwise no use). */
export function bringsBirthOf(filters: readonly string[], group: string, edgeNode: string): boolean {
  return bringsType(filters, group, edgeNode, 'NBIRTH');
}

function isMessageType(text: string): text is SparkplugMessageType {
  return (MESSAGE_TYPES as readonly string[]).includes(text);
}

interface AliasScope {
  names: Map<number, string>;
  /**
   * Aliases the BIRTH gave more than one metric, with their names: not read (the spec asks each metric its own). Read
   * as the last metric given them, a DATA's value went to another tag silently (a process temperature fed the model as
   * the air temperature, plausible and predicted).
   */
  ambiguous: Map<number, string[]>;
  types: Map<string, string>;
  /** What the scope counts towards the table's limit (see weighOf). */
  weight: number;
}

interface NodeState {
  /** Whether the node's NBIRTH was seen (a DBIRTH alone remembers its device, not the node's session). */
  born: boolean;
  bdSeq?: number;
  /** The seq of the node's last message in its session (from its NBIRTH on); undefined before its NBIRTH. */
  seq?: number;
  /** '' is the node itself, otherwise the device id. */
  scopes: Map<string, AliasScope>;
  /** What the node's id and scopes count towards the table's limit (see weighOf). */
  size: number;
}

/**
 * Metric names (and scopes) the alias tables remember at most, all nodes together: some 70 MB with
 * 40-character names, each with an alias and a datatype (measured). Births come from whoever may publish
 * under spBv1.0, for devices that are assets or not (an asset may be registered later), so without a
 * limit a stream of births from new node or device ids would grow the tables for good. Past it the nodes
 * born longest ago are forgotten; their next DDATA by alias is dead-lettered as unknown and the node
 * asked to rebirth, as after a restart. A name or id counts once more for every NAME_UNIT characters it
 * has past the first NAME_UNIT - 1, so long names cannot make the limit a count of megabytes.
 */
export const MAX_REMEMBERED_METRICS = 500_000;

/** Characters a name or id may have before it counts twice (metric names are paths such as `Motor/Temp`). */
export const NAME_UNIT = 64;

/** What a name or id counts towards the limit beyond the one it counts as a name: one per started NAME_UNIT past the first. */
function extraUnits(text: string): number {
  return Math.floor(text.length / NAME_UNIT);
}

/**
 * A scope's weight: its metric names (each has an alias, a datatype or both), one for the scope itself,
 * and the length of each (its device id included), so that a birth of megabyte names counts as what it holds.
 */
function weighOf(scope: Omit<AliasScope, 'weight'>, device: string): number {
  let weight = 1 + extraUnits(device);
  const names = [...scope.types.keys(), ...scope.names.values(), ...[...scope.ambiguous.values()].flat()];
  for (const name of new Set(names)) weight += 1 + extraUnits(name);
  return weight;
}

/** Alias and datatype tables per (group, edge node, device), as the last BIRTH stated them. */
export class SparkplugAliases {
  /** In birth order: a node born again moves to the end, so the first is the one born longest ago. */
  private readonly nodes = new Map<string, NodeState>();
  private size = 0;

  constructor(private readonly maxRemembered = MAX_REMEMBERED_METRICS) {}

  /** Metric names and scopes remembered, all nodes together (memory check). */
  get remembered(): number {
    return this.size;
  }

  onBirth(topic: SparkplugTopic, payload: DecodedSparkplug): void {
    if (topic.messageType !== 'NBIRTH' && topic.messageType !== 'DBIRTH') {
      throw new Error(`onBirth needs an NBIRTH or DBIRTH topic, got ${topic.messageType}`);
    }
    const scope: AliasScope = { names: new Map(), ambiguous: new Map(), types: new Map(), weight: 0 };
    for (const m of payload.metrics) {
      if (m.name === undefined) continue;
      if (m.type !== undefined) scope.types.set(m.name, m.type);
      if (m.alias === undefined) continue;
      const given = scope.names.get(m.alias);
      const shared = scope.ambiguous.get(m.alias);
      if (shared) {
        if (!shared.includes(m.name)) shared.push(m.name);
      } else if (given !== undefined && given !== m.name) {
        scope.names.delete(m.alias);
        scope.ambiguous.set(m.alias, [given, m.name]);
      } else scope.names.set(m.alias, m.name);
    }
    scope.weight = weighOf(scope, topic.device ?? '');
    const key = nodeKey(topic);
    const old = this.nodes.get(key);
    this.nodes.delete(key);
    if (topic.messageType === 'NBIRTH') {
      // A new node session invalidates every device alias of the old one.
      const bdSeq = payload.metrics.find((m) => m.name === 'bdSeq')?.value;
      this.size -= old?.size ?? 0;
      const node: NodeState = {
        born: true,
        bdSeq: typeof bdSeq === 'number' ? bdSeq : undefined,
        seq: payload.seq,
        scopes: new Map([['', scope]]),
        size: extraUnits(key) + scope.weight,
      };
      this.nodes.set(key, node);
      this.size += node.size;
    } else {
      const node: NodeState = old ?? { born: false, scopes: new Map(), size: extraUnits(key) };
      if (!old) this.size += node.size;
      const device = topic.device ?? '';
      const replaced = node.scopes.get(device);
      const change = scope.weight - (replaced?.weight ?? 0);
      node.scopes.set(device, scope);
      node.size += change;
      this.size += change;
      this.nodes.set(key, node);
    }
    // The node just born stays, even alone past the limit: one message's worth.
    for (const [oldest, node] of this.nodes) {
      if (this.size <= this.maxRemembered || oldest === key) break;
      this.nodes.delete(oldest);
      this.size -= node.size;
    }
  }

  /**
   * Forgets a dead node (and its devices) or device. An NDEATH whose bdSeq differs from the one its
   * NBIRTH announced is the stale will of an earlier session and is ignored. Returns whether
   * anything was forgotten.
   */
  onDeath(topic: SparkplugTopic, payload?: DecodedSparkplug): boolean {
    const key = nodeKey(topic);
    const node = this.nodes.get(key);
    if (!node) return false;
    if (topic.messageType === 'NDEATH') {
      const bdSeq = payload?.metrics.find((m) => m.name === 'bdSeq')?.value;
      if (typeof bdSeq === 'number' && node.bdSeq !== undefined && bdSeq !== node.bdSeq) return false;
      this.size -= node.size;
      return this.nodes.delete(key);
    }
    if (topic.messageType === 'DDEATH') {
      const scope = node.scopes.get(topic.device ?? '');
      if (!scope) return false;
      node.size -= scope.weight;
      this.size -= scope.weight;
      return node.scopes.delete(topic.device ?? '');
    }
    throw new Error(`onDeath needs an NDEATH or DDEATH topic, got ${topic.messageType}`);
  }

  /**
   * Follows an edge node's message sequence: its NBIRTH's seq, then one more (modulo 256) for each NDATA,
   * DBIRTH, DDATA and DDEATH of its session. `gap` when this message's seq is not the next (a message lost,
   * such as a QoS 0 DATA dropped while a link flapped, or delivered out of order): the values the gateway
   * carries forward for the node's devices may be stale, and the node should be asked to rebirth (its
   * births carry every metric's current value). `unknown` when the gateway has not seen the node's NBIRTH
   * (or has forgotten it) or the payload has no seq. Call for every message of those types, in arrival order.
   */
  followSequence(topic: SparkplugTopic, payload: DecodedSparkplug | undefined): 'next' | 'gap' | 'unknown' {
    const node = this.nodes.get(nodeKey(topic));
    if (!node || node.seq === undefined) return 'unknown';
    const expected = (node.seq + 1) % (MAX_SEQ + 1);
    const seq = payload?.seq;
    if (seq === undefined) return 'unknown';
    node.seq = seq; // from here on, whatever came before
    return seq === expected ? 'next' : 'gap';
  }

  /**
   * Whether the node's NBIRTH of its current session was seen (and not forgotten since, by its NDEATH or
   * the table's limit). False for a node born before the gateway started or subscribed.
   */
  hasNodeBirth(topic: SparkplugTopic): boolean {
    return this.nodes.get(nodeKey(topic))?.born === true;
  }

  /** The metric's name: its own, else the one its alias was born with; undefined when unknown. */
  resolve(topic: SparkplugTopic, metric: { name?: string; alias?: number }): string | undefined {
    if (metric.name !== undefined) return metric.name;
    if (metric.alias === undefined) return undefined;
    return this.scope(topic)?.names.get(metric.alias);
  }

  /** The names the BIRTH gave an alias it gave more than one metric; undefined for another alias. */
  sharedAlias(topic: SparkplugTopic, alias: number): readonly string[] | undefined {
    return this.scope(topic)?.ambiguous.get(alias);
  }

  /** The datatype the BIRTH gave a metric name. */
  datatype(topic: SparkplugTopic, name: string): string | undefined {
    return this.scope(topic)?.types.get(name);
  }

  private scope(topic: SparkplugTopic): AliasScope | undefined {
    return this.nodes.get(nodeKey(topic))?.scopes.get(topic.device ?? '');
  }
}

/**
 * Which edge nodes were asked to rebirth lately, so that a burst of unknown aliases from one node is one
 * request per `intervalMs`. Only the requests of the last interval are remembered (oldest first, dropped
 * as they age), so DDATA from ever new node ids cannot grow it: it holds the nodes asked in one interval.
 * The clock is monotonic (performance.now): a wall clock set back would otherwise keep entries for good.
 */
export class RebirthRequests {
  /** Node key -> when it was last asked, in the order asked. */
  private readonly asked = new Map<string, number>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Nodes remembered (memory check). */
  get size(): number {
    return this.asked.size;
  }

  /** True when the node may be asked now (and records that it is); false within the interval of its last request. */
  take(group: string, edgeNode: string): boolean {
    const now = this.now();
    for (const [key, at] of this.asked) {
      if (now - at < this.intervalMs) break;
      this.asked.delete(key);
    }
    const key = `${group}/${edgeNode}`;
    if (this.asked.has(key)) return false;
    this.asked.set(key, now);
    return true;
  }
}

function nodeKey(topic: SparkplugTopic): string {
  return `${topic.group}/${topic.edgeNode}`; // '/' cannot occur inside a topic level
}

interface LongLike {
  low: number;
  high: number;
  toNumber(): number;
  toString(radix?: number): string;
}

function isLong(v: unknown): v is LongLike {
  if (typeof v !== 'object' || v === null) return false;
  const l = v as Partial<LongLike>;
  return typeof l.low === 'number' && typeof l.high === 'number' && typeof l.toNumber === 'function';
}

function fromLong(v: LongLike): number | bigint {
  const n = v.toNumber();
  return Number.isSafeInteger(n) ? n : BigInt(v.toString());
}

function integerField(v: unknown, what: string): number {
  const n = isLong(v) ? fromLong(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new SparkplugDecodeError(`malformed Sparkplug B payload: ${what} ${String(n)} is not a usable integer`);
  }
  return n;
}

function codec() {
  const sparkplug = get(SPARKPLUG_NAMESPACE);
  if (!sparkplug) throw new Error(`sparkplug-payload does not support ${SPARKPLUG_NAMESPACE}`);
  return sparkplug;
}

type RawPayload = org.eclipse.tahu.protobuf.Payload;
type RawMetric = org.eclipse.tahu.protobuf.Payload.IMetric & Pick<org.eclipse.tahu.protobuf.Payload.Metric, 'value'>;

type LibraryPayload = ReturnType<ReturnType<typeof codec>['decodePayload']>;

/** Fields of a metric other than its value, kept when its value cannot be read. */
const METRIC_FIELDS_KEPT = ['name', 'alias', 'timestamp', 'isHistorical', 'isTransient'] as const;

/**
 * sparkplug-payload refuses a whole payload for one metric value it cannot read: a DataSet with an Int8, Int16,
 * Int32, UInt8, UInt16 or DateTime column, for one (its DataSet decoder knows only some types), which edge nodes
 * such as Ignition's publish. Refused whole, a birth lost every alias with it: the node was asked to rebirth, sent
 * the same birth, and its devices fed nothing for good. Such a value is never a reading, so each metric the
 * library cannot read alone is taken as a null (name, alias and timestamp kept; its datatype is read from the raw
 * metric, since the library reads a null DataSet's value all the same and fails on it) and the payload decoded
 * again. Bytes that are no Sparkplug payload at all stay malformed, with the library's reason.
 */
function decodeWithoutUnreadableValues(buffer: Uint8Array, libraryError: unknown): LibraryPayload {
  const malformed = (err: unknown) =>
    new SparkplugDecodeError(`malformed Sparkplug B payload: ${err instanceof Error ? err.message : String(err)}`);
  const Payload = org.eclipse.tahu.protobuf.Payload;
  let raw: RawPayload;
  try {
    raw = Payload.decode(buffer);
  } catch {
    throw malformed(libraryError);
  }
  const readable = (metric: org.eclipse.tahu.protobuf.Payload.IMetric): boolean => {
    try {
      codec().decodePayload(Payload.encode(Payload.create({ metrics: [metric] })).finish());
      return true;
    } catch {
      return false;
    }
  };
  raw.metrics = raw.metrics.map((metric) => {
    if (readable(metric)) return metric;
    const kept: org.eclipse.tahu.protobuf.Payload.IMetric = { isNull: true };
    // Only the fields sent: a decoded message reads defaults (an empty name) for the others.
    for (const field of METRIC_FIELDS_KEPT) {
      if (Object.prototype.hasOwnProperty.call(metric, field)) Object.assign(kept, { [field]: metric[field] });
    }
    return Payload.Metric.create(kept);
  });
  try {
    return codec().decodePayload(Payload.encode(raw).finish());
  } catch {
    throw malformed(libraryError);
  }
}

/** Decodes one Sparkplug B payload; throws SparkplugDecodeError when the bytes are not one. */
export function decodeSparkplug(buffer: Uint8Array): DecodedSparkplug {
  let payload: LibraryPayload;
  try {
    payload = codec().decodePayload(buffer);
  } catch (err) {
    payload = decodeWithoutUnreadableValues(buffer, err);
  }
  let raw: RawPayload | undefined;
  const metrics = (payload.metrics ?? []).map((m, i): SparkplugMetric => {
    const out: SparkplugMetric = { value: null };
    if (typeof m.name === 'string') out.name = m.name;
    if (m.isHistorical === true) out.historical = true;
    if (m.alias !== undefined && m.alias !== null) out.alias = integerField(m.alias, 'metric alias');
    if (m.timestamp !== undefined && m.timestamp !== null) {
      out.timestamp = integerField(m.timestamp, 'metric timestamp');
    }
    const type = m.type as string | undefined; // undefined at run time when the datatype was omitted
    if (type !== undefined && INTEGER_TYPES.has(type)) {
      // Read from the field sent, whichever it is: the library reads a UInt32 from long_value only (Java Tahu's
      // choice), so one sent as the spec says (uint32, int_value: Python and C Tahu) read null and was ignored, and an
      // Int8-32 or UInt8/16 sent in long_value read 0 or null.
      out.type = type;
      raw ??= org.eclipse.tahu.protobuf.Payload.decode(buffer); // same bytes, already known to parse
      out.value = signed(rawValue(raw.metrics[i]), type);
    } else if (type !== undefined) {
      out.type = type;
      out.value = libraryValue(m.value);
    } else {
      raw ??= org.eclipse.tahu.protobuf.Payload.decode(buffer); // same bytes, already known to parse
      out.value = rawValue(raw.metrics[i]);
      // Sent with a datatype the library did not read back: a value it could not read (above).
      const datatype = raw.metrics[i]?.datatype;
      if (Object.prototype.hasOwnProperty.call(raw.metrics[i] ?? {}, 'datatype') && datatype) {
        out.type = org.eclipse.tahu.protobuf.DataType[datatype];
      }
    }
    return out;
  });
  const decoded: DecodedSparkplug = { metrics };
  if (payload.timestamp !== undefined && payload.timestamp !== null) {
    decoded.timestamp = integerField(payload.timestamp, 'payload timestamp');
  }
  if (payload.seq !== undefined && payload.seq !== null) decoded.seq = integerField(payload.seq, 'payload seq');
  return decoded;
}

/** The integer datatypes, whose value is read from whichever of int_value and long_value was sent. */
const INTEGER_TYPES = new Set(['Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64']);

function libraryValue(value: unknown): unknown {
  return isLong(value) ? fromLong(value) : value;
}

const SCALAR_FIELDS = ['intValue', 'floatValue', 'doubleValue', 'booleanValue', 'stringValue'] as const;

function isScalarField(field: string): field is (typeof SCALAR_FIELDS)[number] {
  return (SCALAR_FIELDS as readonly string[]).includes(field);
}

function rawValue(metric: RawMetric | undefined): unknown {
  if (!metric || metric.isNull) return null;
  const field = metric.value; // which member of the protobuf oneof is set
  if (field === 'longValue') return isLong(metric.longValue) ? fromLong(metric.longValue) : metric.longValue;
  if (field !== undefined && isScalarField(field)) return metric[field];
  return null;
}

/** Raw protobuf integers are unsigned; a signed datatype from the BIRTH gives them back their sign. */
function signed(value: unknown, type: string | undefined): unknown {
  if ((type === 'Int8' || type === 'Int16' || type === 'Int32') && typeof value === 'number') return value | 0;
  if (type === 'Int64' && (typeof value === 'number' || typeof value === 'bigint')) {
    const v = BigInt.asIntN(64, BigInt(value));
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  return value;
}

const NOT_READINGS = new Set(['String', 'Text', 'UUID', 'DateTime', 'DataSet', 'Bytes', 'File', 'Template']);

/** The reason an ignored metric gives when it is null (is_null, or a value the library cannot decode). */
export const NULL_VALUE = 'null value';

function numeric(value: unknown, type: string | undefined): number | string {
  if (type !== undefined && (NOT_READINGS.has(type) || type.startsWith('PropertySet'))) {
    return `${type} is not a numeric reading`;
  }
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value === null || value === undefined) return NULL_VALUE;
  if (typeof value === 'bigint') return `integer ${value} is beyond 2^53`;
  return `${typeof value} value is not a numeric reading`;
}

/**
 * Numeric metrics of a DATA or BIRTH message grouped into readings by timestamp (the metric's, else the
 * payload's, else `receivedAt`; for a BIRTH the payload's first). Other message types yield nothing.
 * A BIRTH states every metric's current value as of its publishing (its payload timestamp), while a metric's
 * own timestamp there is when the value last changed (Ignition sends it so): read by those, the rebirth the
 * gateway asks for after a missed message gave the missed value at its old time, behind the asset's newest
 * reading, refused as late, and the stale value it was asked for to replace stayed in every prediction after.
 */
export function sparkplugReadings(
  topic: SparkplugTopic,
  decoded: DecodedSparkplug,
  aliases: SparkplugAliases,
  opts: { receivedAt?: number } = {},
): SparkplugReadings {
  const result: SparkplugReadings = {
    readings: [],
    unknown: [],
    shared: [],
    ignored: [],
    notFinite: [],
    historical: [],
  };
  if (!READING_TYPES.has(topic.messageType)) return result;
  const byTime = new Map<number, Record<string, number>>();
  const unknown = new Set<number>();
  const birth = topic.messageType === 'NBIRTH' || topic.messageType === 'DBIRTH';
  for (const metric of decoded.metrics) {
    const name = aliases.resolve(topic, metric);
    if (name === undefined) {
      const names = metric.alias === undefined ? undefined : aliases.sharedAlias(topic, metric.alias);
      if (names) {
        if (!result.shared.some((s) => s.alias === metric.alias)) result.shared.push({ alias: metric.alias!, names });
      } else if (metric.alias !== undefined) unknown.add(metric.alias);
      else result.ignored.push({ metric: '(unnamed)', reason: 'metric has neither name nor alias' });
      continue;
    }
    if (name === '__proto__') {
      result.ignored.push({ metric: name, reason: 'reserved name' }); // would rewrite the object's prototype
      continue;
    }
    if (metric.historical) {
      const at = metric.timestamp ?? decoded.timestamp ?? opts.receivedAt;
      if (at !== undefined) result.historical.push({ metric: name, timestamp: at });
      else result.ignored.push({ metric: name, reason: 'no metric or payload timestamp' });
      continue;
    }
    const type = metric.type ?? aliases.datatype(topic, name);
    const value = numeric(metric.type === undefined ? signed(metric.value, type) : metric.value, type);
    if (typeof value === 'string') {
      result.ignored.push({ metric: name, reason: value });
      continue;
    }
    const timestamp = birth
      ? (decoded.timestamp ?? metric.timestamp ?? opts.receivedAt)
      : (metric.timestamp ?? decoded.timestamp ?? opts.receivedAt);
    if (timestamp === undefined) {
      result.ignored.push({ metric: name, reason: 'no metric or payload timestamp' });
      continue;
    }
    if (!Number.isFinite(value)) {
      result.notFinite.push({ metric: name, timestamp, value });
      continue;
    }
    let values = byTime.get(timestamp);
    if (!values) byTime.set(timestamp, (values = {}));
    values[name] = value;
  }
  result.readings = [...byTime.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([timestamp, values]) => ({ timestamp, values }));
  result.unknown = [...unknown];
  return result;
}
