import { Injectable, Logger } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { Subject } from 'rxjs';
import { MetricsService } from '../../common/metrics/metrics.service';
import { AppConfig } from '../../config/app-config';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { alarmDirection, AssetRegistry } from './assets/asset-registry.service';
import { AssetEntity } from './assets/asset.entity';
import { AssetWindow } from './asset-window.util';
import { AlarmState } from './hysteresis.util';
import { ColumnSpec, PlantModel, writeModelRow } from './manufacturing-models';
import { checkValue } from './reading-validation.util';
import { PlantRecordsRepository } from './records/plant-records.repository';
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
  metric: 'failure' | 'rul';
  value: number;
  threshold: number;
  at: string;
}

export interface IngestSummary {
  received: number;
  accepted: number;
  duplicates: number;
  late: number;
  invalid: Array<{ index: number; reason: string }>;
  predictions: number;
}

export interface AssetStatus {
  assetId: string;
  kind: string;
  model: { name: string; version: string };
  latest?: { at: string; failureProbability?: number; modes?: Record<string, number>; rul?: number };
  alarm: { active: boolean; since?: string };
  counts: {
    received: number;
    accepted: number;
    duplicates: number;
    late: number;
    invalid: number;
    predictions: number;
  };
}

/** One mapped tag, resolved once per asset: its model column and unit converter. */
interface SensorRoute {
  tag: string;
  input: string;
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
}

/**
 * Readings in, predictions and alarms out, whatever the channel (HTTP, MQTT, Sparkplug). Per asset:
 * tags mapped to model inputs, units converted, bad values refused to the dead-letter table, then
 * ordered, de-duplicated and windowed; released rows go to the runtime in one call per batch, and each
 * prediction moves the asset's alarm hysteresis.
 */
@Injectable()
export class PlantStream {
  private readonly logger = new Logger('PlantStream');
  private readonly runtimes = new Map<string, Runtime>();
  readonly alarms = new Subject<AlarmEvent>();
  private readonly alarmHooks: Array<(event: AlarmEvent) => Promise<void>> = [];
  private readonly readings: Counter<'outcome'>;
  private readonly predictions: Counter<'kind'>;
  private readonly readingAge: Histogram;

