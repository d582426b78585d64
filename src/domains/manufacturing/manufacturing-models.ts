import type { ModelVersionInfo } from '../../runtime/inference-engine.service';
import type { AssetKind } from './assets/asset.entity';

/** One model input column: `(transform(raw[source]) - mean) / scale`, as the training code defines it. */
export interface ColumnSpec {
  source: string;
  /** `none`, or one-hot of a category (`one_hot:L`). */
  oneHot?: string;
  mean: number;
  scale: number;
  unit: string;
  min?: number;
  max?: number;
}

/** What the manufacturing domain reads from a model's manifest. */
export interface PlantModel {
  kind: AssetKind;
  name: string;
  version: string;
  inputName: string;
  outputName: string;
  columns: ColumnSpec[];
  /** Sources measured by sensors (numeric), in first-seen order. */
  sensorSources: string[];
  /** Sources that are categories set per asset (e.g. `Type`). */
  constantSources: string[];
  /** Readings per window: 1 for per-reading models. */
  windowLength: number;
  labels: string[];
  /** The values its output (what alarms compare) can take: [0, 1] for probabilities, else the manifest's min and max. */
  outputRange: { low: number; high: number };
  /** Per column, its index in `sensorSources`, or -1 for a one-hot column (precomputed for the per-reading path). */
  sensorIndex: Int32Array;
}

/** Reads and checks the manifest once: a model the domain cannot feed stops the boot. */
export function plantModelOf(kind: AssetKind, info: ModelVersionInfo): PlantModel {
  const m = info.manifest;
  const where = `${info.name}@${info.version}`;
  const features = m.preprocessing?.features;
  if (!Array.isArray(features) || features.length === 0) throw new Error(`${where}: no preprocessing.features`);
  const columns: ColumnSpec[] = features.map((raw: unknown, i) => {
    const f = raw as Record<string, unknown>;
    if (typeof f.source !== 'string' || typeof f.mean !== 'number' || typeof f.scale !== 'number' || f.scale === 0) {
      throw new Error(`${where}: preprocessing.features[${i}] needs source, mean and a non-zero scale`);
    }
    const transform = typeof f.transform === 'string' ? f.transform : 'none';
    const oneHot = /^one_hot:(.+)$/.exec(transform)?.[1];
    if (!oneHot && transform !== 'none') throw new Error(`${where}: transform ${transform} is not supported here`);
    return {
      source: f.source,
      oneHot,
      mean: f.mean,
      scale: f.scale,
      unit: typeof f.unit === 'string' ? f.unit : '',
      min: typeof f.min === 'number' ? f.min : undefined,
      max: typeof f.max === 'number' ? f.max : undefined,
    };
  });
  const input = m.inputs[0];
  const windowLength = input.shape.length === 3 ? Number(input.shape[1]) : 1;
  if (!(windowLength >= 1)) throw new Error(`${where}: the window length (input dim 1) must be fixed`);
  const sensorSources = [...new Set(columns.filter((c) => !c.oneHot).map((c) => c.source))];
  return {
    kind,
    name: info.name,
    version: info.version,
    inputName: input.name,
    outputName: m.outputs[0].name,
    columns,
    sensorSources,
    sensorIndex: Int32Array.from(columns.map((c) => (c.oneHot === undefined ? sensorSources.indexOf(c.source) : -1))),
    constantSources: [...new Set(columns.filter((c) => c.oneHot).map((c) => c.source))],
    windowLength,
    labels: Array.isArray(m.labels) ? m.labels.map(String) : [],
    outputRange: outputRangeOf(m.postprocessing),
  };
}

/** A sigmoid or softmax output is a probability; otherwise the manifest's postprocessing min and max, if any. */
function outputRangeOf(post: Record<string, unknown> | undefined): { low: number; high: number } {
  if (typeof post?.type === 'string' && /sigmoid|softmax/.test(post.type)) return { low: 0, high: 1 };
  const bound = (x: unknown, otherwise: number) => (typeof x === 'number' && Number.isFinite(x) ? x : otherwise);
  return { low: bound(post?.min, -Infinity), high: bound(post?.max, Infinity) };
}

/**
 * Standardises one reading (raw sensor values in `sensorSources` order, plus the asset's constants)
 * into a model row at `offset`.
 */
export function writeModelRow(
  model: PlantModel,
  sensors: Float32Array,
  constants: Readonly<Record<string, string | number>>,
  out: Float32Array,
  offset: number,
): void {
  for (let i = 0; i < model.columns.length; i++) {
    const c = model.columns[i];
    let raw: number;
    if (c.oneHot !== undefined) raw = String(constants[c.source]) === c.oneHot ? 1 : 0;
    else raw = sensors[model.sensorIndex[i]];
    out[offset + i] = (raw - c.mean) / c.scale;
  }
}
