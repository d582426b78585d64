import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsIn,
  IsNumber,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateNested,
} from 'class-validator';
import { CountryCodes } from 'validator/lib/isISO31661Alpha2';
import type { ErrorCode } from '../../common/errors/app-error';
import { FieldErrorDto } from '../../common/errors/problem.dto';
import { MatchesPattern } from '../../common/errors/validation';
import { IsIsoTime } from '../../common/iso-time';

/**
 * ISO 4217 codes of currencies in circulation (2026), fixed here rather than taken from Node's ICU
 * (`Intl.supportedValuesOf`), which varies with the Node build and still lists withdrawn ones (CUC, HRK,
 * ZWL) and units no card is charged in (XDR, XSU). ANG and SLL, on their way out, are still taken.
 */
export const CURRENCIES: readonly string[] = [
  'AED',
  'AFN',
  'ALL',
  'AMD',
  'ANG',
  'AOA',
  'ARS',
  'AUD',
  'AWG',
  'AZN',
  'BAM',
  'BBD',
  'BDT',
  'BGN',
  'BHD',
  'BIF',
  'BMD',
  'BND',
  'BOB',
  'BRL',
  'BSD',
  'BTN',
  'BWP',
  'BYN',
  'BZD',
  'CAD',
  'CDF',
  'CHF',
  'CLP',
  'CNY',
  'COP',
  'CRC',
  'CUP',
  'CVE',
  'CZK',
  'DJF',
  'DKK',
  'DOP',
  'DZD',
  'EGP',
  'ERN',
  'ETB',
  'EUR',
  'FJD',
  'FKP',
  'GBP',
  'GEL',
  'GHS',
  'GIP',
  'GMD',
  'GNF',
  'GTQ',
  'GYD',
  'HKD',
  'HNL',
  'HTG',
  'HUF',
  'IDR',
  'ILS',
  'INR',
  'IQD',
  'IRR',
  'ISK',
  'JMD',
  'JOD',
  'JPY',
  'KES',
  'KGS',
  'KHR',
  'KMF',
  'KPW',
  'KRW',
  'KWD',
  'KYD',
  'KZT',
  'LAK',
  'LBP',
  'LKR',
  'LRD',
  'LSL',
  'LYD',
  'MAD',
  'MDL',
  'MGA',
  'MKD',
  'MMK',
  'MNT',
  'MOP',
  'MRU',
  'MUR',
  'MVR',
  'MWK',
  'MXN',
  'MYR',
  'MZN',
  'NAD',
  'NGN',
  'NIO',
  'NOK',
  'NPR',
  'NZD',
  'OMR',
  'PAB',
  'PEN',
  'PGK',
  'PHP',
  'PKR',
  'PLN',
  'PYG',
  'QAR',
  'RON',
  'RSD',
  'RUB',
  'RWF',
  'SAR',
  'SBD',
  'SCR',
  'SDG',
  'SEK',
  'SGD',
  'SHP',
  'SLE',
  'SLL',
  'SOS',
  'SRD',
  'SSP',
  'STN',
  'SVC',
  'SYP',
  'SZL',
  'THB',
  'TJS',
  'TMT',
  'TND',
  'TOP',
  'TRY',
  'TTD',
  'TWD',
  'TZS',
  'UAH',
  'UGX',
  'USD',
  'UYU',
  'UZS',
  'VES',
  'VND',
  'VUV',
  'WST',
  'XAF',
  'XCD',
  'XCG',
  'XOF',
  'XPF',
  'YER',
  'ZAR',
  'ZMW',
  'ZWG',
];
/**
 * What a field a pattern checks must be, by its path: the DTO's words and the compiled schema's (fraudItemErrors),
 * where ajv's own quoted the regular expression (`occurredAt: must match pattern "^\d{4}-\d{2}-..."`).
 */
export const PATTERN_REASONS: Readonly<Record<string, string>> = {
  transactionId: 'must be 1-64 letters, digits or ._:-',
  occurredAt: 'must be a date and time with its UTC offset, e.g. 2026-11-23T14:05:00+01:00',
  'merchant.categoryCode': 'must be a 4-digit ISO 18245 merchant category code',
};

/**
 * What a field that takes a code from a standard's list must be, by its path: the DTO's words and the compiled
 * schema's, where listing the allowed values, as a short enum's refusal does (`channel`), would list every currency (over 150) or
 * 249 countries.
 */
