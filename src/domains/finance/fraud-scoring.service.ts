import { Injectable, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { contributions, writeOcclusionRows } from './attribution.util';
import { FeaturePlan, featurePlan, writePlannedRow } from './feature-vector.util';
import { FinanceModels, finiteProbabilities, FRAUD_MODEL, reported as round, ScoringModel } from './finance-models';
import { batchItemErrors } from './fraud-batch.util';
import { refuseTimeOutOfRange } from './fraud-item.schema';
import {
  FeatureContributionDto,
  FraudBatchItemDto,
  FraudDecision,
  FraudScoreDto,
  FraudScoreRequestDto,
} from './fraud-score.dto';
import { ShadowScorer } from './shadow-scorer';

const TOP_FEATURES = 5;

export type FraudScore = Omit<FraudScoreDto, 'requestId'>;

/** What the challenger said about one transaction: audited, never returned. */
export interface ShadowVerdict {
  version: string;
  probability: number;
  decision: FraudDecision;
}

/** Raw model source -> the request field a caller knows it by. */
function fieldOf(source: string): string {
  if (/^V\d+$/.test(source)) return `features.${source.toLowerCase()}`;
  if (source === 'Amount') return 'amount';
  if (source === 'Time') return 'occurredAt';
  return source;
}

/** Seconds since local midnight, as written in the timestamp (its own UTC offset). */
export function secondsOfDay(occurredAt: string): number {
  const m = /[Tt](\d{2}):(\d{2})(?::(\d{2}))?/.exec(occurredAt);
  if (!m) return 0;
  return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3] ?? 0);
}

/** The decision on the probability as the answer shows it (six decimals), by the manifest's thresholds. */
export function decide(probability: number, model: Pick<ScoringModel, 'review' | 'decline'>): FraudDecision {
  const p = round(probability);
  if (p >= model.decline) return 'decline';
  if (p >= model.review) return 'review';
  return 'approve';
}

@Injectable()
export class FraudScoringService implements OnModuleInit {
  constructor(
    private readonly engine: InferenceEngine,
    private readonly models: FinanceModels,
    private readonly shadow: ShadowScorer,
    private readonly config: AppConfig,
  ) {}

  /** A fraud model (or challenger) reading a source the API does not carry stops the boot. */
  onModuleInit(): void {
    if (!this.models.has(FRAUD_MODEL)) return;
    const versions = [this.models.model(FRAUD_MODEL).version, this.models.shadowOf(FRAUD_MODEL)];
    for (const version of versions.filter((v) => v !== undefined)) {
      try {
        readersOf(featurePlan(this.models.model(FRAUD_MODEL, version).specs));
      } catch (error) {
        throw new Error(`${FRAUD_MODEL}@${version}: ${(error as Error).message}`, { cause: error });
      }
    }
  }

  modelRef(): { name: string; version: string } {
    const { name, version } = this.models.model(FRAUD_MODEL);
    return { name, version };
  }

  /** A valid transaction dated before FINANCE_EARLIEST_TIME (a placeholder date) or in the future: 422 TIME_OUT_OF_RANGE. */
  checkTime(request: FraudScoreRequestDto): void {
    refuseTimeOutOfRange(request, this.config.financeTimeRange);
  }

  async score(request: FraudScoreRequestDto): Promise<{ score: FraudScore; shadow?: ShadowVerdict }> {
    const { scores, shadow } = await this.scoreMany([request]);
    return { score: scores[0], shadow: shadow?.[0] };
  }

