import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ArgumentMetadata } from '@nestjs/common';
import Ajv from 'ajv';
import { IsArray, IsBoolean, IsInt, IsNumber, IsString } from 'class-validator';
import { AuditEventsQueryDto } from '../../src/audit/audit.dto';
import { AppError, MAX_FIELD_ERRORS, MORE_FIELDS } from '../../src/common/errors/app-error';
import { createValidationPipe, MAX_OBJECT_MEMBERS } from '../../src/common/errors/validation';
import { toFieldError } from '../../src/domains/finance/batch-envelope.util';
import { CreditAssessmentRequestDto, CreditBatchApplicationDto } from '../../src/domains/finance/credit-assessment.dto';
import { AssetDto } from '../../src/domains/manufacturing/assets/asset.dto';
import { PredictionsQueryDto, ReadingBatchDto } from '../../src/domains/manufacturing/manufacturing.dto';
import { APPLICANT } from '../fixtures/finance-data';
import { millAsset } from '../fixtures/plant-data';

const body = (metatype: ArgumentMetadata['metatype']): ArgumentMetadata => ({ type: 'body', metatype });
const pipe = createValidationPipe();

/** The field errors the pipe answers for a value, or [] when it passes. */
async function refusedFields(value: unknown, metadata: ArgumentMetadata): Promise<string[]> {
  try {
    await pipe.transform(value, metadata);
    return [];
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    assert.equal(error.code, 'VALIDATION_FAILED');
    return error.fields.map((f) => f.field);
  }
}