export const CODE_REASONS: Readonly<Record<string, string>> = {
  currency: 'must be an ISO 4217 code',
  'merchant.country': 'must be an ISO 3166-1 alpha-2 code',
};

/**
 * ISO 3166-1 alpha-2 codes officially assigned (249), as validator (class-validator's engine) keeps them: a
 * maintained list, where ICU has none to enumerate and knows regions ISO does not assign (XK, EU, QO).
 * User-assigned (XA-XZ, ZZ), reserved and withdrawn codes are refused.
 */
export const COUNTRIES: ReadonlySet<string> = CountryCodes;
export const CHANNELS = ['card-present', 'contactless', 'ecommerce', 'moto', 'atm', 'recurring'] as const;
export const FRAUD_DECISIONS = ['approve', 'review', 'decline'] as const;
export type FraudDecision = (typeof FRAUD_DECISIONS)[number];

export const MAX_BATCH_TRANSACTIONS = 10_000;
const FINITE = { allowNaN: false, allowInfinity: false };

export class MerchantDto {
  /** The bank's merchant identifier. */
  @IsOptional()
  @IsString()
  @MaxLength(64)
  id?: string;

  /** ISO 18245 merchant category code. */
  @IsOptional()
  @Matches(/^\d{4}$/, { message: `categoryCode ${PATTERN_REASONS['merchant.categoryCode']}` })
  categoryCode?: string;

  /** ISO 3166-1 alpha-2 country of the merchant, a code ISO assigns. */
  @IsOptional()
  @IsIn([...COUNTRIES], { message: `country ${CODE_REASONS['merchant.country']}` })
  country?: string;

  @IsOptional()
  @IsString()
  @MaxLength(128)
  name?: string;
}

/**
 * The 28 principal components the bank's feature store computes for the transaction (the reference
 * model's inputs V1..V28).
 */
export class FraudFeaturesDto {
  [key: `v${number}`]: number;
}
for (let i = 1; i <= 28; i++) {
  const key = `v${i}`;
  IsNumber(FINITE, { message: `${key} must be a finite number` })(FraudFeaturesDto.prototype, key);
  Min(-1000)(FraudFeaturesDto.prototype, key);
  Max(1000)(FraudFeaturesDto.prototype, key);
  ApiProperty({ type: Number, description: `Principal component V${i}`, minimum: -1000, maximum: 1000, example: 0 })(
    FraudFeaturesDto.prototype,
    key,
  );
}

/**
 * `occurredAt`: a date and time to the minute, second or nanosecond, with its UTC offset (`Z`, `+01:00` or `+0100`);
 * the one pattern of the DTO, the document and the compiled schema that checks the routes' bodies. RFC 3339 5.6 lets
 * the T and Z be written in lower case. common/iso-time's ISO_INSTANT less its 6-digit signed years (no card
 * transaction is dated past 9999), so that isoTimeMs reads it (a date, time and offset that exist) as every time.
 */
export const OCCURRED_AT = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$/;

export class FraudScoreRequestDto {
  /** The bank's transaction identifier, echoed in the answer. */
  @IsString()
  @Matches(/^[A-Za-z0-9._:-]{1,64}$/, { message: `transactionId ${PATTERN_REASONS.transactionId}` })
  transactionId!: string;

  /**
   * When the transaction happened, ISO 8601 with its UTC offset; its local hour of day is a model input. Not before
   * the gateway's FINANCE_EARLIEST_TIME (2000-01-01T00:00:00Z by default): an earlier one, a placeholder date, is
   * refused with 422 TIME_OUT_OF_RANGE, as is one further ahead of the gateway's clock than
   * FINANCE_FUTURE_TOLERANCE_MS (5 minutes by default).
   */
  // The compiled schema's verdict (fraudItemErrors): validator's isISO8601 took 24:00 and refused a lower-case t.
  @IsIsoTime(OCCURRED_AT)
  @MatchesPattern(OCCURRED_AT, { message: `occurredAt ${PATTERN_REASONS.occurredAt}` })
  @ApiProperty({ example: '2026-11-23T14:05:00+01:00' })
  occurredAt!: string;

  /** Amount in the transaction currency (the reference model was trained on EUR amounts). */
  @IsNumber(FINITE, { message: 'amount must be a finite number' })
  @Min(0)
  @Max(1_000_000_000)
  amount!: number;

