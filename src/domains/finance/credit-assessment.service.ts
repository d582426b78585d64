import { Injectable } from '@nestjs/common';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { contributions, occlusionBatch } from './attribution.util';
import {
  CreditAssessmentDto,
  CreditAssessmentRequestDto,
  CreditDecision,
  EDUCATION_CODES,
} from './credit-assessment.dto';
import { baselinesOf, writePlannedRow } from './feature-vector.util';
import { CREDIT_MODEL, FinanceModels, reported, ScoringModel } from './finance-models';
import { adverseReasons } from './reason-codes';
import { ShadowScorer } from './shadow-scorer';

const PAY_SOURCES = ['PAY_0', 'PAY_2', 'PAY_3', 'PAY_4', 'PAY_5', 'PAY_6'];

export function creditRaw(r: CreditAssessmentRequestDto): Record<string, number> {
  const raw: Record<string, number> = { LIMIT_BAL: r.creditLimit, EDUCATION: EDUCATION_CODES[r.education] };
  PAY_SOURCES.forEach((source, i) => (raw[source] = r.repaymentStatus[i]));
  for (let i = 0; i < 6; i++) {
    raw[`BILL_AMT${i + 1}`] = r.billAmounts[i];
    raw[`PAY_AMT${i + 1}`] = r.paymentAmounts[i];
  }
  return raw;
}

/** The decision on the probability as the answer shows it (six decimals), by the manifest's thresholds. */
export function creditDecision(probability: number, model: Pick<ScoringModel, 'review' | 'decline'>): CreditDecision {
  const p = reported(probability);
  if (p >= model.decline) return 'decline';
  if (p >= model.review) return 'refer';
  return 'approve';
}

/** The grade band of the probability as the answer shows it (six decimals). */
export function gradeOf(probability: number, model: Pick<ScoringModel, 'grades'>): string {
  const p = reported(probability);
  const band = model.grades.find((g) => p >= g.min && p < g.max) ?? model.grades[model.grades.length - 1];
  return band?.grade ?? 'unknown';
}

@Injectable()
export class CreditAssessmentService {
  constructor(
    private readonly engine: InferenceEngine,
    private readonly models: FinanceModels,
    private readonly shadow: ShadowScorer,
  ) {}

  modelRef(): { name: string; version: string } {
    const { name, version } = this.models.model(CREDIT_MODEL);
    return { name, version };
  }

  async assess(request: CreditAssessmentRequestDto): Promise<{
    assessment: Omit<CreditAssessmentDto, 'requestId'>;
    shadow?: { version: string; probabilityOfDefault: number; decision: CreditDecision };
  }> {
    const model = this.models.model(CREDIT_MODEL);
    const width = model.specs.length;
    const raw = creditRaw(request);
    const batch = occlusionBatch(model.specs, raw);
    const shadowRun = this.shadow.start(CREDIT_MODEL, 1, (plan, row) =>
      writePlannedRow(
        plan,
        plan.sources.map((source) => raw[source]),
        row,
      ),
    );
    const result = await this.engine.infer(model.name, model.version, {
      features: { dtype: 'float32', dims: [batch.count, width], data: batch.rows },
    });
    const challenger = await this.shadow.settle(shadowRun, CREDIT_MODEL);
    const p = result.outputs.probability.data as Float32Array;
    const shadowP = challenger?.probabilities[0];
    const shadow =
      challenger && shadowP !== undefined
        ? {
            version: challenger.version,
            probabilityOfDefault: reported(shadowP),
            decision: creditDecision(shadowP, challenger),
          }
        : undefined;
    const assessment = {
      probabilityOfDefault: reported(p[0]),
      grade: gradeOf(p[0], model),
      decision: creditDecision(p[0], model),
      reasons: adverseReasons(contributions(batch.sources, p), raw, baselinesOf(model.specs)),
      model: { name: model.name, version: result.version },
    };
    return { assessment, shadow };
  }
}
