import { Injectable, OnModuleInit } from '@nestjs/common';
import { AppError } from '../../common/errors/app-error';
import { AppConfig } from '../../config/app-config';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { FeatureSpec, parseFeatureSpecs, sourcesOf } from './feature-vector.util';

export const FRAUD_MODEL = 'card-fraud';
export const CREDIT_MODEL = 'credit-default';

/**
 * A probability (or contribution) as the answer publishes it: six decimals. Decisions and grades are
 * taken on this value, not on the runtime's float32: float32(0.08) is 0.0799999982, which the answer
 * shows as 0.08 and which, compared raw, would fall below a 0.08 threshold that the answer meets.
 */
export function reported(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/**
 * A model's probabilities, refused where one is not a finite number: JSON carries NaN as null, and a NaN compares
 * below every threshold, so a model that gave one (a broken export, a challenger fed a column it does not know) was
 * answered or audited `approve`, a fraud check failing open. The model failed to score: 500 INFERENCE_FAILED, as
 * when it fails to run (an Idempotency-Key is freed for a retry); a challenger's is logged as its failure.
 */
export function finiteProbabilities<T extends Float32Array>(data: T, run: { model: string; version: string }): T {
  for (let i = 0; i < data.length; i++) {
    if (Number.isFinite(data[i])) continue;
    throw new AppError(
      'INFERENCE_FAILED',
      `model ${run.model} version ${run.version} gave a probability that is not a number (${data[i]}); nothing was decided on it`,
    );
  }
  return data;
}

export interface ScoringModel {
  name: string;
  version: string;
  specs: FeatureSpec[];
  review: number;
  decline: number;
  grades: Array<{ grade: string; min: number; max: number }>;
}

/**
 * What the finance domain reads from the finance models' manifests: feature specs, thresholds,
 * grades. Checked at boot against the raw fields the API maps, so a model that the domain cannot
 * feed stops the boot instead of scoring garbage.
 */
@Injectable()
export class FinanceModels implements OnModuleInit {
  private readonly shadows = new Map<string, string>();
  /** Parsed once per live version: the manifests do not change while the gateway runs. */
  private readonly parsed = new Map<string, ScoringModel>();

  constructor(
    private readonly engine: InferenceEngine,
    config: AppConfig,
  ) {
    for (const pair of (config.FINANCE_SHADOW_MODELS ?? '').split(',').filter(Boolean)) {
      const [name, version] = pair.split('=');
      this.shadows.set(name, version);
    }
  }

  onModuleInit(): void {
    for (const name of [FRAUD_MODEL, CREDIT_MODEL]) {
      if (this.engine.versionsOf(name).length > 0) this.model(name);
    }
    for (const [name, version] of this.shadows) {
      if (![FRAUD_MODEL, CREDIT_MODEL].includes(name)) {
        throw new Error(`FINANCE_SHADOW_MODELS: ${name} is not a finance model (${FRAUD_MODEL}, ${CREDIT_MODEL})`);
      }
      if (!this.engine.versionsOf(name).includes(version)) {
        throw new Error(`FINANCE_SHADOW_MODELS: ${name} has no live version ${version}`);
      }
      const champion = this.model(name);
      if (champion.version === version) {
        throw new Error(`FINANCE_SHADOW_MODELS: ${name}=${version} is the default version, not a challenger`);
      }
      const challenger = this.model(name, version);
      if (challenger.specs.length !== champion.specs.length) {
        throw new Error(`FINANCE_SHADOW_MODELS: ${name}=${version} takes other features than the champion`);
      }
    }
  }

  /** The challenger version configured to run in shadow of a model, if any. */
  shadowOf(name: string): string | undefined {
    return this.shadows.get(name);
  }

  has(name: string): boolean {
    return this.engine.versionsOf(name).length > 0;
  }

  /** The default (or pinned) version of a model, as the domain uses it. */
  model(name: string, version?: string): ScoringModel {
    const info = this.engine.describe(name, version);
    const key = `${name}@${info.version}`;
    const cached = this.parsed.get(key);
    if (cached) return cached;
    const m = info.manifest;
    const where = `${name}@${info.version}`;
    const specs = parseFeatureSpecs(m.preprocessing, where);
    const thresholds: Record<string, unknown> = m.thresholds ?? {};
    const value = (key: string): number => {
      const v = (thresholds[key] as { value?: unknown } | undefined)?.value;
      if (typeof v !== 'number') throw new Error(`${where}: manifest thresholds.${key}.value is missing`);
      return v;
    };
    const grades = Array.isArray(thresholds.grades)
      ? (thresholds.grades as Array<{ grade: string; min: number; max: number }>)
      : [];
    const model = { name, version: info.version, specs, review: value('review'), decline: value('decline'), grades };
    this.parsed.set(key, model);
    return model;
  }

  /**
   * The longest a finance model's run may wait for its answer: the largest deadline (INFERENCE_TIMEOUT_MS, else the
   * manifest's batching.timeoutMs) over every live version of the finance models, challengers included.
   */
  longestTimeoutMs(): number {
    let longest = 0;
    for (const name of [FRAUD_MODEL, CREDIT_MODEL]) {
      for (const version of this.engine.versionsOf(name)) {
        longest = Math.max(longest, this.engine.describe(name, version).batching.timeoutMs);
      }
    }
    return longest;
  }

  sources(name: string, version?: string): string[] {
    return sourcesOf(this.model(name, version).specs);
  }
}
