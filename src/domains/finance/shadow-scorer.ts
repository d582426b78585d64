import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { FeaturePlan, featurePlan } from './feature-vector.util';
import { FinanceModels, finiteProbabilities } from './finance-models';

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
    private readonly config: AppConfig,
  ) {}

  /**
   * The challenger's scores if it has them within FINANCE_SHADOW_GRACE_MS of this call (made once the
   * champion has scored), else undefined: the answer does not wait longer for a verdict it never shows.
   */
  async settle(run: Promise<ShadowScores | undefined>, name: string): Promise<ShadowScores | undefined> {
    // Without a challenger `run` is already settled: no timer on every request for it.
    if (!this.models.shadowOf(name)) return run;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.config.FINANCE_SHADOW_GRACE_MS);
    });
    const settled = await Promise.race([run, late]);
    clearTimeout(timer);
    if (settled !== 'late') return settled;
    this.logger.warn({
      msg: 'shadow model not done within FINANCE_SHADOW_GRACE_MS; the champion answered without it',
      model: name,
      version: this.models.shadowOf(name),
      graceMs: this.config.FINANCE_SHADOW_GRACE_MS,
    });
    return undefined;
  }

  /**
   * Starts the challenger on `count` rows that `writeRows` writes into `into` ([count, plan.width], zeroed)
   * with the challenger's feature plan (called at once, before the champion runs); resolves undefined
   * when there is no challenger or it failed.
   */
  start(
    name: string,
    count: number,
    writeRows: (plan: FeaturePlan, into: Float32Array) => void,
  ): Promise<ShadowScores | undefined> {
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
    const plan = featurePlan(challenger.specs);
    const features = this.engine.allocate('float32', [count, plan.width]);
    try {
      writeRows(plan, features.data as Float32Array);
    } catch (error) {
      return Promise.resolve(failed(error));
    }
    // A NaN probability is the challenger's failure (finiteProbabilities), not a verdict to audit as `approve`.
    return this.engine
      .infer(name, version, { features }, { give: true })
      .then((result) => ({
        version,
        probabilities: Array.from(finiteProbabilities(result.outputs.probability.data as Float32Array, result)),
        review: challenger.review,
        decline: challenger.decline,
      }))
      .catch(failed);
  }
}
