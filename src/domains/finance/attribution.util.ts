import { baselinesOf, FeatureSpec, sourcesOf, writeRow } from './feature-vector.util';

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
  sources: string[];
}

export function occlusionBatch(specs: readonly FeatureSpec[], raw: Readonly<Record<string, number>>): OcclusionBatch {
  const sources = sourcesOf(specs);
  const baselines = baselinesOf(specs);
  const width = specs.length;
  const rows = new Float32Array((sources.length + 1) * width);
  writeRow(specs, raw, rows, 0);
  const occluded: Record<string, number> = { ...raw };
  sources.forEach((source, k) => {
    occluded[source] = baselines[source];
    writeRow(specs, occluded, rows, (k + 1) * width);
    occluded[source] = raw[source];
  });
  return { rows, count: sources.length + 1, sources };
}

export interface Contribution {
  source: string;
  /** p(as sent) - p(source at baseline). */
  contribution: number;
}

/** Contributions from the batch's probabilities (row order as in occlusionBatch), largest effect first. */
export function contributions(batch: OcclusionBatch, probabilities: ArrayLike<number>): Contribution[] {
  const p = probabilities[0];
  return batch.sources
    .map((source, k) => ({ source, contribution: p - probabilities[k + 1] }))
    .sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution));
}
