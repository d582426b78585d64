import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap, OnModuleInit } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { Observable, Subject } from 'rxjs';
import { AppError, ErrorCode } from '../../common/errors/app-error';
import { MetricsService } from '../../common/metrics/metrics.service';
import { DAY_MS } from '../../common/retention-rounds';
import { AppConfig } from '../../config/app-config';
import {
  errorCodeOf,
  isStorageOutage,
  orUnavailable,
  storageFaultOf,
  storageUnavailable,
} from '../../database/storage-unavailable';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import {
  AlarmData,
  AlarmLog,
  AlarmStreamItem,
  REPLAY_WINDOW_MS,
  resumeAlarms,
  SharedAlarmReads,
} from './alarm-resume.util';
import { alarmDirection, alarmKind, alarmMetric, AssetRegistry } from './assets/asset-registry.service';
import { AssetEntity } from './assets/asset.entity';
import { addOpening, AssetWindow, OpeningRow, ReadingIn, ReleasedReading } from './asset-window.util';
import { AlarmState } from './hysteresis.util';
import type { AssetStatusDto } from './manufacturing.dto';
import { ColumnSpec, PlantModel, writeModelRow } from './manufacturing-models';
import { checkValue, noUsableValue } from './reading-validation.util';
import { ALARM_METRICS, type AlarmCloseReason, type AlarmEntity, type AlarmMetric } from './records/alarm.entity';
import { PlantRecordsRepository, StoredInputs, StoredOpening } from './records/plant-records.repository';
import type { PredictionRow } from './records/prediction-writer';
import { unitConverter } from './units.util';

/** A reading as it arrives: its timestamp (epoch ms) and values by the plant's tag names. */
export interface RawReading {
  timestamp: number;
  values: Record<string, unknown>;
}

export interface Channel {
  source: 'http' | 'mqtt' | 'sparkplug';
  /** The topic or route it came by. */
  name: string;
}

export interface AlarmEvent {
  assetId: string;
  site: string;
  line: string;
  state: 'raised' | 'cleared';
  metric: AlarmMetric;
  /** The prediction that moved the alarm; null on one the gateway closed itself (see `reason`). */
  value: number | null;
  /** The threshold it crossed (raiseAt or clearAt); null on one the gateway closed itself. */
  threshold: number | null;
  at: string;
  /** The model version whose prediction moved the alarm (for one the gateway closed, the one that raised it). */
  model: { name: string; version: string };
  /**
   * Only on a raised alarm the gateway cleared itself, since no prediction of its model will: its asset was put as
   * another kind (`asset-kind-changed`) or removed (`asset-removed`).
   */
  reason?: AlarmCloseReason;
}

/** An asset's alarm on one metric as last stored; a raised one with where it was raised and by which model. */
interface StandingAlarm {
  active: boolean;
  since?: string;
  raised?: { site?: string; line?: string; model?: AlarmEvent['model'] };
}

/** An alarm as the stream gets it: `id` is its row in manufacturing_alarms, absent where the database refused it. */
export interface StreamedAlarm extends AlarmEvent {
  id?: string;
}

export interface IngestSummary {
  received: number;
  accepted: number;
  duplicates: number;
  late: number;
  invalid: Array<{ index: number; reason: string }>;
  predictions: number;
}

/** What became of one reading of an ingest once it was taken, in the order given. */
export interface ReadingOutcome {
  timestamp: number;
  outcome: 'accepted' | 'duplicate' | 'late' | 'invalid';
  /** Why a late or invalid reading was refused. */
  reason?: string;
  /** As sent. */
  values: Record<string, unknown>;
}

/** What GET .../status answers: the shape the OpenAPI document states (AssetStatusDto). */
export type AssetStatus = AssetStatusDto;

/** One mapped tag, resolved once per asset: its model column and unit converter. */
interface SensorRoute {
  tag: string;
  input: string;
  /** The unit the plant sends it in. */
  unit: string;
  column: ColumnSpec;
  convert: (value: number) => number;
}

interface Runtime {
  asset: AssetEntity;
  model: PlantModel;
  sensors: SensorRoute[];
  window: AssetWindow;
  alarm: AlarmState;
  alarmSince?: string;
  /** Inference and alarms of one asset run in order; assets run side by side (and batch in the runtime). */
  tail: Promise<void>;
  latest?: AssetStatus['latest'];
  counts: AssetStatus['counts'];
  /** Released rows not predicted yet (inference refused, or an alarm not stored): predicted first in the next call. */
  unpredicted: ReleasedReading[];
  /** Predicts the unpredicted rows again on its own (armRetry), whether or not the asset sends more. */
  retry: Retry;
  /** The alarm (state and time) whose audit row is written but which is not stored yet: not audited twice when retried. */
  alarmAudited?: string;
  /** The row that last failed inference alone (not for an outage): how often, and the model's runs then. */
  suspect?: { timestamp: number; failures: number; runs: number };
  /** Releases the held readings once the asset has been quiet for the late tolerance. */
  flushTimer?: NodeJS.Timeout;
  /** Timestamps of held readings kept in the database (manufacturing_held_readings), not forgotten there yet. */
  keptHeld: Set<number>;
  /** Opening rows (rows that gave no prediction) not kept in manufacturing_opening_rows yet. */
  opening: OpeningRow[];
  /** Writes the opening rows not kept (the database away) again on their own, whether or not the asset sends more. */
  openingRetry: Retry;
  /** The latest write of the opening rows, settled: each waits for the one before (see keepOpening). */
  openingWrite: Promise<void>;
  /** The latest write of the asset's predictions, settled: a call whose readings are all duplicates waits for it (run). */
  storing: Promise<void>;
}

/**
 * Stored predictions per asset read back at boot to rebuild its window: its last rows (as many as the window
 * holds) and the timestamps that tell a message the broker delivers again, after a crash, from a late reading.
 */
export const RESTORED_PREDICTIONS = 1000;

/** Released rows kept per asset while their prediction keeps failing; past it the oldest are dead-lettered. */
export const MAX_UNPREDICTED = 10_000;
/** First wait before unpredicted rows are tried again on their own; doubled up to 30 s while it keeps failing. */
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;

/**
 * A retry's wait, jittered to between 0.75 and 1.25 times `delayMs` by `random` (0 to 1): the assets an outage held,
 * and the gateways that share its database, do not all retry in the same moment once it ends.
 */
export function jittered(delayMs: number, random: () => number): number {
  return delayMs * (0.75 + random() / 2);
}

/**
 * A retry of work that failed for an outage: after 1 s, doubling up to every 30 s, jittered (jittered) by `random`.
 * One timer at a time, which holds no process open.
 */
class Retry {
  private timer?: NodeJS.Timeout;
  private delayMs = FIRST_RETRY_MS;

  constructor(private readonly random: () => number) {}

  /** Runs `work` after the next wait, unless a retry is armed already. */
  arm(work: () => void): void {
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        work();
      },
      jittered(this.delayMs, this.random),
    );
    this.timer.unref();
    this.delayMs = Math.min(MAX_RETRY_MS, this.delayMs * 2);
  }

  /** Stops the armed retry; the next wait stays as long. */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Stops it and starts the next wait over from the first: the work succeeded. */
  reset(): void {
    this.cancel();
    this.delayMs = FIRST_RETRY_MS;
  }
}
/** Failures of a row run alone, while its model runs other rows, before it is dead-lettered. */
export const MAX_INFERENCE_FAILURES = 5;

/**
 * Failures that pass by themselves: the runtime's queue full, a deadline passed, the gateway stopping, a
 * model not loaded yet, the database away. Any other (a run that failed, a tensor refused, a bug) may be
 * the rows' own doing.
 */
const OUTAGES = new Set<ErrorCode>([
  'AUDIT_UNAVAILABLE',
  'QUEUE_FULL',
  'DEADLINE_EXCEEDED',
  'SHUTTING_DOWN',
  'MODEL_NOT_READY',
  'STORAGE_UNAVAILABLE',
]);

/**
 * An ingest whose readings were accepted but not all predicted: the runtime refused them or the
 * database did not take their predictions or alarm. They are kept and predicted again, in order, before
 * the asset's next readings (or on their own after a pause), so a retried request or a redelivered
 * MQTT message finds them duplicates and loses nothing.
 */
