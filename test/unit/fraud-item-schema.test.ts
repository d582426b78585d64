import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { AppError } from '../../src/common/errors/app-error';
import { flattenValidationErrors, MAX_OBJECT_MEMBERS } from '../../src/common/errors/validation';
import { batchItemErrors } from '../../src/domains/finance/fraud-batch.util';
import { FraudScoreRequestDto } from '../../src/domains/finance/fraud-score.dto';
import { fraudItemErrors, parseFraudBatch } from '../../src/domains/finance/fraud-item.schema';
import { ISO_INSTANT, isoTimeMs, NO_SUCH_TIME } from '../../src/common/iso-time';

const features = Object.fromEntries(Array.from({ length: 28 }, (_, i) => [`v${i + 1}`, i / 10 - 1]));
const valid = {
  transactionId: 'tx-1',
  occurredAt: '2026-11-23T03:05:00+01:00',
  amount: 12.5,
  currency: 'EUR',
  cardToken: 'tok_abcdefgh',
  merchant: { id: 'm-1', categoryCode: '5411', country: 'DE', name: 'Shop' },
  channel: 'ecommerce',
  features,
};
const { merchant: _m, channel: _c, ...minimal } = valid;
const RANGE = { floor: { ms: Date.parse('2000-01-01T00:00:00Z'), text: '2000-01-01T00:00:00Z' }, aheadMs: 300_000 };

const SAMPLES: Array<[string, Record<string, unknown>]> = [
  ['valid', valid],
  ['valid without optional fields', minimal],
  ['UTC time', { ...valid, occurredAt: '2026-11-23T03:05:00.123Z' }],
  ['negative amount', { ...valid, amount: -1 }],
  ['amount as text', { ...valid, amount: '12' }],
  ['unknown currency', { ...valid, currency: 'ZZZ' }],
  ['date without time', { ...valid, occurredAt: '2026-11-23' }],
  ['time without its UTC offset', { ...valid, occurredAt: '2026-11-23T03:05:00' }],
  ['valid to the minute', { ...valid, occurredAt: '2026-11-23T03:05+0100' }],
  ['valid in lower case', { ...valid, occurredAt: '2026-11-23t03:05:00z' }],
  ['24:00 to the minute', { ...valid, occurredAt: '2026-11-23T24:00Z' }],
  ['offset past 23:59', { ...valid, occurredAt: '2026-11-23T03:05:00+25:00' }],
  ['6-digit year', { ...valid, occurredAt: '+002026-11-23T03:05:00Z' }],
  ['bad transaction id', { ...valid, transactionId: 'has space' }],
  ['short card token', { ...valid, cardToken: 'tok' }],
  ['bad channel', { ...valid, channel: 'pigeon' }],
  ['bad merchant country', { ...valid, merchant: { country: 'Germany' } }],
  ['unassigned merchant country', { ...valid, merchant: { country: 'ZZ' } }],
  ['unknown merchant field', { ...valid, merchant: { vat: 'x' } }],
  ['unknown top-level field', { ...valid, sex: 1 }],
  ['missing feature', { ...valid, features: { ...features, v7: undefined } }],
  ['extra feature', { ...valid, features: { ...features, v29: 1 } }],
  ['feature out of range', { ...valid, features: { ...features, v3: 5000 } }],
  ['feature as text', { ...valid, features: { ...features, v3: 'NaN' } }],
  ['missing amount', { ...valid, amount: undefined }],
];

/** The top-level field of each error ("features.v3" -> "features"), the granularity both agree on. */
const roots = (fields: string[]): string[] => [...new Set(fields.map((f) => f.split(/[.[]/)[0]))].sort();

describe('batch items: the compiled schema gives the DTO verdict', () => {
  for (const [label, raw] of SAMPLES) {
    it(label, () => {
      const sample = JSON.parse(JSON.stringify(raw)) as Record<string, unknown>;
      const dto = plainToInstance(FraudScoreRequestDto, sample);
      const viaDto = flattenValidationErrors(validateSync(dto, { whitelist: true, forbidNonWhitelisted: true }));
      const viaSchema = fraudItemErrors(sample);
      assert.deepEqual(
        roots(viaSchema.map((e) => e.field)),
        roots(viaDto.map((e) => e.field)),
        `schema ${JSON.stringify(viaSchema)} vs DTO ${JSON.stringify(viaDto)}`,
      );
      if (label.startsWith('valid') || label === 'UTC time') assert.equal(viaSchema.length, 0);
      else assert.ok(viaSchema.length > 0);
    });
  }
});

describe('batch items: a value its pattern refuses is told what the field must be, as the DTO tells it', () => {
  // ajv's words quoted the regular expression: `occurredAt: must match pattern "^\d{4}-\d{2}-\d{2}[Tt]..."`.
  it('names what the field takes, not the pattern', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...valid, transactionId: 'has space' }, 'transactionId'],
      [{ ...valid, occurredAt: 'yesterday' }, 'occurredAt'],
      [{ ...valid, merchant: { categoryCode: '54' } }, 'merchant.categoryCode'],
    ];
    for (const [sample, field] of cases) {
      const viaSchema = fraudItemErrors(sample);
      const viaDto = flattenValidationErrors(
        validateSync(plainToInstance(FraudScoreRequestDto, sample), { whitelist: true, forbidNonWhitelisted: true }),
      );
      assert.equal(viaSchema.length, 1, JSON.stringify(viaSchema));
      assert.equal(viaSchema[0].field, field);
      assert.doesNotMatch(viaSchema[0].reason, /pattern/);
      assert.ok(
        viaDto.some((e) => e.field === field && e.reason === viaSchema[0].reason),
        `schema ${JSON.stringify(viaSchema)} vs DTO ${JSON.stringify(viaDto)}`,
      );
    }
    assert.deepEqual(fraudItemErrors({ ...valid, transactionId: 'x'.repeat(65) }), [
      { field: 'transactionId', reason: 'must be 1-64 letters, digits or ._:-' },
    ]);
  });
});

