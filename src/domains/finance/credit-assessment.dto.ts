import { ApiProperty } from '@nestjs/swagger';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsIn,
  IsInt,
  IsNumber,
  IsObject,
  IsString,
  Matches,
  Max,
  Min,
} from 'class-validator';
import type { ErrorCode } from '../../common/errors/app-error';
import { FieldErrorDto } from '../../common/errors/problem.dto';
import { createValidationPipe } from '../../common/errors/validation';
import { REASON_CODES } from './reason-codes';
import { ModelRefDto } from './fraud-score.dto';

/**
 * Applications per credit batch. Fewer than a fraud batch's 10,000 transactions: the credit model costs about 16 µs of
 * CPU a row (gradient-boosted trees blended with an MLP ensemble; a fraud row under half a microsecond) and each application is 21
 * rows with its attributions, so 1,000 applications are about a third of a second on two quiet cores, and 10,000
 * would run past the inference deadline (INFERENCE_TIMEOUT_MS, 10 s) whenever the machine is busy.
 */
export const MAX_BATCH_APPLICATIONS = 1_000;

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

/** A credit batch's application: the single route's fields and the bank's id for it, which its answer carries. */
export class CreditBatchApplicationDto extends CreditAssessmentRequestDto {
  @IsString()
  @Matches(/^[A-Za-z0-9._:-]{1,64}$/, { message: 'applicationId must be 1-64 letters, digits or ._:-' })
  @ApiProperty({ pattern: '^[A-Za-z0-9._:-]{1,64}$', example: 'app-2026-000123' })
  applicationId!: string;
}

export class CreditBatchRequestDto {
  /**
   * Up to 1,000 applications (a portfolio review, a pre-screening list); each is validated and assessed on its own.
   * An applicationId is assessed once per batch: the first valid item with it is assessed, each later valid one gets
   * the error DUPLICATE_APPLICATION_ID naming that item's index.
   */
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_BATCH_APPLICATIONS)
  @IsObject({ each: true, message: 'each application must be an object' })
  @ApiProperty({ type: [CreditBatchApplicationDto], maxItems: MAX_BATCH_APPLICATIONS })
  applications!: object[];
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

/** A credit batch item, checked by the same rules as the single route's application, and its applicationId. */
export async function parseCreditBatchApplication(item: unknown): Promise<CreditBatchApplicationDto> {
  return (await pipe.transform(item, {
    type: 'body',
    metatype: CreditBatchApplicationDto,
  })) as CreditBatchApplicationDto;
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

/** An application's assessment: the single route's answer and a batch item's result. */
export class CreditAssessmentResultDto {
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
}

export class CreditAssessmentDto extends CreditAssessmentResultDto {
  requestId!: string;
}

/** An application's assessment, as a batch item carries it (the batch has the one request id). */
export class CreditItemAssessmentDto extends CreditAssessmentResultDto {
  applicationId!: string;
}

/** The codes a credit batch item's error carries. */
export const CREDIT_BATCH_ITEM_ERROR_CODES = [
  'VALIDATION_FAILED',
  'PAN_DETECTED',
  'DUPLICATE_APPLICATION_ID',
] as const satisfies readonly ErrorCode[];

export class CreditBatchItemErrorDto {
  /**
   * Why the application was not assessed: VALIDATION_FAILED (a field is invalid), PAN_DETECTED (it carries a card
   * number), DUPLICATE_APPLICATION_ID (an earlier valid item of the batch has its applicationId and is the one
   * assessed; the reason gives that item's index).
   */
  @ApiProperty({ enum: CREDIT_BATCH_ITEM_ERROR_CODES })
  code!: (typeof CREDIT_BATCH_ITEM_ERROR_CODES)[number];
  detail!: string;
  /** Field-level reasons, as in an error answer's `errors`. */
  errors!: FieldErrorDto[];
}

export class CreditBatchItemDto {
  @ApiProperty({ type: 'integer' })
  index!: number;
  @ApiProperty({ type: CreditItemAssessmentDto, required: false })
  result?: CreditItemAssessmentDto;
  @ApiProperty({ type: CreditBatchItemErrorDto, required: false })
  error?: CreditBatchItemErrorDto;
}

export class CreditBatchResultDto {
  @ApiProperty({ type: [CreditBatchItemDto] })
  items!: CreditBatchItemDto[];
  @ApiProperty({ type: 'integer' })
  assessed!: number;
  @ApiProperty({ type: 'integer' })
  failed!: number;
  model!: ModelRefDto;
  requestId!: string;
}
