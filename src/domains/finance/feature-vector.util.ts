/**
 * The manifest's tabular preprocessing, as the training code defines it (training/common/export.py,
 * apply_transform): each model input column is `(transform(raw[source]) - mean) / scale`, and
 * `baseline` is the raw value a feature is set to when it is left out (attributions).
 */
export type FeatureTransform =
  | { kind: 'none' }
  | { kind: 'log1p' }
  | { kind: 'one_hot'; value: number }
  | { kind: 'sin_hour' }
  | { kind: 'cos_hour' };

export interface FeatureSpec {
  name: string;
  source: string;
  transform: FeatureTransform;
  mean: number;
  scale: number;
  /** Raw value of `source` standing for "typical" when the feature is occluded. */
  baseline: number;
}

export class FeatureSpecError extends Error {}

/** Reads `preprocessing.features` from a manifest; throws naming the first entry that does not fit. */
export function parseFeatureSpecs(preprocessing: Record<string, unknown> | undefined, model: string): FeatureSpec[] {
  const list = preprocessing?.features;
  if (!Array.isArray(list) || list.length === 0) {
    throw new FeatureSpecError(`${model}: manifest has no preprocessing.features`);
  }
  return list.map((raw: unknown, i) => {
    const f = raw as Record<string, unknown>;
    const where = `${model}: preprocessing.features[${i}]`;
    for (const key of ['mean', 'scale', 'baseline'] as const) {
      if (typeof f[key] !== 'number' || !Number.isFinite(f[key]))
        throw new FeatureSpecError(`${where}.${key} must be a number`);
    }
    if (typeof f.name !== 'string' || typeof f.source !== 'string' || typeof f.transform !== 'string') {
      throw new FeatureSpecError(`${where} needs name, source and transform`);
    }
    if ((f.scale as number) === 0) throw new FeatureSpecError(`${where}.scale must not be 0`);
    return {
      name: f.name,
      source: f.source,
      transform: parseTransform(f.transform, where),
      mean: f.mean as number,
      scale: f.scale as number,
      baseline: f.baseline as number,
    };
  });
}

function parseTransform(text: string, where: string): FeatureTransform {
  if (text === 'none' || text === 'log1p' || text === 'sin_hour' || text === 'cos_hour') return { kind: text };
  const oneHot = /^one_hot:(-?\d+(\.\d+)?)$/.exec(text);
  if (oneHot) return { kind: 'one_hot', value: Number(oneHot[1]) };
  throw new FeatureSpecError(`${where}.transform "${text}" is not one the gateway implements`);
}

/** The raw sources a model reads, in first-seen order (one attribution per source). */
export function sourcesOf(specs: readonly FeatureSpec[]): string[] {
  return [...new Set(specs.map((s) => s.source))];
}

/** Baseline of each source: the one its features share (the first one listed). */
export function baselinesOf(specs: readonly FeatureSpec[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of specs) if (!(s.source in out)) out[s.source] = s.baseline;
  return out;
}

export function transformed(value: number, t: FeatureTransform): number {
  switch (t.kind) {
    case 'none':
      return value;
    case 'log1p':
      return Math.log1p(value);
    case 'one_hot':
      return value === t.value ? 1 : 0;
    case 'sin_hour':
      return Math.sin((2 * Math.PI * hourOfDay(value)) / 24);
    case 'cos_hour':
      return Math.cos((2 * Math.PI * hourOfDay(value)) / 24);
  }
}

/** Hour of day from seconds (since midnight or since the start of a capture that began at midnight). */
export function hourOfDay(seconds: number): number {
  return ((Math.floor(seconds / 3600) % 24) + 24) % 24;
}

/**
 * What writing a model's rows needs, worked out once per feature list: the raw sources in order,
 * the source behind each column, the columns each source feeds, and each column's standardised
 * value with its source at baseline (an occluded row is the request's row with those columns).
 */
export interface FeaturePlan {
  specs: readonly FeatureSpec[];
  width: number;
  sources: readonly string[];
  /** Column -> index of its source in `sources`. */
  columnSource: Int32Array;
  /** Source index -> the columns it feeds. */
  columns: ReadonlyArray<readonly number[]>;
  /** Each column's standardised value with its source at its baseline. */
  baselineRow: Float32Array;
}

const plans = new WeakMap<readonly FeatureSpec[], FeaturePlan>();

/** The plan of a feature list (cached: a model's specs do not change while it is live). */
export function featurePlan(specs: readonly FeatureSpec[]): FeaturePlan {
  const cached = plans.get(specs);
  if (cached) return cached;
  const sources = sourcesOf(specs);
  const baselines = baselinesOf(specs);
  const index = new Map(sources.map((source, k) => [source, k]));
  const columnSource = Int32Array.from(specs, (s) => index.get(s.source)!);
  const columns = sources.map((_, k) => specs.flatMap((_s, i) => (columnSource[i] === k ? [i] : [])));
  const baselineRow = Float32Array.from(
    specs,
    (s) => (transformed(baselines[s.source], s.transform) - s.mean) / s.scale,
  );
  const plan = { specs, width: specs.length, sources, columnSource, columns, baselineRow };
  plans.set(specs, plan);
  return plan;
}

/** Writes one standardised row into `out` at `offset`; `values[k]` is the raw value of `plan.sources[k]`. */
export function writePlannedRow(plan: FeaturePlan, values: ArrayLike<number>, out: Float32Array, offset = 0): void {
  const { specs, columnSource } = plan;
  for (let i = 0; i < specs.length; i++) {
    const s = specs[i];
    out[offset + i] = (transformed(values[columnSource[i]], s.transform) - s.mean) / s.scale;
  }
}
