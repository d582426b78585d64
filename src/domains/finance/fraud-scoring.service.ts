import { Injectable } from '@nestjs/common';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { contributions, occlusionBatch } from './attribution.util';
import { FinanceModels, FRAUD_MODEL, ScoringModel } from './finance-models';
import {
  BatchItemErrorDto,
  FeatureContributionDto,
  FraudBatchItemDto,
  FraudDecision,
  FraudScoreDto,
  FraudScoreRequestDto,
} from './fraud-score.dto';
import { fraudItemErrors } from './fraud-item.schema';
import { panRefusal } from './pan-guard.util';
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
  const m = /T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(occurredAt);
  if (!m) return 0;
  return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3] ?? 0);
}

export function decide(probability: number, model: Pick<ScoringModel, 'review' | 'decline'>): FraudDecision {
  if (probability >= model.decline) return 'decline';
  if (probability >= model.review) return 'review';
  return 'approve';
}

@Injectable()
export class FraudScoringService {
  constructor(
    private readonly engine: InferenceEngine,
    private readonly models: FinanceModels,
    private readonly shadow: ShadowScorer,
  ) {}

  modelRef(): { name: string; version: string } {
    const { name, version } = this.models.model(FRAUD_MODEL);
    return { name, version };
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
    const width = model.specs.length;
    const batches = requests.map((r) => occlusionBatch(model.specs, rawOf(r)));
    const rows = batches.reduce((n, b) => n + b.count, 0);
    const data = new Float32Array(rows * width);
    const primary = new Float32Array(requests.length * width);
    let offset = 0;
    batches.forEach((b, i) => {
      data.set(b.rows, offset * width);
      primary.set(b.rows.subarray(0, width), i * width);
      offset += b.count;
    });
    const shadowRun = this.shadow.start(FRAUD_MODEL, primary, requests.length, width);
    const result = await this.engine.infer(model.name, model.version, {
      features: { dtype: 'float32', dims: [rows, width], data },
    });
    const challenger = await shadowRun;
    const probabilities = result.outputs.probability.data as Float32Array;
    offset = 0;
    const scores = requests.map((request, i): FraudScore => {
      const b = batches[i];
      const p = probabilities.subarray(offset, offset + b.count);
      offset += b.count;
      const probability = p[0];
      const top: FeatureContributionDto[] = contributions(b, p)
        .slice(0, TOP_FEATURES)
        .map((c) => ({
          feature: fieldOf(c.source),
          contribution: round(c.contribution),
          direction: c.contribution >= 0 ? 'raises-risk' : 'lowers-risk',
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

  /** Validates each item on its own: a bad one gets its error, the others are scored. */
  async scoreBatch(items: object[]): Promise<{ items: FraudBatchItemDto[]; shadow?: ShadowVerdict[] }> {
    const valid: Array<{ index: number; dto: FraudScoreRequestDto }> = [];
    const answers: FraudBatchItemDto[] = items.map((item, index) => {
      const error = validateItem(item);
      if (error) return { index, error };
      valid.push({ index, dto: item as FraudScoreRequestDto });
      return { index };
    });
    const { scores, shadow } = await this.scoreMany(valid.map((v) => v.dto));
    valid.forEach((v, k) => (answers[v.index].result = scores[k]));
    return { items: answers, shadow };
  }
}

function validateItem(item: object): BatchItemErrorDto | undefined {
  const refusal = panRefusal(item);
  if (refusal) return { code: refusal.code, detail: refusal.detail, errors: refusal.fields };
  const fields = fraudItemErrors(item);
  if (fields.length === 0) return undefined;
  return { code: 'VALIDATION_FAILED', detail: fields.map((f) => `${f.field}: ${f.reason}`).join('; '), errors: fields };
}

function rawOf(r: FraudScoreRequestDto): Record<string, number> {
  const raw: Record<string, number> = { Amount: r.amount, Time: secondsOfDay(r.occurredAt) };
  for (let i = 1; i <= 28; i++) raw[`V${i}`] = r.features[`v${i}`];
  return raw;
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