describe('the validation pipe: unknown fields', () => {
  // class-transformer never copies a key that names a member of Object.prototype (toString, constructor, ...), so
  // class-validator's whitelist never saw it: such a field was dropped in silence where any other is refused.
  it('refuses a field named after an Object.prototype member, as any other unknown field', async () => {
    assert.deepEqual(await refusedFields({ ...APPLICANT, age: 40 }, body(CreditAssessmentRequestDto)), ['age']);
    // `prototype` as well: Nest's pipe deletes it (with constructor) before the whitelist looks.
    for (const key of ['toString', 'hasOwnProperty', 'valueOf', 'constructor', 'isPrototypeOf', 'prototype']) {
      assert.deepEqual(await refusedFields({ ...APPLICANT, [key]: 1 }, body(CreditAssessmentRequestDto)), [key]);
    }
    const asset = millAsset('mill-1');
    assert.deepEqual(await refusedFields({ ...asset, prototype: 1 }, body(AssetDto)), ['prototype']);
  });

  it('looks into nested DTOs and arrays of them, but not into free-form maps such as readings values', async () => {
    const asset = millAsset('mill-1');
    const sensors = asset.sensors as Array<Record<string, unknown>>;
    const nestedSensor = { ...asset, sensors: [{ ...sensors[0], toString: 'x' }, ...sensors.slice(1)] };
    assert.deepEqual(await refusedFields(nestedSensor, body(AssetDto)), ['sensors[0].toString']);
    const nestedAlarm = { ...asset, alarm: { ...(asset.alarm as object), valueOf: 1 } };
    assert.deepEqual(await refusedFields(nestedAlarm, body(AssetDto)), ['alarm.valueOf']);
    const reading = { timestamp: '2026-12-05T10:00:00Z', values: { torque: 40, toString: 1 } };
    assert.deepEqual(await refusedFields({ readings: [reading] }, body(ReadingBatchDto)), []);
    assert.deepEqual(await refusedFields({ readings: [{ ...reading, constructor: 1 }] }, body(ReadingBatchDto)), [
      'readings[0].constructor',
    ]);
  });

  it("hands an @AsSent map (an asset's constants) on as sent, keys the pipe and class-transformer drop included", async () => {
    const constants = { Type: 'L', toString: 'x', constructor: 'y', prototype: 'z' };
    const sent = { ...millAsset('mill-1'), constants: { ...constants } };
    const dto = (await pipe.transform(sent, body(AssetDto))) as AssetDto;
    assert.deepEqual(dto.constants, constants);
  });

  it('refuses such a query parameter too', async () => {
    const query: ArgumentMetadata = { type: 'query', metatype: AuditEventsQueryDto };
    assert.deepEqual(await refusedFields({ limit: '2' }, query), []);
    assert.deepEqual(await refusedFields({ limit: '2', toString: '1' }, query), ['toString']);
  });

  // The credit routes echoed an unknown field's name whole (a 5,000-character key came back in the answer, its
  // detail and a batch's kept copy) where the fraud routes cut it at 100 characters: every route now cuts it alike.
  it('names a long unknown field as the fraud routes do: cut at 100 characters, never inside an emoji', async () => {
    const long = 'k'.repeat(5_000);
    const emojiAtCut = `${'k'.repeat(99)}\u{1F600}${'k'.repeat(4_900)}`;
    const cases: Array<[unknown, ArgumentMetadata, string]> = [
      [{ ...APPLICANT, [long]: 1 }, body(CreditAssessmentRequestDto), `${'k'.repeat(100)}…`],
      [{ ...APPLICANT, [emojiAtCut]: 1 }, body(CreditAssessmentRequestDto), `${'k'.repeat(99)}…`],
      [{ ...APPLICANT, applicationId: 'a-1', [emojiAtCut]: 1 }, body(CreditBatchApplicationDto), `${'k'.repeat(99)}…`],
      [{ limit: '2', [long]: '1' }, { type: 'query', metatype: AuditEventsQueryDto }, `${'k'.repeat(100)}…`],
    ];
    for (const [value, metadata, named] of cases) {
      const error = await pipe.transform(value, metadata).then(
        () => assert.fail('accepted'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof AppError, String(error));
      assert.deepEqual(error.fields, [{ field: named, reason: 'is not an accepted field' }]);
      assert.equal(error.detail, `${named}: is not an accepted field`);
      assert.equal(named.toWellFormed(), named);
    }
    // A nested DTO's unknown field too, the path before it kept.
    const asset = millAsset('mill-1');
    const sensors = asset.sensors as Array<Record<string, unknown>>;
    const nested = { ...asset, sensors: [{ ...sensors[0], [emojiAtCut]: 1 }, ...sensors.slice(1)] };
    assert.deepEqual(await refusedFields(nested, body(AssetDto)), [`sensors[0].${'k'.repeat(99)}…`]);
    // A short one is named as sent.
    assert.deepEqual(await refusedFields({ ...APPLICANT, '\u{1F600}': 1 }, body(CreditAssessmentRequestDto)), [
      '\u{1F600}',
    ]);
  });

  // A key of digits alone was named as an array index, `[4111111111111111]`, as class-validator sent it: a card number
  // sent as a query parameter's name (`?4111111111111111=1`) came back whole, and a long one was never cut.
  it('names an unknown field of digits alone as any other: never a card number, cut at 100 characters', async () => {
    const query: ArgumentMetadata = { type: 'query', metatype: AuditEventsQueryDto };
    for (const pan of ['4222222222222', '4111111111111111', '4917610000000000003']) {
      assert.deepEqual(await refusedFields({ [pan]: '1' }, query), ['(card number)'], pan);
      assert.deepEqual(await refusedFields({ ...APPLICANT, [pan]: 1 }, body(CreditAssessmentRequestDto)), [
        '(card number)',
      ]);
    }
    assert.deepEqual(await refusedFields({ ['7'.repeat(5_000)]: '1' }, query), [`${'7'.repeat(100)}…`]);
    assert.deepEqual(await refusedFields({ '42': '1' }, query), ['42']);
    // An item of a list is still named by its index.
    const asset = millAsset('mill-1');
    const sensors = asset.sensors as Array<Record<string, unknown>>;
    assert.deepEqual(
      await refusedFields({ ...asset, sensors: [sensors[0], { ...sensors[1], x: 1 }] }, body(AssetDto)),
      ['sensors[1].x'],
    );
  });
});

describe('the validation pipe: a body that is not an object', () => {
  // Each field's error (`[0]: property 0 should not exist; creditLimit: ...`) told the caller nothing of
  // what was wrong: the fraud routes' compiled schema answers the one field, the body.
  it('is refused once, naming the body, in the fraud routes words', async () => {
    for (const value of [null, undefined, 'x', 7, true, [], [APPLICANT]]) {
      try {
        await pipe.transform(value, body(CreditAssessmentRequestDto));
        assert.fail(`${JSON.stringify(value)} passed`);
      } catch (error) {
        assert.ok(error instanceof AppError, String(error));
        assert.equal(error.code, 'VALIDATION_FAILED');
        assert.deepEqual(error.fields, [{ field: '(body)', reason: 'must be object' }], JSON.stringify(value));
        assert.equal(error.detail, '(body): must be object');
      }
    }
    assert.deepEqual(await refusedFields(APPLICANT, body(CreditAssessmentRequestDto)), []);
  });
});

describe('the validation pipe: a list of readings', () => {
  // ValidateNested looked into an array in the list rather than refusing it: `[[]]` passed, and the controller
  // took it for a reading without a timestamp (200, a dead letter) where `[null]` and `[1]` got 400.
  it('refuses an item that is not an object, an array included, naming its index', async () => {
    const reading = { timestamp: '2026-12-05T10:00:00Z', values: { torque: 40 } };
    for (const item of [[], [reading], null, 1, 'x']) {
      try {
        await pipe.transform({ readings: [reading, item] }, body(ReadingBatchDto));
        assert.fail(`${JSON.stringify(item)} passed`);
      } catch (error) {
        assert.ok(error instanceof AppError, String(error));
        assert.deepEqual(error.fields, [{ field: 'readings[1]', reason: 'must be an object' }], JSON.stringify(item));
      }
    }
    assert.deepEqual(await refusedFields({ readings: [reading] }, body(ReadingBatchDto)), []);
  });
});

describe('the validation pipe: a value of the wrong type', () => {
  /** The field errors (with their reasons) the pipe answers for a value. */
  async function refusal(
    value: unknown,
    metadata: ArgumentMetadata,
  ): Promise<Array<{ field: string; reason: string }>> {
    try {
      await pipe.transform(value, metadata);
    } catch (error) {
      assert.ok(error instanceof AppError, String(error));
      return error.fields;
    }
    assert.fail(`${JSON.stringify(value)} passed`);
  }
  const credit = body(CreditAssessmentRequestDto);
  const query: ArgumentMetadata = { type: 'query', metatype: AuditEventsQueryDto };

  // class-validator runs every check of a field whatever its value: a number sent as a string was told it is both
  // more than 10,000,000 and less than 1, besides what it is.
  it('is told what type the field takes, not that it is both too large and too small', async () => {
    for (const creditLimit of ['140000', null, true, {}, [140000]]) {
      assert.deepEqual(
        await refusal({ ...APPLICANT, creditLimit }, credit),
        [{ field: 'creditLimit', reason: 'must be a number' }],
        JSON.stringify(creditLimit),
      );
    }
    assert.deepEqual(await refusal({ ...APPLICANT, repaymentStatus: [2, '2', 0, 0, 0, 0] }, credit), [
      { field: 'repaymentStatus[1]', reason: 'must be a whole number' },
    ]);
    for (const paymentAmounts of [0, '0,0,0,0,0,0', null, { 0: 1 }]) {
      assert.deepEqual(
        await refusal({ ...APPLICANT, paymentAmounts }, credit),
        [{ field: 'paymentAmounts', reason: 'must be a list' }],
        JSON.stringify(paymentAmounts),
      );
    }
    assert.deepEqual(await refusal({ limit: 'abc' }, query), [{ field: 'limit', reason: 'must be a whole number' }]);
    // A value of the right type is still told each range it breaks.
    assert.deepEqual(await refusal({ ...APPLICANT, creditLimit: 0 }, credit), [
      { field: 'creditLimit', reason: 'must not be less than 1' },
    ]);
    assert.deepEqual(await refusal({ ...APPLICANT, paymentAmounts: [1, 2] }, credit), [
      { field: 'paymentAmounts', reason: 'must contain at least 6 items' },
    ]);
  });

  // The compiled schemas (the fraud routes) said these in class-validator's words, `must be an integer number`,
  // `must be a boolean value`, ...: both now say PLAIN_REASONS'.
  it('is told in the same plain words as the compiled schemas tell it', async () => {
    class EveryTypeDto {
      @IsNumber() number!: number;
      @IsInt() integer!: number;
      @IsString() string!: string;
      @IsBoolean() boolean!: boolean;
      @IsArray() array!: unknown[];
    }
    const schema = { type: 'object', properties: {} as Record<string, { type: string }> };
    for (const type of ['number', 'integer', 'string', 'boolean', 'array']) schema.properties[type] = { type };
    const validate = new Ajv({ allErrors: true }).compile(schema);
    const sent = { number: '1', integer: 1.5, string: 5, boolean: 'yes', array: { 0: 1 } };
    const plain = [
      { field: 'number', reason: 'must be a number' },
      { field: 'integer', reason: 'must be a whole number' },
      { field: 'string', reason: 'must be text' },
      { field: 'boolean', reason: 'must be true or false' },
      { field: 'array', reason: 'must be a list' },
    ];
    assert.deepEqual(await refusal(sent, body(EveryTypeDto)), plain);
    assert.equal(validate(sent), false);
    assert.deepEqual((validate.errors ?? []).map(toFieldError), plain);
  });

  // class-validator names the array for a check made with `each`: a bank's engineer needs the item.
  it('names the item of an array field that fails a check of each value, by its index', async () => {
    assert.deepEqual(await refusal({ ...APPLICANT, repaymentStatus: [0, 0, 0, 1.5, 0, 0] }, credit), [
      { field: 'repaymentStatus[3]', reason: 'must be a whole number' },
    ]);
    assert.deepEqual(await refusal({ ...APPLICANT, billAmounts: [0, 0, 0, 0, 20_000_000, -20_000_000] }, credit), [
      { field: 'billAmounts[4]', reason: 'must not be greater than 10000000' },
      { field: 'billAmounts[5]', reason: 'must not be less than -10000000' },
    ]);
    assert.deepEqual(await refusal({ ...APPLICANT, paymentAmounts: [-1, 0, 0, 0, 0, 'x'] }, credit), [
      { field: 'paymentAmounts[0]', reason: 'must not be less than 0' },
      { field: 'paymentAmounts[5]', reason: 'must be a number' },
    ]);
    // The array's own checks stay on the array, beside its items'.
    assert.deepEqual(await refusal({ ...APPLICANT, repaymentStatus: [10, 0, 0, 0, 0] }, credit), [
      { field: 'repaymentStatus', reason: 'must contain at least 6 items' },
      { field: 'repaymentStatus[0]', reason: 'must not be greater than 9' },
    ]);
  });

  // A missing field was told what type it must be (a batch application without applicationId: `must be text`), as
  // if one of another type had been sent; the compiled schemas (and ListOf) say it is required.
  it('a field left out is told it is required, whatever its checks', async () => {
    const { creditLimit, education, paymentAmounts, ...rest } = APPLICANT;
    assert.ok(creditLimit && education && paymentAmounts);
    assert.deepEqual(await refusal(rest, credit), [
      { field: 'creditLimit', reason: 'is required' },
      { field: 'education', reason: 'is required' },
      { field: 'paymentAmounts', reason: 'is required' },
    ]);
    assert.deepEqual(await refusal(APPLICANT, body(CreditBatchApplicationDto)), [
      { field: 'applicationId', reason: 'is required' },
    ]);
    const { sensors, ...noSensors } = millAsset('mill-1');
    assert.ok(sensors);
    assert.deepEqual(await refusal(noSensors, body(AssetDto)), [{ field: 'sensors', reason: 'is required' }]);
    // One sent as null is sent: it is told its type.
    assert.deepEqual(await refusal({ ...APPLICANT, applicationId: null }, body(CreditBatchApplicationDto)), [
      { field: 'applicationId', reason: 'must be text' },
    ]);
  });

  // class-transformer makes an object's keys unique in quadratic time: 100,000 unknown keys held the event loop 30 s.
  it('an object with more than MAX_OBJECT_MEMBERS members is refused at once, naming it, not each member', async () => {
    const wide = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 1]));
    const started = Date.now();
    assert.deepEqual(await refusal({ ...APPLICANT, ...wide(100_000) }, credit), [
      { field: '(body)', reason: `has ${100_005} members, more than ${MAX_OBJECT_MEMBERS}` },
    ]);
    assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
    const asset = millAsset('mill-1');
    assert.deepEqual(await refusal({ ...asset, sensors: [asset.sensors, { x: wide(5000) }] }, body(AssetDto)), [
      { field: 'sensors[1].x', reason: `has 5000 members, more than ${MAX_OBJECT_MEMBERS}` },
    ]);
    // Up to the limit the members are refused one by one, the first MAX_FIELD_ERRORS named, the rest counted.
    const named = await refusal({ ...APPLICANT, ...wide(MAX_OBJECT_MEMBERS - 5) }, credit);
    assert.equal(named.length, MAX_FIELD_ERRORS + 1);
    assert.deepEqual(named[MAX_FIELD_ERRORS], {
      field: MORE_FIELDS,
      reason: `${MAX_OBJECT_MEMBERS - 5 - MAX_FIELD_ERRORS} more not listed (at most ${MAX_FIELD_ERRORS} are)`,
    });
  });

  it('reads a count only as decimal digits: hexadecimal, exponents and an empty value are not integers', async () => {
    for (const limit of ['0x10', '1e2', '', ' 5', '5.0', '+5', '0b11']) {
      assert.deepEqual(await refusal({ limit }, query), [{ field: 'limit', reason: 'must be a whole number' }], limit);
      assert.deepEqual(
        await refusal({ limit }, { type: 'query', metatype: PredictionsQueryDto }),
        [{ field: 'limit', reason: 'must be a whole number' }],
        limit,
      );
    }
    assert.deepEqual(await refusal({ limit: '0' }, query), [{ field: 'limit', reason: 'must not be less than 1' }]);
    assert.equal(((await pipe.transform({ limit: '16' }, query)) as AuditEventsQueryDto).limit, 16);
  });

  it('a query parameter given twice is told so, not refused for what its checks make of a list', async () => {
    assert.deepEqual(await refusal({ limit: ['1', '2'] }, query), [
      { field: 'limit', reason: 'must be given once, not 2 times' },
    ]);
    assert.deepEqual(await refusal({ actor: ['a', 'b', 'c'], outcome: ['ok', 'error'] }, query), [
      { field: 'actor', reason: 'must be given once, not 3 times' },
      { field: 'outcome', reason: 'must be given once, not 2 times' },
    ]);
    // One the query does not take is named as not accepted, however often it is given.
    assert.deepEqual(await refusal({ site: ['a', 'b'] }, query), [
      { field: 'site', reason: 'is not an accepted field' },
    ]);
  });
});
