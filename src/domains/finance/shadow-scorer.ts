import { Injectable, Logger } from '@nestjs/common';
import { InferenceEngine } from '../../runtime/inference-engine.service';
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
 * standardised rows as the champion, at the same time. Its scores go to the audit trail only; a
 * failing challenger is logged and never fails the request.
 */
@Injectable()
export class ShadowScorer {
  private readonly logger = new Logger('Shadow');

  constructor(
    private readonly engine: InferenceEngine,
    private readonly models: FinanceModels,
  ) {}

  /**
   * Starts the challenger on a copy of `rows` (one standardised row per item) before the champion
   * may move the buffers to a worker; resolves undefined when there is no challenger or it failed.
   */
  start(name: string, rows: Float32Array, count: number, width: number): Promise<ShadowScores | undefined> {
    const version = this.models.shadowOf(name);
    if (!version) return Promise.resolve(undefined);
    const challenger = this.models.model(name, version);
    const data = rows.slice(0, count * width);
    return this.engine.infer(name, version, { features: { dtype: 'float32', dims: [count, width], data } }).then(
      (result) => ({
        version,
        probabilities: Array.from(result.outputs.probability.data as Float32Array),
        review: challenger.review,
        decline: challenger.decline,
      }),
      (error: unknown) => {
        this.logger.warn({
          msg: 'shadow model failed; the champion answered',
          model: name,
          version,
          error: String(error),
        });
        return undefined;
      },
    );
  }
}