export class ReadingsKept extends AppError {}

interface Settled {
  rows: PredictionRow[];
  error?: unknown;
}

/**
 * Readings in, predictions and alarms out, whatever the channel (HTTP, MQTT, Sparkplug). Per asset:
 * tags mapped to model inputs, units converted, bad values refused to the dead-letter table, then
 * ordered, de-duplicated and windowed; released rows go to the runtime in one call per batch, and each
 * prediction moves the asset's alarm hysteresis.
 */
@Injectable()
export class PlantStream implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('PlantStream');
  private readonly runtimes = new Map<string, Runtime>();
  /**
   * Each asset's alarm on each metric as last stored, so a new runtime (after a restart or an asset change) does not
   * raise it twice, and a model of another kind does not take up an alarm it did not raise (see closeStale).
   */
  private readonly alarmStates = new Map<string, Partial<Record<AlarmMetric, StandingAlarm>>>();
  /** Per asset, its closes of stale alarms (closeStale), one after the other. */
  private readonly closes = new Map<string, Promise<void>>();
  /** Closes audited but not stored yet (the database away), by asset and metric: not audited twice when retried. */
  private readonly closesAudited = new Map<string, AlarmEvent>();
  /** Per asset, a close that failed (the audit trail or the database away) and is tried again, with its next wait. */
  private readonly closeRetries = new Map<string, { timer?: NodeJS.Timeout; delayMs: number }>();
  /**
   * The random source of the retries' jitter (0 to 1): the close retries', and those of an asset's kept readings and
   * opening rows; a test sets it. The close retries' waits were fixed (1 s, 2 s, ... 30 s), so the gateways sharing a
   * database that came back retried their closes in the same moment.
   */
  retryRandom: () => number = Math.random;
  /** The closes of stale alarms found at boot (onApplicationBootstrap). */
  private bootCloses: Promise<void> = Promise.resolve();
  /**
   * Read at boot, taken by each asset's first runtime: its last stored rows, those that gave no prediction, and
   * the readings it held (see restore).
   */
  private restoredRows = new Map<string, StoredInputs[]>();
  private restoredOpening = new Map<string, StoredOpening[]>();
  private restoredHeld = new Map<string, ReadingIn[]>();
  /** When each asset's last stored alarm of each metric was (raised or cleared), read at boot, until its runtime is made. */
  private restoredAlarmAt = new Map<string, number>();
  /** Shutting down: every ingest releases all it holds at once. */
  private closing = false;
  readonly alarms = new Subject<StreamedAlarm>();
  /** The alarms being stored, then streamed, each in turn (see alarm). */
  private readonly alarmsStoring: Line = { last: Promise.resolve() };
  private readonly alarmsStreaming: Line = { last: Promise.resolve() };
  private readonly alarmHooks: Array<(event: AlarmEvent) => Promise<void>> = [];
  private readonly alarmAudits: Array<(event: AlarmEvent) => Promise<void>> = [];
  private readonly readings: Counter<'outcome'>;
  private readonly predictions: Counter<'kind'>;
  private readonly readingAge: Histogram;
  /** Runtime calls that succeeded, by model: a row that fails while its model runs others fails for its content. */
  private readonly modelRuns = new Map<string, number>();

  constructor(
    private readonly registry: AssetRegistry,
    private readonly engine: InferenceEngine,
    private readonly records: PlantRecordsRepository,
    private readonly config: AppConfig,
    metrics: MetricsService,
  ) {
    this.readings = new Counter({
      name: 'gateway_manufacturing_readings_total',
      help: 'Readings received, by outcome (accepted, duplicate, late, invalid; historical: Sparkplug B is_historical, taken as history, not fed to the live window)',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
    this.predictions = new Counter({
      name: 'gateway_manufacturing_predictions_total',
      help: 'Predictions stored, by asset kind (machine-failure per reading, turbofan-rul per window)',
      labelNames: ['kind'],
      registers: [metrics.registry],
    });
    this.readingAge = new Histogram({
      name: 'gateway_manufacturing_reading_age_seconds',
      help: "A reading's age (its own timestamp to now) when its prediction is stored: sensor, broker and gateway delay together; large for replayed history",
      buckets: [
        0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60,
        300,
      ],
      registers: [metrics.registry],
    });
    registry.onChange((asset, assetId, previous) => this.assetChanged(asset, assetId, previous));
    // A removed asset's opening rows and held readings are forgotten in the transaction that removes it: should the
    // database not take it, the asset is not removed (503). Before, they were forgotten after the removal was
    // committed, retried from memory while the database was away, so that a crash before they were left them undone.
    registry.onRemove((manager, assetId) => this.records.forgetRemoved(manager, assetId));
  }

  /** Follows an asset put or removed (the registry's listener): see the constructor. */
  private assetChanged(
    asset: AssetEntity | undefined,
    assetId: string,
    previous: AssetEntity | undefined,
  ): Promise<void> {
    const old = this.runtimes.get(assetId);
    // Put again with the same kind (its model): the window holds values by model input, in the model's
    // units, whatever tags and units feed them, so the asset keeps it, with what it holds, the readings it
    // released (a redelivered message stays a duplicate) and its alarm, and takes its new tags, units,
    // constants, place and alarm rule from its next reading on. Before, any PUT (an alarm threshold tuned,
    // a seed file or a configuration tool putting the same asset again) started it over: a
    // remaining-useful-life asset gave no prediction for a window's length, and readings sent again after
    // it were taken as new.
    if (asset && previous?.kind === asset.kind) {
      if (old) this.reconfigure(old, asset);
      // A close that failed before (see below) is tried again by the PUT sent again, as its 503 asked.
      return this.closeStale(assetId);
    }
    // Removed, or of another kind: it starts over, its window built for another model. What the old
    // runtime held is predicted with that model, unless the asset is gone.
    // Removed: what its window opened with and the readings it held were forgotten with it (see the constructor),
    // and made again, it is another incarnation, which a restart takes up none of the rows of. Put as another kind,
    // its new window's first row makes them needless (keepOpening), and a restart before takes none of another
    // model's rows.
    this.runtimes.delete(assetId);
    // Nor does it take up what the asset as it was left at the last restart (restore).
    this.restoredRows.delete(assetId);
    this.restoredOpening.delete(assetId);
    if (this.restoredHeld.delete(assetId) && asset) this.forgetHeld(assetId, Infinity);
    // Nor the old model's alarm (see runtime): no prediction of the new one (or of none) will clear it, so
    // once what the old runtime held has moved it, an alarm it left raised is closed, with the reason.
    const retired = old ? this.retire(old, asset !== undefined).then(() => old.tail) : Promise.resolve();
    return retired.then(() => this.closeStale(assetId)); // retire logs its own failure
  }

  async onModuleInit(): Promise<void> {
    for (const last of await this.records.lastAlarms()) {
      this.restoredAlarmAt.set(alarmKey(last.assetId, last.metric), last.at.getTime());
      if (last.state !== 'raised') continue;
      const { site, line, modelName, modelVersion } = last;
      this.setStanding(last.assetId, last.metric, {
        active: true,
        since: last.at.toISOString(),
        raised: {
          site: site ?? undefined,
          line: line ?? undefined,
          model: modelName === null || modelVersion === null ? undefined : { name: modelName, version: modelVersion },
        },
      });
    }
    this.restoredRows = await this.records.recentInputs(RESTORED_PREDICTIONS);
    this.restoredOpening = await this.records.recentOpening(RESTORED_PREDICTIONS);
    this.restoredHeld = await this.records.heldReadings();
  }

  /**
   * Readings held when the gateway last stopped (or crashed) are held again at once, and released once their
   * asset has been quiet for the late tolerance, whether or not it sends again; those of an asset since
   * removed are forgotten.
   */
  onApplicationBootstrap(): void {
    for (const assetId of [...this.restoredHeld.keys()]) {
      if (this.registry.find(assetId)) {
        this.armFlush(this.runtime(assetId));
      } else {
        this.restoredHeld.delete(assetId);
        this.forgetHeld(assetId, Infinity);
      }
    }
    // An alarm left raised by an asset put as another kind or removed while the gateway was down (the seed file),
    // or whose close a crash cut short, is closed now; once every provider is bootstrapped, MQTT's alarm hook too.
    const assetIds = [...this.alarmStates.keys()];
    this.bootCloses = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      await Promise.all(assetIds.map((assetId) => this.closeStale(assetId).catch(() => undefined))); // retried
    });
  }

  /** Once the closes of stale alarms under way (and those found at boot) are done or failed. */
  async alarmsClosed(): Promise<void> {
    await this.bootCloses;
    await Promise.all(this.closes.values());
  }

  /** Before the runtime and the database close: what every asset holds is released and predicted. */
  async beforeApplicationShutdown(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.runtimes.values()].map((rt) => this.retire(rt, true)));
    for (const retry of this.closeRetries.values()) clearTimeout(retry.timer);
    await this.alarmsClosed();
    // Ends every alarm stream (SSE) once the alarms of what was held are out: an open dashboard's connection
    // never goes idle, and the HTTP server's close waited on it until SHUTDOWN_GRACE_MS ran out (exit 1, the
    // shutdown hooks after it not run).
    this.alarms.complete();
  }

  private retire(rt: Runtime, predict: boolean): Promise<void> {
    clearTimeout(rt.flushTimer);
    rt.retry.cancel();
    // Retired with a prediction, its release below tries them once more; removed, they are needless.
    rt.openingRetry.cancel();
    // Removed: its held readings were forgotten with it.
    if (!predict) return Promise.resolve();
    return this.release(rt, true).then(
      () => undefined,
      (error: unknown) =>
        this.logger.error({
          msg: 'readings not predicted',
          assetId: rt.asset.assetId,
          rows: rt.unpredicted.length,
          error: String(error),
        }),
    );
  }

  /**
   * Accepted readings not in the database yet: rows kept for predicting again, predictions the database has
   * not taken yet, and rows that gave no prediction not kept yet (opening rows). Zero once everything accepted
   * is in the database.
   */
  keptRows(): number {
    let rows = this.records.keptPredictions;
    for (const rt of this.runtimes.values()) rows += rt.unpredicted.length + rt.opening.length;
    return rows;
  }

  /** Called for every alarm raised or cleared once it has taken effect, before it is streamed (MQTT publish); a failure is logged. */
  onAlarm(hook: (event: AlarmEvent) => Promise<void>): void {
    this.alarmHooks.push(hook);
  }

  /**
   * Writes an alarm's audit row before the alarm is stored or takes effect: should it throw (an AppError, such
   * as AUDIT_UNAVAILABLE), the alarm does not take effect and its reading is kept and predicted again.
   */
  auditAlarms(audit: (event: AlarmEvent) => Promise<void>): void {
    this.alarmAudits.push(audit);
  }

  private runtime(assetId: string): Runtime {
    let rt = this.runtimes.get(assetId);
    if (!rt) {
      const asset = this.registry.get(assetId);
      const model = this.registry.model(asset.kind);
      // The alarm as last stored, if its model is of this asset's kind: one raised before the asset was put as
      // another kind (since boot, before a restart, or by a seed file while the gateway was down) was the old
      // model's, and the new model would otherwise hold it raised, or clear one it never raised.
      const alarm = this.alarmStates.get(assetId)?.[alarmMetric(asset.kind)];
      rt = {
        asset,
        model,
        sensors: sensorRoutes(asset, model),
        window: new AssetWindow({
          inputs: model.sensorSources,
          windowLength: model.windowLength,
          lateToleranceMs: this.config.MANUFACTURING_LATE_TOLERANCE_MS,
        }),
        alarm: new AlarmState({ ...asset.alarm, direction: alarmDirection(asset.kind) }, alarm?.active ?? false),
        alarmSince: alarm?.since,
        tail: Promise.resolve(),
        counts: { received: 0, accepted: 0, duplicates: 0, late: 0, invalid: 0, predictions: 0 },
        unpredicted: [],
        retry: new Retry(() => this.retryRandom()),
        keptHeld: new Set(),
        opening: [],
        openingRetry: new Retry(() => this.retryRandom()),
        openingWrite: Promise.resolve(),
        storing: Promise.resolve(),
      };
      this.runtimes.set(assetId, rt);
      this.restore(rt);
    }
    return rt;
  }

  /** The asset as put again with the same kind: its runtime goes on under the new tags, units, constants, place and alarm rule. */
  private reconfigure(rt: Runtime, asset: AssetEntity): void {
    rt.asset = asset;
    rt.sensors = sensorRoutes(asset, rt.model);
    // Raised stays raised (and a streak towards raising goes on) under the new thresholds.
    const state = rt.alarm.save();
    rt.alarm = new AlarmState({ ...asset.alarm, direction: alarmDirection(asset.kind) }, state.active);
    rt.alarm.restore(state);
  }

  /**
   * An asset's first runtime since boot takes up where the last one left off: its window is rebuilt from the
   * inputs kept with its last stored predictions of the same model version and the rows before them that gave
   * none (manufacturing_opening_rows: a window not full yet, a reading whose tags were never all seen), so that
   * a windowed model predicts from the next reading on, however young the asset, and tags a reading lacks keep
   * their last values; and the readings it held are held again. Without this, after every restart a
   * remaining-useful-life asset gave no prediction for a window's length of readings (with only the
   * predictions, one with fewer than 59 cycles still did), and readings held within the late tolerance were
   * lost though acknowledged.
   */
  private restore(rt: Runtime): void {
    const assetId = rt.asset.assetId;
    const stored = this.restoredRows.get(assetId) ?? [];
    const opening = this.restoredOpening.get(assetId) ?? [];
    const held = this.restoredHeld.get(assetId);
    this.restoredRows.delete(assetId);
    this.restoredOpening.delete(assetId);
    this.restoredHeld.delete(assetId);
    const width = rt.model.sensorSources.length;
    // Newest first, as read, the two merged, the asset's own incarnation's alone (made again after it was removed,
    // none of the removed asset's rows, whatever their timestamps); the run of this model version's rows up to the
    // newest, back to the row its window opened with (a window started over: the asset put as another kind).
    const rows: Array<{ timestamp: number; row: number[] }> = [];
    for (let p = 0, o = 0; ;) {
      // At the same time, the opening row first: the mark a removed asset's window ended with, as removals left it
      // before incarnations were kept (no model version: no window takes it up).
      const fromOpening = o < opening.length && (p === stored.length || opening[o].at >= stored[p].at);
      const next = fromOpening ? opening[o++] : stored[p++];
      if (next === undefined || next.modelVersion !== rt.model.version || next.inputs?.length !== width) break;
      // Opening rows behind a full window's rows add nothing to it.
      if (fromOpening && rows.length >= rt.model.windowLength) break;
      if (rows.length === 0 || rows[rows.length - 1].timestamp !== next.at)
        rows.push({ timestamp: next.at, row: next.inputs });
      if (fromOpening && (next as StoredOpening).first) break;
    }
    rt.window.restore(rows.reverse());
    // The streak towards raising goes on from the predictions before the restart (after the last stored alarm, of this
    // model's run): an alarm that raises after 3 predictions past raiseAt was raised 2 readings late after a restart
    // between its second and third, and never while restarts came more often than its `consecutive` readings.
    const restoredKey = alarmKey(assetId, alarmMetric(rt.model.kind));
    const since = this.restoredAlarmAt.get(restoredKey) ?? -Infinity;
    this.restoredAlarmAt.delete(restoredKey);
    const run: number[] = [];
    for (const p of stored) {
      if (p.at <= since || p.modelVersion !== rt.model.version || p.inputs?.length !== width) break;
      run.push(p.value);
    }
    rt.alarm.resume(run);
    if (!held) return;
    let refused = false;
    for (const reading of held) {
      if (rt.window.push(reading).accepted) rt.keptHeld.add(reading.timestamp);
      else refused = true; // released and predicted before the restart: its row was not forgotten in time
    }
    if (refused) this.forgetHeld(assetId, rt.window.releasedThrough);
  }

  /**
   * Keeps the readings the asset holds that are not kept yet (only with a late tolerance: without one, every
   * accepted reading is released at once). Awaited before the readings are acknowledged.
   */
  private async keepHeld(rt: Runtime): Promise<void> {
    if (rt.window.size === 0) return;
    const toKeep = rt.window.heldReadings().filter((r) => !rt.keptHeld.has(r.timestamp));
    if (toKeep.length === 0) return;
    await this.records.holdReadings(rt.asset.assetId, rt.asset.incarnation, toKeep);
    for (const r of toKeep) rt.keptHeld.add(r.timestamp);
  }

  /** Forgets, in the database, the kept held readings of an asset at or before `through`; a failure is left for the next boot. */
  private forgetHeld(assetId: string, through: number): void {
    this.records.releaseHeld(assetId, through).catch((error: unknown) =>
      this.logger.warn({
        msg: 'released readings not forgotten yet; they are at the next boot',
        assetId,
        error: String(error),
      }),
    );
  }

  /**
   * Releases what the window lets go (all it holds with `flush`) and predicts it; once the predictions are
   * stored, the released readings that were kept as held are forgotten.
   */
  private release(rt: Runtime, flush: boolean): Promise<number> {
    const released = rt.window.drain(flush);
    for (const row of rt.window.takeOpening()) addOpening(rt.opening, row);
    const through = rt.window.releasedThrough;
    const kept = this.keepOpening(rt);
    kept.catch(() => undefined); // awaited below
    return this.run(rt, released).then(async (predictions) => {
      await kept;
      this.forgetReleased(rt, through);
      return predictions;
    });
  }

  /**
   * Keeps the opening rows the asset released and has not kept yet, for a restart to rebuild its window from
   * (restore); only while its window opens, so an asset past it writes nothing here. Awaited before the
   * readings are acknowledged. Rows not kept (the database away) are written again with the asset's next
   * release, and on their own (openingRetry) once the database is back: else an asset that sent nothing more
   * kept them only in memory, and a crash lost them though their predictions, written again by the prediction
   * writer, were stored, so that the restart took them for released (a resent batch a duplicate) with a window
   * that lacked them.
   */
  private keepOpening(rt: Runtime): Promise<void> {
    // One write at a time per asset, each after the one before: a call sent again while an earlier one's rows are
    // being written (its own readings duplicates, nothing of its own to write) is answered once they are written,
    // and should they fail, writes them again itself (they are back in rt.opening) or is refused as that call is.
    // Before, it was answered 200 at once while they were in memory alone.
    const kept = rt.openingWrite.then(() => this.keepOpeningNow(rt));
    rt.openingWrite = kept.then(
      () => undefined,
      () => undefined,
    );
    return kept;
  }

  private async keepOpeningNow(rt: Runtime): Promise<void> {
    if (rt.opening.length === 0) return;
    const rows = rt.opening;
    rt.opening = [];
    try {
      await this.records.keepOpening(rt.asset.assetId, rt.asset.incarnation, rt.model.version, rows);
    } catch (error) {
      const later = rt.opening;
      rt.opening = [];
      for (const row of [...rows, ...later]) addOpening(rt.opening, row);
      this.armOpeningRetry(rt);
      // Accepted and kept for the retry: a 503 saying so, an MQTT message left unacknowledged (before, an outage
      // here was a plain 503 and, over MQTT, an ingest-failed dead letter, the message acknowledged as taken).
      throw keptUnstored(
        error,
        'the rows that gave no prediction could not be kept yet; they are written when it recovers',
      );
    }
    if (rt.opening.length === 0) rt.openingRetry.reset();
  }

  /** Writes an asset's opening rows not kept yet again, from 1 s doubling up to every 30 s (jittered), until kept. */
  private armOpeningRetry(rt: Runtime): void {
    if (this.closing) return;
    rt.openingRetry.arm(() => {
      if (this.runtimes.get(rt.asset.assetId) !== rt) return;
      this.keepOpening(rt).catch((error: unknown) =>
        this.logger.warn({
          msg: 'rows that gave no prediction not kept yet; tried again',
          assetId: rt.asset.assetId,
          rows: rt.opening.length,
          error: String(error),
        }),
      );
    });
  }

  private forgetReleased(rt: Runtime, through: number): void {
    let any = false;
    for (const ts of rt.keptHeld) {
      if (ts <= through) {
        rt.keptHeld.delete(ts);
        any = true;
      }
    }
    if (any) this.forgetHeld(rt.asset.assetId, through);
  }

  /** Maps tags to inputs in the model's units; the reason when the reading cannot be used. */
  private mapReading(rt: Runtime, reading: RawReading): Record<string, number> | string {
    if (!Number.isFinite(reading.timestamp)) return 'timestamp: not a valid time';
    if (reading.timestamp < 0) return 'timestamp: before 1970-01-01';
    // A far-future reading would become the asset's newest and make every later reading late.
    const ahead = this.config.MANUFACTURING_FUTURE_TOLERANCE_MS;
    if (reading.timestamp > Date.now() + ahead) {
      return `timestamp: more than ${ahead} ms ahead of the gateway's clock (MANUFACTURING_FUTURE_TOLERANCE_MS)`;
    }
    // Older than the retention horizon, its prediction (and opening row) would be stored only for the purge to delete
    // it, at once or within its next round: the answer would count rows that are gone. Before, such history was
    // accepted, and a replay past MANUFACTURING_RETENTION_DAYS raced the purge.
    const days = this.config.MANUFACTURING_RETENTION_DAYS;
    const horizon = Date.now() - days * DAY_MS;
    if (days > 0 && reading.timestamp < horizon) {
      return (
        `timestamp: older than the retention horizon ${new Date(horizon).toISOString()} ` +
        `(MANUFACTURING_RETENTION_DAYS ${days}): its prediction would be purged as soon as stored`
      );
    }
    const values: Record<string, number> = {};
    const nulls: string[] = [];
    let mapped = 0;
    for (const sensor of rt.sensors) {
      // Own keys only: a tag named `constructor` is not in a reading that lacks it.
      if (!Object.hasOwn(reading.values, sensor.tag)) continue;
      const { column } = sensor;
      const raw = reading.values[sensor.tag];
      // A SCADA's null is no value for the tag in this reading (a sensor offline), as a Sparkplug B is_null metric
      // is: the tag keeps its last value. As a value, it refused the whole reading and the tags sent with it.
      if (raw === null) {
        nulls.push(sensor.tag);
        continue;
      }
      const rawError = checkValue(sensor.tag, raw);
      if (rawError) return rawError;
      const value = sensor.convert(raw as number);
      const spec = { min: column.min, max: column.max, unit: column.unit };
      const error = checkValue(sensor.input, value, spec, { value: raw as number, unit: sensor.unit });
      if (error) return error;
      values[sensor.input] = value;
      mapped++;
    }
    if (mapped > 0) return values;
    const tags = rt.sensors.map((s) => s.tag);
    return nulls.length > 0
      ? noUsableValue({ nulls }, tags)
      : `none of the asset's tags (${tags.join(', ')}) is in the reading`;
  }

  /**
   * Counts readings of an asset's tags taken as history (Sparkplug B is_historical): past values that feed neither its
   * live window nor its alarms, and that no readings history keeps (the gateway stores predictions, not readings).
   */
  countHistorical(readings: number): void {
    if (readings > 0) this.readings.inc({ outcome: 'historical' }, readings);
  }

  /**
   * `onPlaced` is told what became of each reading as soon as they are taken (before anything is awaited):
   * should the ingest fail after that, the accepted readings are kept and predicted all the same.
   */
  async ingest(
    assetId: string,
    readings: RawReading[],
    channel: Channel,
    onPlaced?: (outcomes: ReadingOutcome[]) => void,
  ): Promise<IngestSummary> {
    const rt = this.runtime(assetId);
    const summary: IngestSummary = {
      received: readings.length,
      accepted: 0,
      duplicates: 0,
      late: 0,
      invalid: [],
      predictions: 0,
    };
    const dead: Array<{ reason: string; detail: string; payload: unknown }> = [];
    const outcomes: ReadingOutcome[] = [];
    const placed = (reading: RawReading, outcome: ReadingOutcome['outcome'], reason?: string) => {
      if (onPlaced) outcomes.push({ timestamp: reading.timestamp, outcome, reason, values: reading.values });
    };
    // In timestamp order (the batch's first copy of a time first): a batch is taken at once, so its own order is no
    // arrival order. Pushed as sent, a batch newest first (a historian's export, a backlog flushed so) had every
    // reading but the newest refused as late, older than the one just before it.
    timeOrder(readings).forEach((index) => {
      const reading = readings[index];
      rt.counts.received++;
      const mapped = this.mapReading(rt, reading);
      if (typeof mapped === 'string') {
        placed(reading, 'invalid', mapped);
        summary.invalid.push({ index, reason: mapped });
        rt.counts.invalid++;
        this.readings.inc({ outcome: 'invalid' });
        dead.push({ reason: 'invalid-value', detail: mapped, payload: reading });
        return;
      }
      const verdict = rt.window.push({ timestamp: reading.timestamp, values: mapped });
      if (verdict.accepted) {
        placed(reading, 'accepted');
        summary.accepted++;
        rt.counts.accepted++;
        this.readings.inc({ outcome: 'accepted' });
      } else if (verdict.reason === 'duplicate') {
        placed(reading, 'duplicate');
        summary.duplicates++;
        rt.counts.duplicates++;
        this.readings.inc({ outcome: 'duplicate' });
      } else {
        summary.late++;
        rt.counts.late++;
        this.readings.inc({ outcome: 'late' });
        const detail = `older than the asset's newest reading by more than ${this.config.MANUFACTURING_LATE_TOLERANCE_MS} ms`;
        placed(reading, 'late', detail);
        dead.push({ reason: 'late', detail, payload: reading });
      }
    });
    summary.invalid.sort((a, b) => a.index - b.index);
    onPlaced?.(outcomes);
    const predicted = this.release(rt, this.closing);
    this.armFlush(rt);
    const [predictions] = await Promise.all([
      predicted,
      // Only an outage is a 503; any other failure is a bug, for the 500 path (logged with its stack).
      orUnavailable('refused readings could not be kept in the dead-letter table', () =>
        this.deadLetters(assetId, channel, dead),
      ),
      // Before they are acknowledged: a crash must not lose what an asset holds. Not kept, they are still held (and
      // predicted once the asset is quiet): kept, as readings the runtime refused are.
      this.keepHeld(rt).catch((error: unknown) => {
        throw keptUnstored(error, 'the readings held for the late tolerance could not be kept yet; they are held');
      }),
    ]);
    summary.predictions = predictions;
    return summary;
  }

  /** With a late tolerance, readings wait for newer ones; an asset that goes quiet has them released anyway. */
  private armFlush(rt: Runtime): void {
    clearTimeout(rt.flushTimer);
    rt.flushTimer = undefined;
    if (rt.window.size === 0) return;
    rt.flushTimer = setTimeout(() => {
      rt.flushTimer = undefined;
      if (this.runtimes.get(rt.asset.assetId) !== rt) return;
      this.release(rt, true).catch(() => undefined); // kept, retried and logged by run
    }, this.config.MANUFACTURING_LATE_TOLERANCE_MS);
    rt.flushTimer.unref();
  }

  /**
   * Predicts released rows and stores the predictions: the number stored. Inference starts at once, so
   * an asset's consecutive batches can share a runtime call; results move the alarm state strictly in
   * the order the readings were released, rows kept from an earlier failure first.
   */
  private run(rt: Runtime, released: ReleasedReading[]): Promise<number> {
    const usable = rt.model.windowLength > 1 ? released.filter((r) => r.window) : released;
    const inferred = this.infer(rt, usable);
    inferred.catch(() => undefined); // settled in order below
    const settled = rt.tail.then(() => this.settle(rt, usable, inferred));
    rt.tail = settled.then(
      () => undefined,
      () => undefined,
    );
    return settled.then(async ({ rows, error }) => {
      // The predictions of an earlier call still being written: a call sent again before they are committed (its
      // readings duplicates now) waits for them, and is refused as that call is should the database not take them
      // (earlierStored). Before, it was answered 200 at once, its readings counted as duplicates, while they were
      // in memory alone: the sender dropped them, and a crash before the writer's retry lost them.
      const earlier = rt.storing;
      if (rows.length > 0) {
        const storing = this.records.addPredictions(rows);
        rt.storing = storing.then(
          () => undefined,
          () => undefined,
        );
        try {
          await storing;
        } catch (cause) {
          // Any failure but an outage is a bug, for the 500 path (logged with its stack).
          const fault = storageFaultOf(cause);
          if (fault === undefined) throw cause;
          // The writer keeps the rows and writes them again when the database returns; worded as every
          // domain's storage outage, which says whether the disk is full or the database away.
          const { code, detail } = storageUnavailable(
            fault,
            'the predictions could not be stored yet; they are kept and stored when it recovers',
            cause,
          );
          throw new ReadingsKept(code, detail, { retryAfterSeconds: 1, cause });
        }
        this.observeStored(rt, rows);
      }
      await earlier;
      await this.earlierStored(rt);
      if (error instanceof RefusedWrite) throw error.error;
      if (error !== undefined) throw kept(error);
      return rows.length;
    });
  }

  /**
   * Predictions of the asset's earlier readings that the writer keeps (the database away when they were written) are
   * written now, or the call is refused as those readings were (ReadingsKept): a batch sent again, its readings
   * duplicates, was answered 200 while they were in memory alone, so a crash lost readings the caller had been told
   * were taken. Only those of the asset's own incarnation: an asset removed and made again has no readings in the
   * removed one's rows (its window started empty, a batch sent to the removed asset is new to it), and was answered
   * 503 until the writer had stored them.
   */
  private async earlierStored(rt: Runtime): Promise<void> {
    const { assetId, incarnation } = rt.asset;
    if (!this.records.keepsPredictionsOf(assetId, incarnation)) return;
    await this.records.retryKeptPredictions();
    if (!this.records.keepsPredictionsOf(assetId, incarnation)) return;
    throw new ReadingsKept(
      'STORAGE_UNAVAILABLE',
      'the predictions of earlier readings of this asset are not stored yet (the database did not take them); ' +
        'they are kept and stored when it recovers',
      { retryAfterSeconds: 1 },
    );
  }

  private async settle(rt: Runtime, usable: ReleasedReading[], inferred: Promise<Float32Array>): Promise<Settled> {
    const rows: PredictionRow[] = [];
    if (rt.unpredicted.length > 0) {
      const earlier = rt.unpredicted;
      rt.unpredicted = [];
      const first = await this.predict(rt, earlier, this.infer(rt, earlier));
      rows.push(...first.rows);
      if (first.left.length > 0) {
        await this.keep(rt, [...first.left, ...usable], first.error);
        return { rows, error: first.error };
      }
    }
    const own = await this.predict(rt, usable, inferred);
    rows.push(...own.rows);
    if (own.left.length > 0) {
      await this.keep(rt, own.left, own.error);
      return { rows, error: own.error };
    }
    rt.retry.reset();
    rt.suspect = undefined;
    return { rows };
  }

  /**
   * The rows' predictions in order, up to the first that could not be made or whose alarm could not be
   * stored: it and the rest are `left`. A runtime call that fails other than for an outage may fail for
   * one row's content, so its rows are halved until the row that fails alone is found, those before it
   * predicted; failedAlone says what becomes of that row.
   */
  private async predict(
    rt: Runtime,
    usable: ReleasedReading[],
    inferred: Promise<Float32Array>,
  ): Promise<Settled & { left: ReleasedReading[] }> {
    const rows: PredictionRow[] = [];
    let from = 0;
    let size = usable.length;
    let call = inferred;
    while (from < usable.length) {
      const group = from === 0 && size === usable.length ? usable : usable.slice(from, from + size);
      let out: Float32Array;
      try {
        out = await call;
      } catch (error) {
        if (isOutage(error)) return { rows, left: usable.slice(from), error };
        if (size > 1) {
          size = Math.ceil(size / 2);
          call = this.infer(rt, usable.slice(from, from + size));
          continue;
        }
        const next = usable.slice(from + 1, from + 2);
        const probe = next.length > 0 ? this.infer(rt, next) : undefined;
        const keptWith = await this.failedAlone(rt, usable[from], error, probe);
        if (keptWith !== undefined) return { rows, left: usable.slice(from), error: keptWith };
        from++;
        if (probe) call = probe; // size is 1: the row after it, already run
        continue;
      }
      const applied = await this.apply(rt, group, out);
      rows.push(...applied.rows);
      if (applied.left.length > 0) {
        return { rows, left: [...applied.left, ...usable.slice(from + group.length)], error: applied.error };
      }
      from += group.length;
      size = usable.length - from;
      if (size > 0) call = this.infer(rt, usable.slice(from));
    }
    return { rows, left: [] };
  }

  /**
   * A row whose runtime call failed alone, not for an outage. The failure counts only if the model ran
   * other rows fine since the row last failed (the row after it is run to see): a runtime that fails
   * everything is an outage, and its rows are held. Counted MAX_INFERENCE_FAILURES times, the row goes
   * to the dead-letter table, so that the asset's later readings flow again. Returns the error to keep
   * the row with, or undefined once it is dead-lettered.
   */
  private async failedAlone(
    rt: Runtime,
    row: ReleasedReading,
    error: unknown,
    probe: Promise<Float32Array> | undefined,
  ): Promise<unknown> {
    const model = modelKey(rt.model);
    const last =
      rt.suspect?.timestamp === row.timestamp
        ? rt.suspect
        : { timestamp: row.timestamp, failures: 0, runs: this.modelRuns.get(model) ?? 0 };
    await probe?.catch(() => undefined);
    const runs = this.modelRuns.get(model) ?? 0;
    const failures = last.failures + (runs > last.runs ? 1 : 0);
    rt.suspect = { timestamp: row.timestamp, failures, runs };
    if (failures < MAX_INFERENCE_FAILURES) return error;
    const reason = error instanceof AppError ? error.detail : String(error);
    try {
      await orUnavailable('a reading the model fails on could not be kept in the dead-letter table', () =>
        this.deadLetters(rt.asset.assetId, { source: 'inference', name: model }, [
          {
            reason: 'inference-failed',
            detail: `the model failed on this reading ${failures} times while it ran others: ${reason}`,
            payload: { timestamp: new Date(row.timestamp).toISOString(), values: valuesOf(rt.model, row) },
          },
        ]),
      );
    } catch (cause) {
      // The row is kept either way. An outage (a 503) is warned of by keep; anything else is a bug, for the
      // 500 path, logged by keep with its stack.
      return cause instanceof AppError ? cause : new RefusedWrite(cause, 'the inference-failed dead letter');
    }
    rt.suspect = undefined;
    this.logger.error({
      msg: 'reading dead-lettered: its model fails on it',
      assetId: rt.asset.assetId,
      at: new Date(row.timestamp).toISOString(),
      failures,
      error: String(error),
    });
    return undefined;
  }

  /** Holds the rows to predict again; past MAX_UNPREDICTED, the oldest are given up on (dead-lettered). */
  private async keep(rt: Runtime, rows: ReleasedReading[], error: unknown): Promise<void> {
    const over = rows.length - MAX_UNPREDICTED;
    rt.unpredicted = over > 0 ? rows.slice(over) : rows;
    const log = { msg: 'predictions deferred', assetId: rt.asset.assetId, rows: rt.unpredicted.length };
    // A bug is logged with its stack here too: over MQTT and on retries no 500 path logs it.
    if (error instanceof RefusedWrite) this.logger.error({ ...log, refused: error.what, error: stackOf(error.error) });
    else this.logger.warn({ ...log, error: String(error) });
    this.armRetry(rt);
    if (over > 0) await this.heldTooLong(rt, rows.slice(0, over), error);
  }

  /**
   * Accepted readings an asset can no longer hold go to the dead-letter table, with their time and values;
   * should it not take them either, the log says how many and from when to when.
   */
  private async heldTooLong(rt: Runtime, rows: ReleasedReading[], error: unknown): Promise<void> {
    const iso = (ms: number) => new Date(ms).toISOString();
    const given = {
      assetId: rt.asset.assetId,
      readings: rows.length,
      from: iso(rows[0].timestamp),
      to: iso(rows[rows.length - 1].timestamp),
    };
    // An AppError's detail is meant to be shown; a bug's own text (SQL, a driver's message) stays in the log.
    const why = error instanceof AppError ? error.detail : 'an internal error (logged)';
    try {
      await this.deadLetters(
        rt.asset.assetId,
        { source: 'inference', name: modelKey(rt.model) },
        rows.map((row) => ({
          reason: 'held-too-long',
          detail: `not predicted while the asset held ${MAX_UNPREDICTED} readings, the oldest given up on: ${why}`,
          payload: { timestamp: iso(row.timestamp), values: valuesOf(rt.model, row) },
        })),
      );
    } catch (cause) {
      this.logger.error({
        msg: 'readings lost: held too long, and not taken by the dead-letter table',
        ...given,
        error: String(cause),
      });
      return;
    }
    this.logger.warn({ msg: 'readings dead-lettered: held too long', ...given });
  }

  private armRetry(rt: Runtime): void {
    if (this.closing) return;
    rt.retry.arm(() => {
      if (this.runtimes.get(rt.asset.assetId) !== rt) return;
      this.run(rt, []).catch(() => undefined); // kept again and logged by keep
    });
  }

  private observeStored(rt: Runtime, rows: PredictionRow[]): void {
    if (rows.length === 0) return;
    rt.counts.predictions += rows.length;
    this.predictions.inc({ kind: rt.model.kind }, rows.length);
    const now = Date.now();
    for (const row of rows) this.readingAge.observe((now - row.at.getTime()) / 1000);
  }

  /**
   * `from`: the channel the readings came by, `inference` and the model for a reading it fails on, or
   * `storage` and the table that refused a row.
   */
  private async deadLetters(
    assetId: string,
    from: { source: Channel['source'] | 'inference' | 'storage'; name: string },
    dead: Array<{ reason: string; detail: string; payload: unknown }>,
  ): Promise<void> {
    if (dead.length === 0) return;
    await this.records.addDeadLetters(
      dead.map((d) => ({
        receivedAt: new Date(),
        source: from.source,
        channel: from.name.slice(0, 512),
        assetId,
        reason: d.reason,
        detail: d.detail.slice(0, 1000),
        payload: JSON.stringify(d.payload).slice(0, 4096),
      })),
    );
  }

  /** One runtime call for the rows (or, for a windowed model, the windows) to predict. */
  private async infer(rt: Runtime, usable: ReleasedReading[]): Promise<Float32Array> {
    const model = rt.model;
    if (usable.length === 0) return new Float32Array(0);
    const width = model.columns.length;
    const perItem = width * model.windowLength;
    const data = new Float32Array(usable.length * perItem);
    usable.forEach((r, i) => {
      if (model.windowLength === 1) {
        writeModelRow(model, r.row, rt.asset.constants, data, i * perItem);
      } else {
        const sensors = model.sensorSources.length;
        for (let t = 0; t < model.windowLength; t++) {
          writeModelRow(
            model,
            r.window!.subarray(t * sensors, (t + 1) * sensors),
            rt.asset.constants,
            data,
            i * perItem + t * width,
          );
        }
      }
    });
    const dims = model.windowLength > 1 ? [usable.length, model.windowLength, width] : [usable.length, width];
    const result = await this.engine.infer(model.name, model.version, {
      [model.inputName]: { dtype: 'float32', dims, data },
    });
    const key = modelKey(model);
    this.modelRuns.set(key, (this.modelRuns.get(key) ?? 0) + 1);
    return result.outputs[model.outputName].data as Float32Array;
  }

  /**
   * The outputs of one runtime call, in order: latest values, alarm hysteresis, and the rows to store.
   * A row whose alarm cannot be stored for now (the database away) stops here, the alarm state as before
   * it: that row and the rest are `left`, to be predicted again.
   */
  private async apply(
    rt: Runtime,
    usable: ReleasedReading[],
    out: Float32Array,
  ): Promise<Settled & { left: ReleasedReading[] }> {
    const model = rt.model;
    const perOut = out.length / usable.length;
    const rows: PredictionRow[] = [];
    for (let i = 0; i < usable.length; i++) {
      const at = new Date(usable[i].timestamp);
      // The alarm is judged by the value stored, shown and told (6 decimals), not the runtime's float32: 0.49999997
      // (its closest to 0.5) was stored and published as 0.5 yet did not raise an alarm at 0.5, and 0.29999998 as
      // 0.3 cleared one whose clearAt was 0.3, an alarm saying it cleared at its threshold.
      const value = round(out[i * perOut]);
      let modes: Record<string, number> | null = null;
      if (model.kind === 'machine-failure') {
        modes = {};
        for (let k = 1; k < perOut; k++) modes[model.labels[k] ?? `p${k}`] = round(out[i * perOut + k]);
      }
      const before = rt.alarm.save();
      const change = rt.alarm.update(value);
      if (change) {
        try {
          await this.alarm(rt, change, value, at);
        } catch (error) {
          rt.alarm.restore(before);
          return { rows, left: usable.slice(i), error: notStored(error, 'the alarm could not be stored') };
        }
      }
      rt.latest =
        model.kind === 'machine-failure'
          ? { at: at.toISOString(), failureProbability: value, modes: modes! }
          : { at: at.toISOString(), rul: value };
      rows.push({
        assetId: rt.asset.assetId,
        at,
        modelVersion: model.version,
        value,
        modes,
        inputs: Array.from(usable[i].row),
        incarnation: rt.asset.incarnation,
      });
    }
    return { rows, left: [] };
  }

  /**
   * Audits the alarm a prediction moved, then stores it and puts it in effect (takeEffect); throws, changing nothing,
   * while the audit trail or the database is away (the reading is then kept and predicted again).
   */
  private async alarm(rt: Runtime, state: 'raised' | 'cleared', value: number, at: Date): Promise<void> {
    const metric = alarmMetric(rt.model.kind);
    const event: AlarmEvent = {
      assetId: rt.asset.assetId,
      site: rt.asset.site,
      line: rt.asset.line,
      state,
      metric,
      value: round(value),
      threshold: state === 'raised' ? rt.asset.alarm.raiseAt : rt.asset.alarm.clearAt,
      at: at.toISOString(),
      model: { name: rt.model.name, version: rt.model.version },
    };
    // Audited first: an alarm a plant acts on never takes effect without its audit row. Should the row not be
    // written, this throws and the reading is predicted again; should the alarm then not be stored, its retry
    // does not write the row twice.
    const key = `${state} ${event.at}`;
    if (rt.alarmAudited !== key) {
      for (const audit of this.alarmAudits) await audit(event);
      rt.alarmAudited = key;
    }
    // Stored one at a time, and streamed in the order stored, whatever the asset: this gateway streams its
    // alarms in the order of their ids, so a dashboard that resumes after the last id it got (Last-Event-ID)
    // misses none of them. Two stored at once could take their ids in one order and be streamed in the other.
    await this.takeEffect(event, () => {
      rt.alarmAudited = undefined;
      rt.alarmSince = state === 'raised' ? event.at : undefined;
      const raised = state === 'raised' ? { site: event.site, line: event.line, model: event.model } : undefined;
      this.setStanding(event.assetId, metric, { active: state === 'raised', since: rt.alarmSince, raised });
    });
  }

  /**
   * Stores an audited alarm, then (`stored`) puts it in effect and tells the hooks (MQTT) and the stream; throws,
   * changing nothing, while the database is away. One the database refuses for its content (a constraint, a value it
   * will not take) would be refused on every try: it is dead-lettered instead (alarmRefused) and takes effect all the
   * same, so that the plant is told of it.
   */
  private async takeEffect(event: AlarmEvent, stored: () => void): Promise<void> {
    const storing = takeTurn(this.alarmsStoring);
    const streaming = takeTurn(this.alarmsStreaming);
    try {
      await storing.turn;
      let id: string | undefined;
      try {
        id = await this.records.addAlarm({
          assetId: event.assetId,
          state: event.state,
          metric: event.metric,
          value: event.value,
          threshold: event.threshold,
          at: new Date(event.at),
          site: event.site,
          line: event.line,
          modelName: event.model.name,
          modelVersion: event.model.version,
          reason: event.reason ?? null,
        });
      } catch (error) {
        if (error instanceof AppError || isStorageOutage(error)) throw error;
        await this.alarmRefused(event, error);
      } finally {
        storing.done();
      }
      stored();
      for (const hook of this.alarmHooks) {
        await hook(event).catch((error: unknown) =>
          this.logger.warn({ msg: 'alarm hook failed', assetId: event.assetId, error: String(error) }),
        );
      }
      await streaming.turn;
      this.alarms.next(id === undefined ? event : { ...event, id });
    } finally {
      storing.done();
      streaming.done();
    }
  }

  /**
   * Closes the alarms of an asset that no prediction will clear: raised on a metric its kind's model does not
   * predict (the asset put as another kind), or of an asset removed. Each is stored `cleared` with the reason,
   * audited first and published and streamed as any other. Closes of one asset run one after the other; should one
   * fail (the audit trail or the database away) it throws a 503 for the PUT or DELETE that asked, and is tried again
   * until it is done (and by the PUT sent again, and at the next boot).
   */
  private closeStale(assetId: string): Promise<void> {
    const closed = (this.closes.get(assetId) ?? Promise.resolve()).then(() => this.closeStaleNow(assetId));
    const settled = closed.then(
      () => undefined,
      () => undefined,
    );
    this.closes.set(assetId, settled);
    void settled.then(() => {
      if (this.closes.get(assetId) === settled) this.closes.delete(assetId);
    });
    return closed;
  }

  private async closeStaleNow(assetId: string): Promise<void> {
    const retry = this.closeRetries.get(assetId);
    clearTimeout(retry?.timer);
    const asset = this.registry.find(assetId);
    const kept = asset && alarmMetric(asset.kind);
    const standing = this.alarmStates.get(assetId) ?? {};
    for (const metric of ALARM_METRICS) {
      if (metric === kept || !standing[metric]?.active) continue;
      try {
        await this.closeAlarm(assetId, metric, asset ? 'asset-kind-changed' : 'asset-removed');
      } catch (error) {
        const delayMs = retry?.delayMs ?? FIRST_RETRY_MS;
        this.logger.warn({
          msg: 'a stale alarm is not closed yet; tried again',
          assetId,
          metric,
          error: String(error),
        });
        if (!this.closing) {
          const timer = setTimeout(
            () => void this.closeStale(assetId).catch(() => undefined),
            jittered(delayMs, this.retryRandom),
          );
          timer.unref();
          this.closeRetries.set(assetId, { timer, delayMs: Math.min(MAX_RETRY_MS, delayMs * 2) });
        }
        if (!(error instanceof AppError)) throw error;
        throw new AppError(
          error.code,
          `asset ${assetId} is ${asset ? 'put' : 'removed'}, but the ${metric} alarm its old model raised is not ` +
            `closed yet (it is closed once it can be): ${error.detail}`,
          { retryAfterSeconds: error.retryAfterSeconds ?? 1, cause: error },
        );
      }
    }
    this.closeRetries.delete(assetId);
  }

  /** Audits, stores, publishes and streams the `cleared` alarm that closes an asset's raised alarm on `metric`. */
  private async closeAlarm(assetId: string, metric: AlarmMetric, reason: AlarmCloseReason): Promise<void> {
    const key = `${assetId} ${metric}`;
    let event = this.closesAudited.get(key);
    if (!event) {
      const raised = this.alarmStates.get(assetId)?.[metric]?.raised;
      const asset = this.registry.find(assetId);
      // Where it was raised (and published) and by which model; a row stored before they were kept has neither.
      const site = raised?.site ?? asset?.site;
      const line = raised?.line ?? asset?.line;
      const model = raised?.model ?? this.modelOf(metric);
      if (site === undefined || line === undefined || model === undefined) {
        this.logger.error({ msg: 'a stale alarm stored before its site, line and model were kept is left', assetId });
        return;
      }
      // No prediction moved it: no value, no threshold crossed.
      const at = new Date().toISOString();
      event = { assetId, site, line, state: 'cleared', metric, value: null, threshold: null, at, model, reason };
      for (const audit of this.alarmAudits) await audit(event);
      this.closesAudited.set(key, event);
    }
    try {
      await this.takeEffect(event, () => {
        this.closesAudited.delete(key);
        this.setStanding(assetId, metric, { active: false });
      });
    } catch (error) {
      const fault = storageFaultOf(error);
      throw fault === undefined ? error : storageUnavailable(fault, 'the alarm could not be closed', error);
    }
    this.logger.log({ msg: 'alarm closed: no model of the asset clears it', assetId, metric, reason });
  }

  /** The model of a metric's kind, where loaded: what closes an alarm stored before its model was kept with it. */
  private modelOf(metric: AlarmMetric): AlarmEvent['model'] | undefined {
    try {
      const model = this.registry.model(alarmKind(metric));
      return { name: model.name, version: model.version };
    } catch {
      return undefined;
    }
  }

  private setStanding(assetId: string, metric: AlarmMetric, standing: StandingAlarm): void {
    this.alarmStates.set(assetId, { ...this.alarmStates.get(assetId), [metric]: standing });
  }

  /**
   * An alarm the database refused for its content goes to the dead-letter table (alarm-refused, source
   * `storage`, channel `manufacturing_alarms`, the SQLSTATE in its detail, the alarm as payload) and is
   * logged with its stack: a bug or a data problem. Throws only while the dead-letter table is away (the
   * row is then kept and predicted again); should that table refuse it too, the log is all that is left.
   */
  private async alarmRefused(event: AlarmEvent, error: unknown): Promise<void> {
    const { state, metric, value, threshold, at, model } = event;
    try {
      await orUnavailable('an alarm the database refused could not be kept in the dead-letter table', () =>
        this.deadLetters(event.assetId, { source: 'storage', name: 'manufacturing_alarms' }, [
          {
            reason: 'alarm-refused',
            detail:
              `the database refused this alarm (SQLSTATE ${errorCodeOf(error) ?? 'unknown'}); it was ${state} ` +
              'all the same (published, audited and streamed), but is not in the alarms table',
            payload: { state, metric, value, threshold, at, model },
          },
        ]),
      );
    } catch (cause) {
      if (cause instanceof AppError) throw cause;
      this.logger.error({
        msg: 'alarm refused by the database, and its dead letter too: lost but for this log',
        alarm: event,
        error: stackOf(error),
        deadLetterError: stackOf(cause),
      });
      return;
    }
    this.logger.error({ msg: 'alarm refused by the database: dead-lettered', alarm: event, error: stackOf(error) });
  }

  /**
   * The alarm stream after `after` (a Last-Event-ID: what was missed first), else from the newest stored alarm on:
   * this gateway's alarms as they are stored, and on a PostgreSQL server the other gateways' as they notify theirs.
   */
  alarmsAfter(after: bigint | undefined): Observable<AlarmStreamItem> {
    return resumeAlarms(this.alarms, this.alarmLog, after, this.records.alarmsStored(), this.alarmReads);
  }

  private readonly alarmLog: AlarmLog = {
    newestAfter: (after, limit, below) =>
      this.logged(async () =>
        (await this.records.alarmsAfter(String(after), limit, below === undefined ? undefined : String(below))).map(
          streamedAlarmOf,
        ),
      ),
    newestId: () => this.logged(async () => BigInt(await this.records.newestAlarmId())),
  };

  /**
   * The streams' reads on another gateway's notification, and their replays: one for all of them, and one for the
   * reconnects within REPLAY_WINDOW_MS of each other (a failover's), not one each (see SharedAlarmReads).
   */
  private readonly alarmReads = new SharedAlarmReads(this.alarmLog, REPLAY_WINDOW_MS);

  /** A replay that fails ends its stream with a comment; why is logged here. */
  private async logged<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      this.logger.warn({ msg: 'the alarm stream could not read the stored alarms', error: stackOf(error) });
      throw error;
    }
  }

  status(assetId: string): AssetStatus {
    const rt = this.runtime(assetId);
    return {
      assetId,
      kind: rt.asset.kind,
      model: { name: rt.model.name, version: rt.model.version },
      latest: rt.latest,
      alarm: { active: rt.alarm.active, since: rt.alarmSince },
      counts: { ...rt.counts },
    };
  }
}

