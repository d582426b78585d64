import { Injectable, OnModuleInit } from '@nestjs/common';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { FeatureSpec, parseFeatureSpecs, sourcesOf } from './feature-vector.util';

export const FRAUD_MODEL = 'card-fraud';
export const CREDIT_MODEL = 'credit-default';

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
  constructor(private readonly engine: InferenceEngine) {}

  onModuleInit(): void {
    for (const name of [FRAUD_MODEL, CREDIT_MODEL]) {
      if (this.engine.versionsOf(name).length > 0) this.model(name);
    }
  }

  has(name: string): boolean {
    return this.engine.versionsOf(name).length > 0;
  }

  /** The default (or pinned) version of a model, as the domain uses it. */
  model(name: string, version?: string): ScoringModel {
    const info = this.engine.describe(name, version);
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
    return { name, version: info.version, specs, review: value('review'), decline: value('decline'), grades };
  }

  sources(name: string): string[] {
    return sourcesOf(this.model(name).specs);
  }
}