describe('occurredAt: read as common/iso-time reads an instant, 4-digit years only', () => {
  const errorsOf = (occurredAt: string) => fraudItemErrors({ ...valid, occurredAt });

  it('a date, time or offset that does not exist is refused in its words', () => {
    for (const occurredAt of [
      '2026-02-30T10:00:00Z',
      '2026-12-31T24:00:00Z',
      '2026-12-31T24:00Z',
      '2016-12-31T23:59:60Z',
      '2026-11-23T10:00:00+25:00',
      '2026-11-23T10:00:00+2500',
      '2026-11-23T10:00:00-24:00',
      '2026-11-23T10:00:00+01:60',
    ]) {
      assert.deepEqual(errorsOf(occurredAt), [{ field: 'occurredAt', reason: NO_SUCH_TIME }], occurredAt);
      assert.ok(Number.isNaN(isoTimeMs(occurredAt, ISO_INSTANT)), occurredAt);
    }
  });

  it('takes what it took: offsets to 23:59 with or without a colon, lower case, to the minute or nanosecond', () => {
    for (const occurredAt of [
      '2026-11-23T10:00:00+23:59',
      '2026-11-23T10:00:00-2359',
      '2026-11-23t10:00z',
      '2026-11-23T10:00:00.123456789+05:30',
      '2028-02-29T23:59:59Z',
    ]) {
      assert.deepEqual(errorsOf(occurredAt), [], occurredAt);
    }
  });

  it('a 6-digit signed year, which ISO_INSTANT takes, is not a transaction time', () => {
    assert.ok(!Number.isNaN(isoTimeMs('+002026-11-23T10:00:00Z', ISO_INSTANT)));
    assert.deepEqual(
      errorsOf('+002026-11-23T10:00:00Z').map((e) => e.field),
      ['occurredAt'],
    );
  });
});

describe('an unknown field is named by its key, a long one cut', () => {
  it('between two characters, never between the halves of one: the error text is well formed', () => {
    // The 100th UTF-16 unit is the first half of an emoji: cut there, the name held a lone surrogate, which the
    // answer carried and its copy kept for an Idempotency-Key replayed as U+FFFD.
    for (const key of ['a'.repeat(99) + '\u{1F600}tail', 'a'.repeat(98) + '\u{1F600}tail', '\u{1F600}'.repeat(80)]) {
      const [error] = fraudItemErrors({ ...valid, [key]: 1 });
      assert.ok(error.field.isWellFormed(), JSON.stringify(error.field));
      assert.ok(error.field.endsWith('…'));
      assert.ok(key.startsWith(error.field.slice(0, -1)));
    }
  });
});

describe('an object wider than any route takes is refused before the compiled schema looks', () => {
  const wide = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 1]));
  const reason = (members: number) => `has ${members} members, more than ${MAX_OBJECT_MEMBERS}`;

  it('naming the object once, in the words of the class-validator routes, not each unknown key', () => {
    const { amount: _a, ...noAmount } = valid;
    // ajv would also say amount is required: the one error is the check's, made before ajv ran.
    assert.deepEqual(fraudItemErrors({ ...noAmount, ...wide(50_000) }), [{ field: '(body)', reason: reason(50_007) }]);
    assert.deepEqual(fraudItemErrors({ ...valid, ...wide(50_000) }, '(item)'), [
      { field: '(item)', reason: reason(50_008) },
    ]);
    assert.deepEqual(fraudItemErrors({ ...valid, features: { ...features, ...wide(5000) } }), [
      { field: 'features', reason: reason(5028) },
    ]);
    // Up to the limit each unknown key is still named (and the list capped where it is answered).
    assert.equal(fraudItemErrors({ ...valid, ...wide(MAX_OBJECT_MEMBERS - 8) }).length, MAX_OBJECT_MEMBERS - 8);
  });

  it("a batch's envelope and each of its items alike", () => {
    assert.throws(
      () => parseFraudBatch({ transactions: [valid], ...wide(50_000) }),
      (e: AppError) =>
        e.code === 'VALIDATION_FAILED' &&
        JSON.stringify(e.fields) === JSON.stringify([{ field: '(body)', reason: reason(50_001) }]),
    );
    const [item, other] = batchItemErrors([{ ...valid, ...wide(50_000) }, valid], RANGE);
    assert.deepEqual(item?.errors, [{ field: '(item)', reason: reason(50_008) }]);
    assert.equal(item?.code, 'VALIDATION_FAILED');
    assert.equal(other, undefined);
  });
});
