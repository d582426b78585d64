import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { requestIdFor } from '../../src/common/http/request-id';
import { contributions, occlusionBatch, writeOcclusionRows } from '../../src/domains/finance/attribution.util';
import { creditDecision, gradeOf } from '../../src/domains/finance/credit-assessment.service';
import {
  baselinesOf,
  featurePlan,
  FeatureSpec,
  hourOfDay,
  parseFeatureSpecs,
  sourcesOf,
  transformed,
  writePlannedRow,
} from '../../src/domains/finance/feature-vector.util';
import { fraudItemErrors } from '../../src/domains/finance/fraud-item.schema';
import { decide, secondsOfDay } from '../../src/domains/finance/fraud-scoring.service';
import { containsPan, luhnValid, panFields, panRefusal } from '../../src/domains/finance/pan-guard.util';
import { adverseReasons } from '../../src/domains/finance/reason-codes';
import { tx } from '../fixtures/finance-data';

/** Typical values (the credit model's baselines) and an applicant late on payments, with high balances. */
const TYPICAL = {
  PAY_0: 0,
  PAY_2: 0,
  PAY_4: 0,
  BILL_AMT1: 22334,
  BILL_AMT2: 20993,
  PAY_AMT1: 2100,
  LIMIT_BAL: 140000,
  EDUCATION: 2,
};
const LATE_AND_HIGH = {
  PAY_0: 2,
  PAY_2: 2,
  PAY_4: 1,
  BILL_AMT1: 90000,
  BILL_AMT2: 80000,
  PAY_AMT1: 0,
  LIMIT_BAL: 20000,
  EDUCATION: 3,
};

const SPECS: FeatureSpec[] = parseFeatureSpecs(
  {
    features: [
      { name: 'a', source: 'A', transform: 'none', mean: 1, scale: 2, baseline: 1 },
      { name: 'b_log', source: 'B', transform: 'log1p', mean: 0, scale: 1, baseline: 0 },
      { name: 'c_is_2', source: 'C', transform: 'one_hot:2', mean: 0.5, scale: 0.5, baseline: 1 },
      { name: 'c_is_3', source: 'C', transform: 'one_hot:3', mean: 0.5, scale: 0.5, baseline: 1 },
    ],
  },
  'test-model',
);

