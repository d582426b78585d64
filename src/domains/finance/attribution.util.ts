import { FeaturePlan, featurePlan, FeatureSpec, writePlannedRow } from './feature-vector.util';

/**
 * Occlusion attributions: the model scores the request as sent and once more per raw input with
 * that input set to its baseline (the manifest's `baseline`, a typical value), all in one batch.
 * An input's contribution is `p(as sent) - p(with it at baseline)`: positive when it pushes the
 * probability up. Model-agnostic, one runtime call per request, exact for additive models.
 */
export interface OcclusionBatch {
  /** Row 0: the request; row 1 + k: source k at its baseline. */
  rows: Float32Array;
  count: number;
  sources: readonly string[];
}

export function occlusionBatch(specs: readonly FeatureSpec[], raw: Readonly<Record<string, number>>): OcclusionBatch {
  const plan = featurePlan(specs);
  const count = plan.sources.length + 1;
  const rows = new Float32Array(count * plan.width);
  writeOcclusionRows(
    plan,
    plan.sources.map((source) => raw[source]),
    rows,
    0,
  );
  return { rows, count, sources: plan.sources };
}

/**
 * Writes an item's `1 + plan.sources.length` rows into `out` at row offset `offset`: the request as
 * sent, then one row per source with that source at its baseline (the request's row with the
 * columns that source feeds replaced). `values[k]` is the raw value of source k.
 */
export function writeOcclusionRows(
  plan: FeaturePlan,
  values: ArrayLike<number>,
  out: Float32Array,
  offset: number,
): void {
  const { width, columns, baselineRow } = plan;
  const first = offset * width;
  writePlannedRow(plan, values, out, first);
  for (let k = 0; k < columns.length; k++) {
    const at = first + (k + 1) * width;
    out.copyWithin(at, first, first + width);
    for (const c of columns[k]) out[at + c] = baselineRow[c];
  }
}

export interface Contribution {
  source: string;
  /** p(as sent) - p(source at baseline). */
  contribution: number;
}

/**
 * Contributions from an item's probabilities (row order as in writeOcclusionRows), largest effect
 * first (ties in source order); with `limit`, only that many.
 */
export function contributions(
  sources: readonly string[],
  probabilities: ArrayLike<number>,
  limit = sources.length,
): Contribution[] {
  const p = probabilities[0];
  const top: Contribution[] = [];
  if (limit <= 0) return top;
  for (let k = 0; k < sources.length; k++) {
    const contribution = p - probabilities[k + 1];
    const size = Math.abs(contribution);
    if (top.length === limit && size <= Math.abs(top[top.length - 1].contribution)) continue;
    let at = top.length;
    while (at > 0 && Math.abs(top[at - 1].contribution) < size) at--;
    top.splice(at, 0, { source: sources[k], contribution });
    if (top.length > limit) top.pop();
  }
  return top;
}
