import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Injectable, OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { AppError } from '../../../common/errors/app-error';
import { echoedKey } from '../../../common/echoed-key';
import { createValidationPipe, PROTOTYPE_NAMES } from '../../../common/errors/validation';
import { isStorableText } from '../../../common/storable-text';
import { AppConfig } from '../../../config/app-config';
import { InferenceEngine } from '../../../runtime/inference-engine.service';
import { thresholdsOutOfRange, validateAlarmRule } from '../hysteresis.util';
import { PlantModel, plantModelOf } from '../manufacturing-models';
import type { AlarmEntity } from '../records/alarm.entity';
import { canConvert } from '../units.util';
import { AssetDto, IDENTIFIER } from './asset.dto';
import { AssetEntity, AssetKind } from './asset.entity';
import { AssetRepository } from './asset.repository';

/** RUL alarms fire when the remaining life falls, failure alarms when the probability rises. */
export function alarmDirection(kind: AssetKind): 'above' | 'below' {
  return kind === 'turbofan-rul' ? 'below' : 'above';
}

/** What an asset's alarm is on: the failure probability (machine-failure) or the remaining useful life (turbofan-rul). */
export function alarmMetric(kind: AssetKind): AlarmEntity['metric'] {
  return kind === 'turbofan-rul' ? 'rul' : 'failure';
}

/** The kind whose alarms are on `metric` (alarmMetric's inverse). */
export function alarmKind(metric: AlarmEntity['metric']): AssetKind {
  return metric === 'rul' ? 'turbofan-rul' : 'machine-failure';
}

/**
 * An asset put (or removed: undefined), with the one it replaced (undefined when it is new). The PUT or DELETE waits
 * for what it returns, and fails with it: the asset is put or removed all the same.
 */
export type AssetListener = (
  asset: AssetEntity | undefined,
  assetId: string,
  previous: AssetEntity | undefined,
) => Promise<void>;

/**
 * What else goes when an asset is removed, done in the removal's own transaction (the rows kept for the asset
 * forgotten), so that the asset is removed only with it.
 */
export type RemovalWork = (manager: EntityManager, assetId: string) => Promise<void>;

/**
 * The plant's assets, held in memory for the stream and written through to the database. Every
 * asset is checked against its model's manifest: each sensor input mapped once, units convertible,
 * constants given, alarm thresholds coherent.
 */
@Injectable()
export class AssetRegistry implements OnModuleInit {
  private readonly assets = new Map<string, AssetEntity>();
  private readonly models = new Map<AssetKind, PlantModel>();
  private readonly listeners: Array<AssetListener> = [];
  private readonly removals: RemovalWork[] = [];

  constructor(
    private readonly repository: AssetRepository,
    private readonly engine: InferenceEngine,
    private readonly config: AppConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    for (const kind of ['machine-failure', 'turbofan-rul'] as const) {
      if (this.engine.versionsOf(kind).length > 0)
        this.models.set(kind, plantModelOf(kind, this.engine.describe(kind)));
    }
    for (const asset of await this.repository.all()) this.assets.set(asset.assetId, asset);
    if (this.config.MANUFACTURING_ASSETS_FILE) await this.seed(this.config.MANUFACTURING_ASSETS_FILE);
  }