/** The asset's tags, each to its model column and converter (the registry checked every mapping against the model). */
function sensorRoutes(asset: AssetEntity, model: PlantModel): SensorRoute[] {
  return asset.sensors.map((sensor) => {
    const column = model.columns.find((c) => c.source === sensor.input && c.oneHot === undefined)!;
    const convert = unitConverter(sensor.unit, column.unit);
    return { tag: sensor.tag, input: sensor.input, unit: sensor.unit, column, convert };
  });
}

function isOutage(error: unknown): boolean {
  return error instanceof AppError ? OUTAGES.has(error.code) : isStorageOutage(error);
}

/** A reading's values by model input, in the model's units. */
function valuesOf(model: PlantModel, row: ReleasedReading): Record<string, number> {
  return Object.fromEntries(model.sensorSources.map((source, i) => [source, row.row[i]]));
}

function modelKey(model: PlantModel): string {
  return `${model.name}@${model.version}`;
}

/** An error past the point where the readings were accepted: they are kept, and the caller is told so. */
function kept(error: unknown): ReadingsKept {
  if (error instanceof ReadingsKept) return error;
  if (error instanceof AppError) {
    return new ReadingsKept(error.code, `${error.detail}; the readings are kept and predicted when it recovers`, {
      retryAfterSeconds: error.retryAfterSeconds ?? 1,
      cause: error,
    });
  }
  return new ReadingsKept('INFERENCE_FAILED', 'the readings are kept and predicted when the runtime recovers', {
    retryAfterSeconds: 1,
    cause: error,
  });
}