  /** ISO 4217 currency code. */
  @IsIn(CURRENCIES, { message: `currency ${CODE_REASONS.currency}` })
  @ApiProperty({ example: 'EUR' })
  currency!: string;

  /** Opaque token for the card from the bank's vault: never a card number (refused with 422). */
  @IsString()
  @MinLength(8)
  @MaxLength(128)
  cardToken!: string;

  @IsOptional()
  @ValidateNested()
  @Type(() => MerchantDto)
  merchant?: MerchantDto;

  @IsOptional()
  @IsIn(CHANNELS)
  @ApiProperty({ enum: CHANNELS, required: false })
  channel?: (typeof CHANNELS)[number];

  @ValidateNested()
  @Type(() => FraudFeaturesDto)
  @IsObject()
  features!: FraudFeaturesDto;
}

export class FraudBatchRequestDto {
  /**
   * Up to 10,000 transactions; each is validated and scored on its own. A transactionId is scored once
   * per batch: the first valid item with it is scored, each later valid one gets the error
   * DUPLICATE_TRANSACTION_ID naming that item's index.
   */
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_BATCH_TRANSACTIONS)
  @IsObject({ each: true, message: 'each transaction must be an object' })
  @ApiProperty({ type: [FraudScoreRequestDto], maxItems: MAX_BATCH_TRANSACTIONS })
  transactions!: object[];
}

export class FeatureContributionDto {
  /** Input field, e.g. `features.v14`, `amount`, `occurredAt` (hour of day). */
  feature!: string;
  /** Probability as sent minus probability with this input at its typical value. */
  contribution!: number;
  @ApiProperty({ enum: ['raises-risk', 'lowers-risk'] })
  direction!: 'raises-risk' | 'lowers-risk';
}

export class ModelRefDto {
  name!: string;
  version!: string;
}

/** A transaction's score, as a batch item carries it (the batch has the one request id). */
export class FraudItemScoreDto {
  transactionId!: string;
  /** Probability of fraud at the model's training prior. */
  fraudProbability!: number;
  @ApiProperty({ enum: FRAUD_DECISIONS })
  decision!: FraudDecision;
  /**
   * Up to five inputs that moved the probability most, largest first; none whose contribution rounds to 0
   * (at a saturated probability, fewer or none).
   */
  @ApiProperty({ type: [FeatureContributionDto] })
  topFeatures!: FeatureContributionDto[];
  model!: ModelRefDto;
}

export class FraudScoreDto extends FraudItemScoreDto {
  requestId!: string;
}

/** The codes a batch item's error carries. */
export const BATCH_ITEM_ERROR_CODES = [
  'VALIDATION_FAILED',
  'PAN_DETECTED',
  'DUPLICATE_TRANSACTION_ID',
  'TIME_OUT_OF_RANGE',
] as const satisfies readonly ErrorCode[];

export class BatchItemErrorDto {
  /**
   * Why the item was not scored: VALIDATION_FAILED (a field is invalid), PAN_DETECTED (it carries a card
   * number), DUPLICATE_TRANSACTION_ID (an earlier valid item of the batch has its transactionId and is
   * the one scored; the reason gives that item's index), TIME_OUT_OF_RANGE (its occurredAt is
   * before FINANCE_EARLIEST_TIME, a placeholder date such as 0001-01-01 or 1970-01-01, or further ahead of the
   * gateway's clock than FINANCE_FUTURE_TOLERANCE_MS).
   */
  @ApiProperty({ enum: BATCH_ITEM_ERROR_CODES })
  code!: (typeof BATCH_ITEM_ERROR_CODES)[number];
  detail!: string;
  /** Field-level reasons, as in an error answer's `errors`. */
  errors!: FieldErrorDto[];
}

export class FraudBatchItemDto {
  @ApiProperty({ type: 'integer' })
  index!: number;
  @ApiProperty({ type: FraudItemScoreDto, required: false })
  result?: FraudItemScoreDto;
  @ApiProperty({ type: BatchItemErrorDto, required: false })
  error?: BatchItemErrorDto;
}

export class FraudBatchResultDto {
  @ApiProperty({ type: [FraudBatchItemDto] })
  items!: FraudBatchItemDto[];
  @ApiProperty({ type: 'integer' })
  scored!: number;
  @ApiProperty({ type: 'integer' })
  failed!: number;
  model!: ModelRefDto;
  requestId!: string;
}