  /**
   * Upserts the assets of a JSON file (an array of assets). A file that cannot be read or parsed, or a
   * bad entry, stops the boot naming MANUFACTURING_ASSETS_FILE (and the entry, and its fields).
   */
  private async seed(path: string): Promise<void> {
    const where = `MANUFACTURING_ASSETS_FILE ${path}`;
    let list: unknown;
    try {
      list = JSON.parse(readFileSync(path, 'utf8'));
    } catch (error) {
      throw new Error(`${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    if (!Array.isArray(list)) throw new Error(`${where}: expected a JSON array of assets`);
    // The rules of PUT /v1/manufacturing/assets/{assetId}, to the letter: the same pipe checks each entry.
    const pipe = createValidationPipe();
    for (const [i, raw] of list.entries()) {
      try {
        const dto = (await pipe.transform(raw, { type: 'body', metatype: AssetDto })) as AssetDto;
        await this.put(dto);
      } catch (error) {
        if (!(error instanceof AppError)) throw error;
        const fields = error.fields.map((f) => `${f.field}: ${f.reason}`).join('; ');
        // The pipe's detail lists its fields already; the model check's says what did not fit and the fields follow.
        const more = fields && fields !== error.detail ? ` (${fields})` : '';
        throw new Error(`${where}[${i}]: ${error.detail}${more}`, { cause: error });
      }
    }
  }

  model(kind: AssetKind): PlantModel {
    const model = this.models.get(kind);
    if (!model) throw new AppError('MODEL_NOT_FOUND', `no ${kind} model is loaded`);
    return model;
  }

  get(assetId: string): AssetEntity {
    const asset = this.assets.get(assetId);
    if (!asset) throw new AppError('NOT_FOUND', `no asset ${echoedKey(assetId)}`);
    return asset;
  }

  find(assetId: string): AssetEntity | undefined {
    return this.assets.get(assetId);
  }

  list(): AssetEntity[] {
    return [...this.assets.values()].sort((a, b) => a.assetId.localeCompare(b.assetId));
  }

  /** Called with the new asset (or undefined when removed) and the one it replaced, so the stream can follow it. */
  onChange(listener: AssetListener): void {
    this.listeners.push(listener);
  }

  /** `work` is done in the transaction that removes an asset (see RemovalWork). */
  onRemove(work: RemovalWork): void {
    this.removals.push(work);
  }

  async put(dto: AssetDto): Promise<AssetEntity> {
    const model = this.model(dto.kind);
    const fields = this.check(dto, model);
    if (fields.length > 0) {
      throw new AppError('VALIDATION_FAILED', `asset ${dto.assetId} does not fit model ${model.name}`, { fields });
    }
    const asset = new AssetEntity();
    asset.assetId = dto.assetId;
    asset.kind = dto.kind;
    asset.site = dto.site;
    asset.area = dto.area;
    asset.line = dto.line;
    asset.cell = dto.cell ?? null;
    asset.sensors = dto.sensors.map((s) => ({ input: s.input, tag: s.tag, unit: s.unit }));
    asset.constants = dto.constants ?? {};
    asset.alarm = { raiseAt: dto.alarm.raiseAt, clearAt: dto.alarm.clearAt, consecutive: dto.alarm.consecutive };
    asset.updatedAt = new Date();
    // Made (new, or removed and made again): a new incarnation, so that a restart takes up none of the rows kept by
    // the asset removed, whatever their timestamps. Put again: its own.
    asset.incarnation = this.assets.get(dto.assetId)?.incarnation ?? randomUUID();
    await this.repository.save([asset]);
    const previous = this.assets.get(asset.assetId);
    this.assets.set(asset.assetId, asset);
    await Promise.all(this.listeners.map((listener) => listener(asset, asset.assetId, previous)));
    return asset;
  }

  async remove(assetId: string): Promise<void> {
    // An id no asset can have (a NUL, say, which PostgreSQL would refuse) is not looked up.
    if (!IDENTIFIER.test(assetId)) throw new AppError('NOT_FOUND', `no asset ${echoedKey(assetId)}`);
    const removed = await this.repository.remove(assetId, async (manager) => {
      for (const work of this.removals) await work(manager, assetId);
    });
    if (!removed && !this.assets.has(assetId)) throw new AppError('NOT_FOUND', `no asset ${echoedKey(assetId)}`);
    const previous = this.assets.get(assetId);
    this.assets.delete(assetId);
    await Promise.all(this.listeners.map((listener) => listener(undefined, assetId, previous)));
  }

  private check(dto: AssetDto, model: PlantModel): Array<{ field: string; reason: string }> {
    const fields: Array<{ field: string; reason: string }> = [];
    const seen = new Set<string>();
    const tags = new Set<string>();
    dto.sensors.forEach((s, i) => {
      const column = model.columns.find((c) => c.source === s.input && c.oneHot === undefined);
      if (!column) {
        fields.push({
          field: `sensors[${i}].input`,
          reason: `${s.input} is not a sensor input of ${model.name} (${model.sensorSources.join(', ')})`,
        });
      } else if (!canConvert(s.unit, column.unit)) {
        fields.push({ field: `sensors[${i}].unit`, reason: `${s.unit} cannot be converted to ${column.unit}` });
      }
      if (!isStorableText(s.tag)) {
        fields.push({ field: `sensors[${i}].tag`, reason: 'must not contain NUL characters or unpaired surrogates' });
      } else if (PROTOTYPE_NAMES.has(s.tag)) {
        // A reading over HTTP loses such a key from its `values` on the way in (the validation pipe's PROTOTYPE_NAMES):
        // a reading whose only value had that tag was accepted and lost.
        const reason = `${s.tag} is a key readings over HTTP cannot carry (JSON bodies lose it on the way in)`;
        fields.push({ field: `sensors[${i}].tag`, reason });
      }
      if (seen.has(s.input)) fields.push({ field: `sensors[${i}].input`, reason: `${s.input} is mapped twice` });
      if (tags.has(s.tag)) fields.push({ field: `sensors[${i}].tag`, reason: `tag ${s.tag} is mapped twice` });
      seen.add(s.input);
      tags.add(s.tag);
    });
    for (const source of model.sensorSources) {
      if (!seen.has(source)) fields.push({ field: 'sensors', reason: `no sensor feeds ${source}` });
    }
    for (const source of model.constantSources) {
      const allowed = model.columns.filter((c) => c.source === source).map((c) => c.oneHot);
      const value = dto.constants?.[source];
      if (value === undefined || !allowed.includes(String(value))) {
        fields.push({ field: `constants.${source}`, reason: `must be one of ${allowed.join(', ')}` });
      }
    }
    // A constant the model does not take would be kept and never used: refused, so the plant knows.
    for (const key of Object.keys(dto.constants ?? {})) {
      if (!model.constantSources.includes(key)) {
        const takes = model.constantSources.length ? model.constantSources.join(', ') : 'none';
        fields.push({
          field: `constants.${key}`,
          reason: `not a constant input of ${model.name} (it takes: ${takes})`,
        });
      }
    }
    const alarmError = validateAlarmRule({ ...dto.alarm, direction: alarmDirection(dto.kind) });
    if (alarmError) fields.push({ field: 'alarm', reason: alarmError });
    // A threshold the model's output never reaches is an alarm that never raises (or never clears).
    const signal = `${model.name}'s ${dto.kind === 'turbofan-rul' ? 'remaining useful life' : 'failure probability'}`;
    for (const { field, reason } of thresholdsOutOfRange(dto.alarm, model.outputRange, signal)) {
      fields.push({ field: `alarm.${field}`, reason });
    }
    return fields;
  }
}