/**
 * An accepted reading's row the database did not take: for an outage, a 503 that says what was not stored and that
 * the readings are kept (ReadingsKept: over MQTT the message is left unacknowledged); anything else, a bug, as it is.
 */
function keptUnstored(error: unknown, what: string): unknown {
  if (error instanceof AppError) return kept(error);
  const fault = storageFaultOf(error);
  if (fault === undefined) return error;
  const { code, detail } = storageUnavailable(fault, what, error);
  return new ReadingsKept(code, detail, { retryAfterSeconds: 1, cause: error });
}

/**
 * A write the database refused other than for an outage: a bug. The rows are kept all the same, but its
 * error is thrown as it is, for the 500 path that logs its stack, not turned into a 503 (see kept).
 */
class RefusedWrite {
  constructor(
    readonly error: unknown,
    /** What was not written, for the log. */
    readonly what: string,
  ) {}
}

/**
 * A write the database did not take: an outage is a 503 worded as every domain's (the fault, what was not
 * stored; never the driver's own text; kept() adds that the readings are kept, so no "retry"); anything
 * else is a bug (RefusedWrite).
 */
function notStored(error: unknown, what: string): unknown {
  if (error instanceof AppError) return error;
  const fault = storageFaultOf(error);
  return fault === undefined ? new RefusedWrite(error, what) : storageUnavailable(fault, what, error);
}

