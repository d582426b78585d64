import { Injectable, OnModuleInit } from '@nestjs/common';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { contributions, writeOcclusionRows } from './attribution.util';
import {
  CreditAssessmentDto,
  CreditAssessmentRequestDto,
  CreditDecision,
  EDUCATION_CODES,
} from './credit-assessment.dto';
import { baselinesOf, featurePlan, writePlannedRow } from './feature-vector.util';
import { CREDIT_MODEL, FinanceModels, finiteProbabilities, reported, ScoringModel } from './finance-models';
import { adverseReasons } from './reason-codes';
import { ShadowScorer } from './shadow-scorer';

/** An application's assessment, as the single route answers it less its request id. */
export type CreditAssessment = Omit<CreditAssessmentDto, 'requestId'>;

/** What the challenger said about one application: audited, never returned. */
export interface CreditShadowVerdict {
  version: string;
  probabilityOfDefault: number;
  decision: CreditDecision;
}

const PAY_SOURCES = ['PAY_0', 'PAY_2', 'PAY_3', 'PAY_4', 'PAY_5', 'PAY_6'];
/** The raw sources an application carries (creditRaw's keys): a model reading another cannot be fed. */
const CREDIT_SOURCES: ReadonlySet<string> = new Set([
  'LIMIT_BAL',
  'EDUCATION',
  ...PAY_SOURCES,
  ...[1, 2, 3, 4, 5, 6].flatMap((i) => [`BILL_AMT${i}`, `PAY_AMT${i}`]),
]);

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
export class CreditAssessmentService implements OnModuleInit {
  constructor(
    private readonly engine: InferenceEngine,
    private readonly models: FinanceModels,
    private readonly shadow: ShadowScorer,
  ) {}

  /**
   * A credit model (or challenger) reading a source the API does not carry stops the boot, as a fraud model's does:
   * its columns were written from undefined (NaN, or 0 for a one-hot column), so it scored garbage: a NaN probability
   * is audited as null and decided approve, a one-hot column read as never set shifts every score unnoticed.
   */
  onModuleInit(): void {
    if (!this.models.has(CREDIT_MODEL)) return;
    const versions = [this.models.model(CREDIT_MODEL).version, this.models.shadowOf(CREDIT_MODEL)];
    for (const version of versions.filter((v) => v !== undefined)) {
      const unknown = this.models.sources(CREDIT_MODEL, version).filter((source) => !CREDIT_SOURCES.has(source));
      if (unknown.length > 0) {
        throw new Error(
          `${CREDIT_MODEL}@${version}: the credit API has no field for the model's raw source "${unknown[0]}"`,
        );
      }
    }
  }

  modelRef(): { name: string; version: string } {
    const { name, version } = this.models.model(CREDIT_MODEL);
    return { name, version };
  }

  async assess(
    request: CreditAssessmentRequestDto,
  ): Promise<{ assessment: CreditAssessment; shadow?: CreditShadowVerdict }> {
    const { assessments, shadow } = await this.assessMany([request]);
    return { assessment: assessments[0], shadow: shadow?.[0] };
  }

  /**
   * Assesses applications in one runtime call (each with its occlusion rows, as the single route does), and the
   * challenger in shadow, when one is configured, at the same time.
   */
  async assessMany(
    requests: readonly CreditAssessmentRequestDto[],
  ): Promise<{ assessments: CreditAssessment[]; shadow?: CreditShadowVerdict[] }> {
    if (requests.length === 0) return { assessments: [] };
    const model = this.models.model(CREDIT_MODEL);
    const plan = featurePlan(model.specs);
    const count = plan.sources.length + 1;
    const raws = requests.map(creditRaw);
    const values = new Float64Array(plan.sources.length);
    // Given to the engine below: a large batch's rows go to the worker without a copy, in a buffer used before.
    const features = this.engine.allocate('float32', [requests.length * count, plan.width]);
    const data = features.data as Float32Array;
    raws.forEach((raw, i) => {
      for (let k = 0; k < values.length; k++) values[k] = raw[plan.sources[k]];
      writeOcclusionRows(plan, values, data, i * count);
    });
    const shadowRun = this.shadow.start(CREDIT_MODEL, requests.length, (challenger, rows) =>
      raws.forEach((raw, i) =>
        writePlannedRow(
          challenger,
          challenger.sources.map((source) => raw[source]),
          rows,
          i * challenger.width,
        ),
      ),
    );
    const result = await this.engine.infer(model.name, model.version, { features }, { give: true });
    const challenger = await this.shadow.settle(shadowRun, CREDIT_MODEL);
    const probabilities = finiteProbabilities(result.outputs.probability.data as Float32Array, result);
    const baselines = baselinesOf(model.specs);
    const assessments = raws.map((raw, i): CreditAssessment => {
      const p = probabilities.subarray(i * count, (i + 1) * count);
      return {
        probabilityOfDefault: reported(p[0]),
        grade: gradeOf(p[0], model),
        decision: creditDecision(p[0], model),
        reasons: adverseReasons(contributions(plan.sources, p), raw, baselines),
        model: { name: model.name, version: result.version },
      };
    });
    const shadow = challenger?.probabilities.map((p) => ({
      version: challenger.version,
      probabilityOfDefault: reported(p),
      decision: creditDecision(p, challenger),
    }));
    return { assessments, shadow };
  }
}
