import Ajv, { _, ErrorObject, KeywordCxt } from 'ajv';
import { AppError, FieldError, summariseFields } from '../../common/errors/app-error';
import { tooWideError } from '../../common/errors/validation';
import { isoTimeMs, NO_SUCH_TIME, TimeRange, timeRangeRefusal } from '../../common/iso-time';
import {
  CHANNELS,
  CODE_REASONS,
  COUNTRIES,
  CURRENCIES,
  FraudScoreRequestDto,
  MAX_BATCH_TRANSACTIONS,
  OCCURRED_AT,
  PATTERN_REASONS,
} from './fraud-score.dto';
import { batchEnvelope, toFieldError } from './batch-envelope.util';

/**
 * The FraudScoreRequestDto rules as one compiled JSON schema, for single transactions and batch
 * items alike (so an item gets the same errors alone and in a batch): class-transformer and
 * class-validator cost about 150 µs per transaction, which neither a card authorisation's budget nor
 * a 10,000-item batch can afford; this costs a few. A unit test holds the two to the same verdicts.
 */
const NUMBER = { type: 'number', minimum: -1000, maximum: 1000 };
export const FRAUD_ITEM_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['transactionId', 'occurredAt', 'amount', 'currency', 'cardToken', 'features'],
  properties: {
    transactionId: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,64}$' },
    occurredAt: { type: 'string', pattern: OCCURRED_AT.source },
    amount: { type: 'number', minimum: 0, maximum: 1_000_000_000 },
    currency: { enum: CURRENCIES },
    cardToken: { type: 'string', minLength: 8, maxLength: 128 },
    merchant: {
      type: 'object',
      additionalProperties: false,
      properties: {
        id: { type: 'string', maxLength: 64 },
        categoryCode: { type: 'string', pattern: '^\\d{4}$' },
        country: { type: 'string', isoCountry: true },
        name: { type: 'string', maxLength: 128 },
      },
    },
    channel: { enum: CHANNELS },
    features: {
      type: 'object',
      additionalProperties: false,
      required: Array.from({ length: 28 }, (_, i) => `v${i + 1}`),
      properties: Object.fromEntries(Array.from({ length: 28 }, (_, i) => [`v${i + 1}`, NUMBER])),
    },
  },
};

const ajv = new Ajv({ allErrors: true, strict: true });
// A country is one Set lookup (an enum of 249 codes compiles to up to 249 comparisons), refused in the
// words of CODE_REASONS, as an unknown currency is.
ajv.addKeyword({
  keyword: 'isoCountry',
  type: 'string',
  schemaType: 'boolean',
  error: { message: 'must be equal to one of the allowed values' },
  code(cxt: KeywordCxt) {
    const countries = cxt.gen.scopeValue('obj', { ref: COUNTRIES });
    cxt.fail(_`!${countries}.has(${cxt.data})`);
  },
});
const validate = ajv.compile<FraudScoreRequestDto>(FRAUD_ITEM_SCHEMA);
const fraudBatch = batchEnvelope('transactions', MAX_BATCH_TRANSACTIONS);

/**
 * The batch envelope, checked without copying its items (the route skips the class-based pipe);
 * each item is then checked on its own by fraudItemErrors.
 */
export function parseFraudBatch(body: unknown): unknown[] {
  return fraudBatch.items(body);
}

/**
 * A card number outside the items (an envelope field, a key, a body that is one), refused as on the single route:
 * 422 naming it; the items' own are each item's error.
 */
export function envelopePanRefusal(body: unknown, bodyDigits?: string): AppError | undefined {
  return fraudBatch.panRefusal(body, bodyDigits);
}

/** A single transaction (the route skips the class-based pipe), or 400 naming each bad field. */
export function parseFraudScoreRequest(body: unknown): FraudScoreRequestDto {
  const fields = fraudItemErrors(body);
  if (fields.length === 0) return body as FraudScoreRequestDto;
  throw new AppError('VALIDATION_FAILED', summariseFields(fields), { fields });
}

/**
 * Field errors of one transaction (`whole`: what its errors name it by, the body or a batch item), empty when it is a
 * valid fraud score request. An object in it with more members than any other route takes (tooWideError) is refused
 * before ajv, which words an error for each unknown key before the list is capped (100,000 keys: about 340 ms of the
 * event loop).
 */
export function fraudItemErrors(item: unknown, whole = '(body)'): FieldError[] {
  const wide = tooWideError(item, whole);
  if (wide) return [wide];
  if (validate(item)) {
    // The form passed (OCCURRED_AT): whether its date, time and offset exist, as the gateway reads every time.
    return Number.isNaN(isoTimeMs(item.occurredAt, OCCURRED_AT)) ? [{ field: 'occurredAt', reason: NO_SUCH_TIME }] : [];
  }
  return (validate.errors ?? []).map(fieldError);
}

/**
 * An ajv error as a field error, a value its pattern refuses told in the DTO's words (PATTERN_REASONS), and a code not
 * on a standard's list what list it takes (CODE_REASONS).
 */
function fieldError(error: ErrorObject): FieldError {
  const field = toFieldError(error);
  const reason =
    error.keyword === 'pattern'
      ? PATTERN_REASONS[field.field]
      : error.keyword === 'enum' || error.keyword === 'isoCountry'
        ? CODE_REASONS[field.field]
        : undefined;
  return reason === undefined ? field : { ...field, reason };
}

const TIME_SETTINGS = { floor: 'FINANCE_EARLIEST_TIME', ahead: 'FINANCE_FUTURE_TOLERANCE_MS' };

/**
 * A valid transaction's occurredAt outside `range` (before FINANCE_EARLIEST_TIME, or further ahead of the clock than
 * FINANCE_FUTURE_TOLERANCE_MS): the field error of its TIME_OUT_OF_RANGE (422: the form is right, the time a
 * placeholder such as 0001-01-01 or one that has not come yet), or undefined.
 */
export function timeRangeError(item: FraudScoreRequestDto, range: TimeRange): FieldError | undefined {
  const reason = timeRangeRefusal(item.occurredAt, OCCURRED_AT, range, TIME_SETTINGS);
  return reason === undefined ? undefined : { field: 'occurredAt', reason };
}

/** A single transaction whose occurredAt is outside `range`: 422 TIME_OUT_OF_RANGE naming the field. */
export function refuseTimeOutOfRange(item: FraudScoreRequestDto, range: TimeRange): void {
  const field = timeRangeError(item, range);
  if (field) throw new AppError('TIME_OUT_OF_RANGE', `${field.field}: ${field.reason}`, { fields: [field] });
}