function stackOf(error: unknown): string {
  return error instanceof Error ? (error.stack ?? String(error)) : String(error);
}

/** The readings' indexes by timestamp, then by index (one that is no time first: it is refused as invalid anyway). */
function timeOrder(readings: readonly RawReading[]): number[] {
  const time = (i: number) => (Number.isFinite(readings[i].timestamp) ? readings[i].timestamp : -Infinity);
  return readings.map((_, i) => i).sort((a, b) => time(a) - time(b) || a - b);
}

function alarmKey(assetId: string, metric: AlarmMetric): string {
  return `${assetId}\u0000${metric}`;
}

function round(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

/**
 * A stored alarm as it was streamed (and as GET /v1/manufacturing/alarms lists it); a row stored before site, line and
 * model were kept has none of them.
 */
export function streamedAlarmOf(row: AlarmEntity): AlarmData & { id: string } {
  return {
    id: row.id,
    assetId: row.assetId,
    ...(row.site === null ? {} : { site: row.site }),
    ...(row.line === null ? {} : { line: row.line }),
    state: row.state,
    metric: row.metric,
    value: row.value,
    threshold: row.threshold,
    at: row.at.toISOString(),
    ...(row.modelName === null || row.modelVersion === null
      ? {}
      : { model: { name: row.modelName, version: row.modelVersion } }),
    ...(row.reason === null ? {} : { reason: row.reason }),
  };
}

/** Turns taken one after the other: `last` settles once the latest taken is done. */
interface Line {
  last: Promise<void>;
}

/** The next turn in `line`: `turn` settles once every turn taken before it is done; `done` ends it (more than once is once). */
function takeTurn(line: Line): { turn: Promise<void>; done: () => void } {
  const turn = line.last;
  let done!: () => void;
  const mine = new Promise<void>((resolve) => (done = resolve));
  // Ended early (its alarm not stored), it still holds the next turn until those before it are done.
  line.last = turn.then(() => mine);
  return { turn, done };
}