  constructor(
    private readonly registry: AssetRegistry,
    private readonly engine: InferenceEngine,
    private readonly records: PlantRecordsRepository,
    private readonly config: AppConfig,
    metrics: MetricsService,
  ) {
    this.readings = new Counter({
      name: 'gateway_manufacturing_readings_total',
      help: 'Readings received, by outcome (accepted, duplicate, late, invalid)',
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
    // A changed or removed asset starts over: its windows were built with the old mapping.
    registry.onChange((_asset, assetId) => this.runtimes.delete(assetId));
  }

  /** Called for every alarm raised or cleared, before it is streamed (storage, audit, MQTT publish). */
  onAlarm(hook: (event: AlarmEvent) => Promise<void>): void {
    this.alarmHooks.push(hook);
  }

  private runtime(assetId: string): Runtime {
    let rt = this.runtimes.get(assetId);
    if (!rt) {
      const asset = this.registry.get(assetId);
      const model = this.registry.model(asset.kind);
      rt = {
        asset,
        model,
        // The registry checked every mapping against the model, so each column exists and converts.
        sensors: asset.sensors.map((sensor) => {
          const column = model.columns.find((c) => c.source === sensor.input && c.oneHot === undefined)!;
          return { tag: sensor.tag, input: sensor.input, column, convert: unitConverter(sensor.unit, column.unit) };
        }),
        window: new AssetWindow({
          inputs: model.sensorSources,
          windowLength: model.windowLength,
          lateToleranceMs: this.config.MANUFACTURING_LATE_TOLERANCE_MS,
        }),
        alarm: new AlarmState({ ...asset.alarm, direction: alarmDirection(asset.kind) }),
        tail: Promise.resolve(),
        counts: { received: 0, accepted: 0, duplicates: 0, late: 0, invalid: 0, predictions: 0 },
      };
      this.runtimes.set(assetId, rt);
    }
    return rt;
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
    const values: Record<string, number> = {};
    let mapped = 0;
    for (const sensor of rt.sensors) {
      if (!(sensor.tag in reading.values)) continue;
      const { column } = sensor;
      const raw = reading.values[sensor.tag];
      const rawError = checkValue(sensor.tag, raw);
      if (rawError) return rawError;
      const value = sensor.convert(raw as number);
      const error = checkValue(sensor.input, value, { min: column.min, max: column.max, unit: column.unit });
      if (error) return error;
      values[sensor.input] = value;
      mapped++;
    }
    return mapped > 0
      ? values
      : `none of the asset's tags (${rt.sensors.map((s) => s.tag).join(', ')}) is in the reading`;
  }

  async ingest(assetId: string, readings: RawReading[], channel: Channel): Promise<IngestSummary> {
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
    readings.forEach((reading, index) => {
      rt.counts.received++;
      const mapped = this.mapReading(rt, reading);
      if (typeof mapped === 'string') {
        summary.invalid.push({ index, reason: mapped });
        rt.counts.invalid++;
        this.readings.inc({ outcome: 'invalid' });
        dead.push({ reason: 'invalid-value', detail: mapped, payload: reading });
        return;
      }
      const verdict = rt.window.push({ timestamp: reading.timestamp, values: mapped });
      if (verdict.accepted) {
        summary.accepted++;
        rt.counts.accepted++;
        this.readings.inc({ outcome: 'accepted' });
      } else if (verdict.reason === 'duplicate') {
        summary.duplicates++;
        rt.counts.duplicates++;
        this.readings.inc({ outcome: 'duplicate' });
      } else {
        summary.late++;
        rt.counts.late++;
        this.readings.inc({ outcome: 'late' });
        dead.push({
          reason: 'late',
          detail: `older than the asset's newest reading by more than ${this.config.MANUFACTURING_LATE_TOLERANCE_MS} ms`,
          payload: reading,
        });
      }
    });
    const released = rt.window.drain();
    // Inference starts at once, so an asset's consecutive batches can share a runtime call; its
    // results move the alarm state strictly in the order the readings were released.
    const inferred = this.infer(rt, released);
    const applied = rt.tail.then(() => inferred).then((outputs) => this.apply(rt, outputs));
    rt.tail = applied.then(
      () => undefined,
      () => undefined,
    );
    const stored = applied.then(async (rows) => {
      await this.records.addPredictions(rows);
      this.observeStored(rt, rows);
      return rows.length;
    });
    await Promise.all([this.deadLetters(assetId, channel, dead), stored]);
    summary.predictions = await stored;
    return summary;
  }

  private observeStored(rt: Runtime, rows: PredictionRow[]): void {
    if (rows.length === 0) return;
    rt.counts.predictions += rows.length;
    this.predictions.inc({ kind: rt.model.kind }, rows.length);
    const now = Date.now();
    for (const row of rows) this.readingAge.observe((now - row.at.getTime()) / 1000);
  }

  private async deadLetters(
    assetId: string,
    channel: Channel,
    dead: Array<{ reason: string; detail: string; payload: unknown }>,
  ): Promise<void> {
    if (dead.length === 0) return;
    await this.records.addDeadLetters(
      dead.map((d) => ({
        receivedAt: new Date(),
        source: channel.source,
        channel: channel.name.slice(0, 512),
        assetId,
        reason: d.reason,
        detail: d.detail.slice(0, 1000),
        payload: JSON.stringify(d.payload).slice(0, 4096),
      })),
    );
  }

  /** One runtime call for the rows (or windows) released: their timestamps and the model's outputs. */
  private async infer(
    rt: Runtime,
    released: ReturnType<AssetWindow['drain']>,
  ): Promise<{ at: number[]; out: Float32Array } | undefined> {
    const model = rt.model;
    const usable = model.windowLength > 1 ? released.filter((r) => r.window) : released;
    if (usable.length === 0) return undefined;
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
    return { at: usable.map((r) => r.timestamp), out: result.outputs[model.outputName].data as Float32Array };
  }

  /** The outputs of one runtime call, in order: latest values, alarm hysteresis, and the rows to store. */
  private async apply(rt: Runtime, outputs: { at: number[]; out: Float32Array } | undefined): Promise<PredictionRow[]> {
    if (!outputs) return [];
    const model = rt.model;
    const { out } = outputs;
    const perOut = out.length / outputs.at.length;
    const rows: PredictionRow[] = [];
    for (let i = 0; i < outputs.at.length; i++) {
      const at = new Date(outputs.at[i]);
      let value: number;
      let modes: Record<string, number> | null = null;
      if (model.kind === 'machine-failure') {
        value = out[i * perOut];
        modes = {};
        for (let k = 1; k < perOut; k++) modes[model.labels[k] ?? `p${k}`] = round(out[i * perOut + k]);
        rt.latest = { at: at.toISOString(), failureProbability: round(value), modes };
      } else {
        value = out[i * perOut];
        rt.latest = { at: at.toISOString(), rul: round(value) };
      }
      rows.push({ assetId: rt.asset.assetId, at, modelVersion: model.version, value: round(value), modes });
      const change = rt.alarm.update(value);
      if (change) await this.alarm(rt, change, value, at);
    }
    return rows;
  }

  private async alarm(rt: Runtime, state: 'raised' | 'cleared', value: number, at: Date): Promise<void> {
    const metric = rt.model.kind === 'turbofan-rul' ? 'rul' : 'failure';
    const event: AlarmEvent = {
      assetId: rt.asset.assetId,
      site: rt.asset.site,
      line: rt.asset.line,
      state,
      metric,
      value: round(value),
      threshold: state === 'raised' ? rt.asset.alarm.raiseAt : rt.asset.alarm.clearAt,
      at: at.toISOString(),
    };
    rt.alarmSince = state === 'raised' ? event.at : undefined;
    await this.records.addAlarm({
      assetId: event.assetId,
      state,
      metric,
      value: event.value,
      threshold: event.threshold,
      at,
    });
    for (const hook of this.alarmHooks) {
      await hook(event).catch((error: unknown) =>
        this.logger.warn({ msg: 'alarm hook failed', assetId: event.assetId, error: String(error) }),
      );
    }
    this.alarms.next(event);
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

function round(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}
