import { ApiProperty } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsIn, IsInt, IsNumber, Max, Min } from 'class-validator';
import { createValidationPipe } from '../../common/errors/validation';
import { REASON_CODES } from './reason-codes';
import { ModelRefDto } from './fraud-score.dto';

export const EDUCATION_LEVELS = ['graduate-school', 'university', 'high-school', 'other'] as const;
export type EducationLevel = (typeof EDUCATION_LEVELS)[number];
/** The codes of the reference data set (1-4). */
export const EDUCATION_CODES: Record<EducationLevel, number> = {
  'graduate-school': 1,
  university: 2,
  'high-school': 3,
  other: 4,
};
export const CREDIT_DECISIONS = ['approve', 'refer', 'decline'] as const;
export type CreditDecision = (typeof CREDIT_DECISIONS)[number];
const FINITE = { allowNaN: false, allowInfinity: false };
const SIX = 6;

/**
 * A credit application with six months of account history, most recent month first. Sex, marital
 * status and age are not fields: a request carrying them is refused, so they cannot influence a
 * decision.
 */
export class CreditAssessmentRequestDto {
  /** Credit line granted to the applicant and family (NT$ in the reference data). */
  @IsNumber(FINITE)
  @Min(1)
  @Max(10_000_000)
  @ApiProperty({ minimum: 1, maximum: 10_000_000, example: 140000, description: 'Credit line (NT$)' })
  creditLimit!: number;

  @IsIn(EDUCATION_LEVELS)
  @ApiProperty({ enum: EDUCATION_LEVELS })
  education!: EducationLevel;

  /**
   * Repayment status for each of the last six months, most recent first: -2 no consumption,
   * -1 paid in full, 0 revolving credit, 1-9 months of payment delay.
   */
  @IsArray()
  @ArrayMinSize(SIX)
  @ArrayMaxSize(SIX)
  @IsInt({ each: true })
  @Min(-2, { each: true })
  @Max(9, { each: true })
  @ApiProperty({
    type: 'array',
    items: { type: 'integer', minimum: -2, maximum: 9 },
    minItems: 6,
    maxItems: 6,
    example: [0, 0, 0, 0, 0, 0],
  })
  repaymentStatus!: number[];

  /** Statement balance for each of the last six months, most recent first (NT$; negative = credit). */
  @IsArray()
  @ArrayMinSize(SIX)
  @ArrayMaxSize(SIX)
  @IsNumber(FINITE, { each: true })
  @Min(-10_000_000, { each: true })
  @Max(10_000_000, { each: true })
  @ApiProperty({
    type: 'array',
    items: { type: 'number', minimum: -10_000_000, maximum: 10_000_000 },
    minItems: 6,
    maxItems: 6,
    example: [50000, 48000, 47000, 45000, 43000, 40000],
  })
  billAmounts!: number[];

  /** Amount paid in each of the last six months, most recent first (NT$). */
  @IsArray()
  @ArrayMinSize(SIX)
  @ArrayMaxSize(SIX)
  @IsNumber(FINITE, { each: true })
  @Min(0, { each: true })
  @Max(10_000_000, { each: true })
  @ApiProperty({
    type: 'array',
    items: { type: 'number', minimum: 0, maximum: 10_000_000 },
    minItems: 6,
    maxItems: 6,
    example: [2000, 2000, 1800, 1500, 1500, 1500],
  })
  paymentAmounts!: number[];
}

const pipe = createValidationPipe();

/**
 * The application checked by the global pipe's rules, called by the route once its Idempotency-Key has been read
 * (the route's body is `unknown`, so the pipe leaves it alone): 400 naming each bad field.
 */
export async function parseCreditAssessmentRequest(body: unknown): Promise<CreditAssessmentRequestDto> {
  return (await pipe.transform(body, {
    type: 'body',
    metatype: CreditAssessmentRequestDto,
  })) as CreditAssessmentRequestDto;
}

export class ReasonDto {
  @ApiProperty({ enum: Object.keys(REASON_CODES) })
  code!: string;
  text!: string;
  /**
   * Sum, over the inputs behind this reason, of the probability as sent minus the probability with that
   * input alone at its typical value (occlusion). Each input is occluded on its own, so a reason made of
   * several inputs can add up to more than the probability itself: it ranks reasons, it does not split it.
   */
  contribution!: number;
}

export class CreditAssessmentDto {
  /** Probability of default on next month's payment. */
  probabilityOfDefault!: number;
  /** A (lowest risk) to E, from the model's grade bands. */
  grade!: string;
  @ApiProperty({ enum: CREDIT_DECISIONS })
  decision!: CreditDecision;
  /** Up to four adverse-action reasons: what raised the risk most, largest first. */
  @ApiProperty({ type: [ReasonDto] })
  reasons!: ReasonDto[];
  model!: ModelRefDto;
  requestId!: string;
}