  /**
   * Scores valid transactions in one runtime call (each with its occlusion rows), and the
   * challenger in shadow, when one is configured, at the same time.
   */
  async scoreMany(requests: FraudScoreRequestDto[]): Promise<{ scores: FraudScore[]; shadow?: ShadowVerdict[] }> {
    if (requests.length === 0) return { scores: [] };
    const model = this.models.model(FRAUD_MODEL);
    const plan = featurePlan(model.specs);
    const { width } = plan;
    const count = plan.sources.length + 1;
    const read = readersOf(plan);
    const values = new Float64Array(plan.sources.length);
    // Given to the engine below: a large batch's rows go to the worker without a copy, in a buffer used before.
    const features = this.engine.allocate('float32', [requests.length * count, width]);
    const data = features.data as Float32Array;
    requests.forEach((request, i) => {
      for (let k = 0; k < read.length; k++) values[k] = read[k](request);
      writeOcclusionRows(plan, values, data, i * count);
    });
    const shadowRun = this.shadow.start(FRAUD_MODEL, requests.length, (challenger, rows) =>
      writePlannedRows(challenger, requests, rows),
    );
    const result = await this.engine.infer(model.name, model.version, { features }, { give: true });
    const challenger = await this.shadow.settle(shadowRun, FRAUD_MODEL);
    const probabilities = finiteProbabilities(result.outputs.probability.data as Float32Array, result);
    const scores = requests.map((request, i): FraudScore => {
      const p = probabilities.subarray(i * count, (i + 1) * count);
      const probability = p[0];
      // Only inputs that moved the probability as the answer shows it: at a saturated probability
      // (1 or 0 in float32) occluding an input changes nothing, and "raises-risk" by 0 would be false.
      const top: FeatureContributionDto[] = contributions(plan.sources, p, TOP_FEATURES)
        .map((c) => ({ source: c.source, contribution: round(c.contribution) }))
        .filter((c) => c.contribution !== 0)
        .map((c) => ({
          feature: fieldOf(c.source),
          contribution: c.contribution,
          direction: c.contribution > 0 ? 'raises-risk' : 'lowers-risk',
        }));
      return {
        transactionId: request.transactionId,
        fraudProbability: round(probability),
        decision: decide(probability, model),
        topFeatures: top,
        model: { name: model.name, version: result.version },
      };
    });
    const shadow = challenger?.probabilities.map((p) => ({
      version: challenger.version,
      probability: round(p),
      decision: decide(p, challenger),
    }));
    return { scores, shadow };
  }

  /**
   * Checks each item on its own and its transactionId against the valid items before it
   * (batchItemErrors): one with an error gets it, the others are scored.
   */
  async scoreBatch(items: unknown[]): Promise<{ items: FraudBatchItemDto[]; shadow?: ShadowVerdict[] }> {
    const valid: Array<{ index: number; dto: FraudScoreRequestDto }> = [];
    const answers: FraudBatchItemDto[] = batchItemErrors(items, this.config.financeTimeRange).map((error, index) => {
      if (error) return { index, error };
      valid.push({ index, dto: items[index] as FraudScoreRequestDto });
      return { index };
    });
    const { scores, shadow } = await this.scoreMany(valid.map((v) => v.dto));
    valid.forEach((v, k) => (answers[v.index].result = scores[k]));
    return { items: answers, shadow };
  }
}

/** One standardised row per request into `rows`, by a model's own feature plan (a challenger's). */
function writePlannedRows(plan: FeaturePlan, requests: readonly FraudScoreRequestDto[], rows: Float32Array): void {
  const read = readersOf(plan);
  const values = new Float64Array(plan.sources.length);
  requests.forEach((request, i) => {
    for (let k = 0; k < read.length; k++) values[k] = read[k](request);
    writePlannedRow(plan, values, rows, i * plan.width);
  });
}

type Reader = (r: FraudScoreRequestDto) => number;
const readers = new WeakMap<FeaturePlan, Reader[]>();

/** How to read each of the model's raw sources from a request (worked out once per model version). */
function readersOf(plan: FeaturePlan): Reader[] {
  let list = readers.get(plan);
  if (!list) {
    list = plan.sources.map((source): Reader => {
      const v = /^V(\d+)$/.exec(source);
      if (v && Number(v[1]) >= 1 && Number(v[1]) <= 28) {
        const key = `v${Number(v[1])}` as const;
        return (r) => r.features[key];
      }
      if (source === 'Amount') return (r) => r.amount;
      if (source === 'Time') return (r) => secondsOfDay(r.occurredAt);
      throw new Error(`the fraud API has no field for the model's raw source "${source}"`);
    });
    readers.set(plan, list);
  }
  return list;
}
