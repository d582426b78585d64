import { Injectable, Logger } from '@nestjs/common';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { FeaturePlan, featurePlan } from './feature-vector.util';
import { FinanceModels } from './finance-models';

export interface ShadowScores {
  version: string;
  /** One probability per scored item, in order. */
  probabilities: number[];
  review: number;
  decline: number;
}

/**
 * Champion/challenger: runs a model's challenger version (FINANCE_SHADOW_MODELS) on the same
 * requests as the champion, at the same time, each standardised with the challenger's own
 * preprocessing (a retrained challenger has its own means and scales). Its scores go to the audit
 * trail only; a failing challenger is logged and never fails the request.
 */
@Injectable()
export class ShadowScorer {
  private readonly logger = new Logger('Shadow');

  constructor(
    private readonly engine: InferenceEngine,
    private readonly models: FinanceModels,
  ) {}

  /**
   * Starts the challenger on `count` rows that `rowsOf` writes with the challenger's feature plan
   * (called at once, before the champion runs); resolves undefined when there is no challenger or it
   * failed.
   */
  start(name: string, count: number, rowsOf: (plan: FeaturePlan) => Float32Array): Promise<ShadowScores | undefined> {
    const version = this.models.shadowOf(name);
    if (!version) return Promise.resolve(undefined);
    const challenger = this.models.model(name, version);
    const failed = (error: unknown): undefined => {
      this.logger.warn({
        msg: 'shadow model failed; the champion answered',
        model: name,
        version,
        error: String(error),
      });
      return undefined;
    };
    let data: Float32Array;
    const plan = featurePlan(challenger.specs);
    try {
      data = rowsOf(plan);
    } catch (error) {
      return Promise.resolve(failed(error));
    }
    return this.engine.infer(name, version, { features: { dtype: 'float32', dims: [count, plan.width], data } }).then(
      (result) => ({
        version,
        probabilities: Array.from(result.outputs.probability.data as Float32Array),
        review: challenger.review,
        decline: challenger.decline,
      }),
      failed,
    );
  }
}