describe('finance: features, attributions, reasons, card numbers', () => {
  it('standardises raw fields with the manifest transforms', () => {
    const row = new Float32Array(4);
    writePlannedRow(featurePlan(SPECS), [5, Math.E - 1, 3], row); // sources A, B, C
    assert.deepEqual(Array.from(row), [2, 1, -1, 1]);
    assert.equal(hourOfDay(3 * 3600 + 59), 3);
    assert.equal(hourOfDay(25 * 3600), 1);
    assert.equal(secondsOfDay('2026-11-23T03:05:10+01:00'), 3 * 3600 + 5 * 60 + 10);
    assert.equal(secondsOfDay('2026-11-23t03:05:10z'), 3 * 3600 + 5 * 60 + 10);
  });

  it('refuses a manifest transform the gateway does not implement', () => {
    assert.throws(
      () =>
        parseFeatureSpecs(
          { features: [{ name: 'x', source: 'X', transform: 'sqrt', mean: 0, scale: 1, baseline: 0 }] },
          'm',
        ),
      /transform "sqrt" is not one the gateway implements/,
    );
  });

  it('occlusion recovers the exact contributions of a linear model, one batch per request, per raw source', () => {
    // Model: p = 0.5 + sum(w_i * z_i) on the standardised row z; occlusion of source s gives
    // sum over its features of w_i * (z_i - z_i at baseline).
    const w = [0.01, 0.02, -0.03, 0.04];
    const model = (rows: Float32Array, count: number): Float32Array =>
      Float32Array.from({ length: count }, (_, r) => 0.5 + w.reduce((s, wi, i) => s + wi * rows[r * 4 + i], 0));
    const raw = { A: 9, B: 0, C: 3 };
    const batch = occlusionBatch(SPECS, raw);
    assert.equal(batch.count, 4); // the request + one row per source (A, B, C)
    assert.deepEqual(batch.sources, ['A', 'B', 'C']);
    const byName = Object.fromEntries(
      contributions(batch.sources, model(batch.rows, batch.count)).map((c) => [c.source, c.contribution]),
    );
    // A: z = (9-1)/2 = 4 vs baseline 0 -> 0.01 * 4; B at baseline already -> 0;
    // C = 3: z = (-1, +1) vs baseline C = 1: z = (-1, -1) -> 0.04 * 2.
    assert.ok(Math.abs(byName.A - 0.04) < 1e-6, String(byName.A));
    assert.ok(Math.abs(byName.B) < 1e-6);
    assert.ok(Math.abs(byName.C - 0.08) < 1e-6, String(byName.C));
    const ordered = contributions(batch.sources, model(batch.rows, batch.count)).map((c) => c.source);
    assert.deepEqual(ordered, ['C', 'A', 'B']);
  });

  it('occlusion rows equal rows written from scratch with each source at its baseline, at any offset', () => {
    /** The definition: every column from its source's raw value. */
    const writeRow = (raw: Record<string, number>, out: Float32Array, offset: number): void =>
      SPECS.forEach((s, i) => (out[offset + i] = (transformed(raw[s.source], s.transform) - s.mean) / s.scale));
    const raw = { A: -3.5, B: 120, C: 2 };
    const sources = sourcesOf(SPECS);
    const baselines = baselinesOf(SPECS);
    const expected = new Float32Array((sources.length + 1) * 4);
    writeRow(raw, expected, 0);
    sources.forEach((source, k) => writeRow({ ...raw, [source]: baselines[source] }, expected, (k + 1) * 4));
    const plan = featurePlan(SPECS);
    assert.equal(featurePlan(SPECS), plan); // worked out once per feature list
    const out = new Float32Array(3 * expected.length).fill(7);
    writeOcclusionRows(
      plan,
      sources.map((s) => raw[s as keyof typeof raw]),
      out,
      sources.length + 1, // the second item of three
    );
    assert.deepEqual(Array.from(out.subarray(expected.length, 2 * expected.length)), Array.from(expected));
    assert.ok(out.subarray(0, expected.length).every((v) => v === 7));
    assert.ok(out.subarray(2 * expected.length).every((v) => v === 7));
  });

  it('the top contributions are the first ones of the full ranking, ties kept in source order', () => {
    const sources = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const p = [0.5, 0.375, 0.625, 0.5, 0.25, 0.75, 0.4375, 0.5625]; // effects (exact): 1/8 -1/8 0 1/4 -1/4 1/16 -1/16
    const full = contributions(sources, p);
    assert.deepEqual(
      full.map((c) => c.source),
      ['d', 'e', 'a', 'b', 'f', 'g', 'c'],
    );
    for (let limit = 0; limit <= sources.length; limit++) {
      assert.deepEqual(contributions(sources, p, limit), full.slice(0, limit));
    }
  });

  it('decides with the manifest thresholds', () => {
    const t = { review: 0.08, decline: 0.46 };
    assert.deepEqual(
      [0.01, 0.08, 0.3, 0.46, 0.9].map((p) => decide(p, t)),
      ['approve', 'review', 'review', 'decline', 'decline'],
    );
  });

  it('decides and grades on the probability the answer shows, not the runtime float32 below it', () => {
    // The runtime answers float32: float32(0.08) = 0.0799999982, shown as 0.08, must meet a 0.08 threshold.
    const at = (x: number) => Math.fround(x);
    assert.ok(at(0.08) < 0.08 && at(0.35) < 0.35);
    assert.equal(decide(at(0.08), { review: 0.08, decline: 0.46 }), 'review');
    assert.equal(decide(0.0799996, { review: 0.08, decline: 0.46 }), 'review'); // shown as 0.08
    assert.equal(decide(0.0799994, { review: 0.08, decline: 0.46 }), 'approve'); // shown as 0.079999
    assert.equal(creditDecision(at(0.08), { review: 0.08, decline: 0.61 }), 'refer');
    const grades = [
      { grade: 'C', min: 0.2, max: 0.35 },
      { grade: 'D', min: 0.35, max: 0.6 },
    ];
    assert.equal(gradeOf(at(0.35), { grades }), 'D');
    assert.equal(gradeOf(0.349999, { grades }), 'C');
  });

  it('adverse-action reasons: only one whose text is true of the value, against its baseline', () => {
    const raised = (source: string) => ({ source, contribution: 0.05 });
    const sources = ['PAY_0', 'PAY_3', 'BILL_AMT1', 'PAY_AMT1', 'LIMIT_BAL'];
    const codes = (values: Record<string, number>) =>
      adverseReasons(sources.map(raised), values, TYPICAL)
        .map((r) => r.code)
        .sort();
    // Paid in full, nothing owed, paid more than is typical, a high limit: nothing late or high to name,
    // only the idle credit line.
    assert.deepEqual(codes({ PAY_0: -1, PAY_3: -1, BILL_AMT1: 0, PAY_AMT1: 9000, LIMIT_BAL: 500000 }), ['RC07']);
    assert.deepEqual(codes({ PAY_0: -2, PAY_3: 0, BILL_AMT1: 22334, PAY_AMT1: 2100, LIMIT_BAL: 140000 }), ['RC07']);
    assert.deepEqual(codes({ PAY_0: -1, PAY_3: -1, BILL_AMT1: 22334, PAY_AMT1: 2100, LIMIT_BAL: 140000 }), []);
    // On the adverse side, each its own reason.
    assert.deepEqual(codes({ PAY_0: 1, PAY_3: 2, BILL_AMT1: 90000, PAY_AMT1: 0, LIMIT_BAL: 20000 }), [
      'RC01',
      'RC02',
      'RC03',
      'RC04',
    ]);
  });

  it('adverse-action reasons: positive contributions summed per code, at most four, largest first', () => {
    const reasons = adverseReasons(
      [
        { source: 'PAY_0', contribution: 0.2 },
        { source: 'PAY_2', contribution: 0.05 },
        { source: 'BILL_AMT1', contribution: 0.03 },
        { source: 'BILL_AMT2', contribution: 0.02 },
        { source: 'PAY_AMT1', contribution: 0.01 },
        { source: 'LIMIT_BAL', contribution: 0.04 },
        { source: 'PAY_4', contribution: 0.001 },
        { source: 'EDUCATION', contribution: -0.1 },
      ],
      LATE_AND_HIGH,
      TYPICAL,
    );
    assert.deepEqual(
      reasons.map((r) => [r.code, r.contribution]),
      [
        ['RC01', 0.25],
        ['RC03', 0.05],
        ['RC05', 0.04],
        ['RC04', 0.01],
      ],
    );
    assert.equal(reasons[0].text, 'Recent payments delayed or missed');
  });

  it('no reason for a total the answer shows as 0 (float32 noise)', () => {
    // A balance a cent above the typical one: the float32 probabilities differ in their last bit.
    const reasons = adverseReasons(
      [
        { source: 'BILL_AMT1', contribution: 7.45e-9 },
        { source: 'PAY_AMT1', contribution: 4e-7 },
        { source: 'PAY_0', contribution: 0.01 },
      ],
      LATE_AND_HIGH,
      TYPICAL,
    );
    assert.deepEqual(
      reasons.map((r) => [r.code, r.contribution]),
      [['RC01', 0.01]],
    );
  });

  it('finds card numbers by Luhn, written plain or grouped, in any field', () => {
    assert.equal(luhnValid('4111111111111111'), true);
    assert.equal(luhnValid('4111111111111112'), false);
    assert.equal(containsPan('4111 1111 1111 1111'), true);
    assert.equal(containsPan('card 5500-0000-0000-0004 used'), true);
    assert.equal(containsPan('378282246310005'), true); // 15-digit Amex test number
    assert.equal(containsPan('411111111111'), false); // 12 digits
    assert.equal(containsPan('tok_4111111111111112'), false); // fails Luhn
    // Beside other digits: an expiry date, a CVV, a reference before it, a shorter group after it.
    for (const beside of [
      '4111111111111111 12/28',
      '4111111111111111 123',
      '4111111111111111-123',
      '1 4111111111111111',
      '4111 1111 1111 1111 12/28',
      'ref 2026 5500-0000-0000-0004 exp 04/29',
      '99 378282246310005 1234',
    ]) {
      assert.equal(containsPan(beside), true, beside);
    }
    // A run of more than 19 digits is no card number, whatever it holds.
    assert.equal(containsPan('41111111111111111234'), false);
    // Other separators between the printed groups, and full-width digits.
    for (const written of [
      '4111.1111.1111.1111',
      '4111/1111/1111/1111',
      '4111_1111_1111_1111',
      '4111:1111:1111:1111',
      'card 4111  1111  1111  1111',
      '4111 - 1111 - 1111 - 1111',
      '3782.822463.10005',
      '\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11',
      // Pasted from a spreadsheet or a form, or split by what prints as nothing (JSON's \t, \n, \u200b, ...).
      '4111\t1111\t1111\t1111',
      '4111\n1111\n1111\n1111',
      '4111\r\n1111\r\n1111\r\n1111',
      '5500\u20280000\u20280000\u20280004',
      '4111\u200b1111\u200b1111\u200b1111',
      '4111\u00ad1111\u00ad1111\u00ad1111',
      '4111\u20601111\u20601111\u20601111',
      '\ufeff4111111111111111',
      '41111111\u200b11111111',
      // Split by dashes other than ASCII's, as a word processor's autocorrect or a form writes them.
      '4111\u20131111\u20131111\u20131111',
      '4111\u20101111\u20101111\u20101111',
      '4111\u20111111\u20111111\u20111111',
      '4111\u20121111\u20121111\u20121111',
      '4111 \u2014 1111 \u2014 1111 \u2014 1111',
      '4111\u22121111\u22121111\u22121111',
      '4111\ufe631111\ufe631111\ufe631111',
      '3782\u2013822463\u201310005',
      // Digits of other scripts, as a phone or a form set to Arabic, Persian or Hindi writes them.
      '\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661',
      '\u06f4\u06f1\u06f1\u06f1 \u06f1\u06f1\u06f1\u06f1 \u06f1\u06f1\u06f1\u06f1 \u06f1\u06f1\u06f1\u06f1',
      '\u096a\u0967\u0967\u0967-\u0967\u0967\u0967\u0967-\u0967\u0967\u0967\u0967-\u0967\u0967\u0967\u0967',
      '\u{116de}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}\u{116db}',
    ]) {
      assert.equal(containsPan(written), true, JSON.stringify(written));
    }
    // Separated the same way but failing Luhn, or not in card groups, they stay what they are.
    for (const other of [
      '4111\t1111\t1111\t1112',
      '\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0662',
      '41111\t11111\t111111',
      '4111\u20131111\u20131111\u20131112',
    ]) {
      assert.equal(containsPan(other), false, JSON.stringify(other));
    }
    // Times, amounts and identifiers whose digits pass Luhn but are not printed in card groups stay what they are.
    for (const other of ['05.12.2026 10.00.05', '1.2.840.10008.5.1.4.17', '12.345.678.901.104']) {
      assert.equal(containsPan(other), false, other);
    }
    assert.deepEqual(
      panFields({ cardToken: 'tok_x', merchant: { name: 'Shop 4111111111111111' }, list: ['a', 4111111111111111] }),
      ['merchant.name', 'list[1]'],
    );
    // A key that looks like a card number is found, and named without repeating it.
    assert.deepEqual(panFields({ merchant: { '4111111111111111': 'x' }, '5500 0000 0000 0004': '4111111111111111' }), [
      'merchant.(card number)',
      '(card number)',
    ]);
    // Keys that are no card number each, but make one side by side in the field's path, are not named as written:
    // '4111 1111.1111 1111' is a card number in printed groups.
    const split = panFields({
      merchant: { '4111 1111': { '1111 1111': '5555555555554444', name: '5555555555554444' } },
    });
    assert.deepEqual(split, ['merchant.(card number).(card number)', 'merchant.4111 1111.name']);
    assert.ok(split.every((field) => !containsPan(field)));
    // A body that is a card number itself is named as every refusal of a whole body names it, not ''.
    for (const body of ['4111111111111111', 4111111111111111]) {
      assert.deepEqual(
        panRefusal(body)?.fields.map((f) => f.field),
        ['(body)'],
      );
    }
    // Key verdicts are remembered: the same key is found in every item, also after more keys than are kept.
    const many = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`k${i}`, 1]));
    assert.deepEqual(
      panFields([{ '4111111111111111': 1 }, many, { '4111111111111111': 2 }, { '4111111111111111': 3 }]),
      ['[0].(card number)', '[2].(card number)', '[3].(card number)'],
    );
    // Under five characters nothing holds 13 digits, even after NFKC (at most three digits per character).
    assert.equal(containsPan('⅒⅒⅒⅒'), false);
  });

  it('a long chain of digit runs is read in one pass: no stack overflow, a card number in it still found', () => {
    // A regular expression over the chain overflowed the stack at 8 MB of `1 1 1 ...` (a 500) and took seconds at 2 MB.
    for (const filler of ['1 ', '12-', '1234.', '1']) {
      const long = filler.repeat(200_000);
      assert.equal(containsPan(long), false, filler);
      assert.equal(containsPan(`${long}x 4111 1111 1111 1111 x${long}`), true, filler);
    }
    assert.equal(containsPan('1 '.repeat(4_000_000)), false);
  });

  it('takes currencies in circulation, whatever ICU this Node was built with', () => {
    for (const currency of ['EUR', 'USD', 'JPY', 'XCG', 'ZWG', 'SLE'])
      assert.deepEqual(fraudItemErrors(tx({ currency })), []);
    for (const currency of ['HRK', 'CUC', 'ZWL', 'XDR', 'XAU', 'eur', 'EURO']) {
      assert.deepEqual(
        fraudItemErrors(tx({ currency })).map((e) => e.field),
        ['currency'],
        currency,
      );
    }
  });

  it('takes a merchant country ISO 3166-1 assigns, refuses one it does not as it refuses a currency', () => {
    for (const country of ['DE', 'US', 'BQ', 'CW', 'SS', 'PR', 'AX'])
      assert.deepEqual(fraudItemErrors(tx({ merchant: { country } })), [], country);
    assert.deepEqual(fraudItemErrors(tx({ currency: 'ZZZ' })), [
      { field: 'currency', reason: 'must be an ISO 4217 code' },
    ]);
    // ZZ and XK: user-assigned, EU: reserved, AN: withdrawn, de: not the code's case.
    for (const country of ['ZZ', 'XK', 'EU', 'AN', 'de', 'DEU', 'Germany']) {
      assert.deepEqual(fraudItemErrors(tx({ merchant: { country } })), [
        { field: 'merchant.country', reason: 'must be an ISO 3166-1 alpha-2 code' },
      ]);
    }
  });

  it('an X-Request-Id that looks like a card number is replaced, a safe one kept', () => {
    const idOf = (id: string) => requestIdFor({ headers: { 'x-request-id': id } } as unknown as IncomingMessage);
    assert.equal(idOf('pacs-123.a'), 'pacs-123.a');
    assert.equal(idOf('order-20261123-0001'), 'order-20261123-0001');
    assert.match(idOf('4111111111111111'), /^[0-9a-f-]{36}$/);
    assert.match(idOf('req-5500-0000-0000-0004'), /^[0-9a-f-]{36}$/);
  });
});
