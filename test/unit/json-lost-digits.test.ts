import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  exactIntegerDigits,
  lostDigitsOf,
  MAX_KEPT_DIGITS,
  noteLostDigits,
} from '../../src/common/http/json-lost-digits';
import { panFields, panScan } from '../../src/domains/finance/pan-guard.util';

/** Luhn-valid card numbers a double cannot hold: 19 digits (Discover), 16 digits past 2^53. */
const PAN19 = '6011000990139000007';
const PAN16 = '9111000000000007';

/** A body parsed and noted as the JSON parser does it (a leading BOM ignored). */
function parsed(text: string): unknown {
  const value = JSON.parse(text.replace(/^\uFEFF/, '')) as unknown;
  noteLostDigits(text, value);
  return value;
}

describe('json-lost-digits', () => {
  it('reads the integer a JSON number spells, whatever its spelling, on the text', () => {
    for (const token of [
      PAN19,
      `${PAN19}.0`,
      `${PAN19}.000`,
      `-${PAN19}`,
      '6.011000990139000007e18',
      '0.6011000990139000007e19',
    ]) {
      assert.equal(exactIntegerDigits(token), PAN19, token);
    }
    assert.equal(exactIntegerDigits('60110009901390000070e-1'), PAN19);
    assert.equal(exactIntegerDigits('6.011000990139000007E+18'), PAN19);
    assert.equal(exactIntegerDigits('4.111111111111111e15'), '4111111111111111');
    assert.equal(exactIntegerDigits('1e18'), '1000000000000000000');
    // A fraction, zero, more than 19 digits and exponents of any size are no integer of up to 19 digits.
    for (const token of [
      `${PAN19}.5`,
      '0',
      '-0',
      '0.0e5',
      '1e19',
      '12345678901234567890',
      '1e308',
      '1e-308',
      '1e99999999999999999999',
      'x',
    ]) {
      assert.equal(exactIntegerDigits(token), undefined, token);
    }
  });

  it('keeps the digits as sent of the numbers the parse changed, beside the object or array that holds them', () => {
    const body = parsed(
      `\uFEFF{"a": {"b c\\"": [1, ${PAN19}.0 ]}, "n": 9007199254740993, "s": "${PAN19}", "x": 1e300}`,
    ) as {
      a: { 'b c"': unknown[] };
    };
    assert.equal(lostDigitsOf(body.a['b c"'], 1), PAN19);
    // Digits that tell the scan what the parsed value tells it (neither is a card number) are not kept.
    assert.equal(lostDigitsOf(body, 'n'), undefined);
    assert.equal(lostDigitsOf(body, 's'), undefined);
    assert.equal(lostDigitsOf(body, 'x'), undefined);
  });

  it('a card number past 2^53 sent as a number is found by the card number scan, in any spelling', () => {
    for (const spelling of [
      PAN19,
      `${PAN19}.0`,
      '6.011000990139000007e18',
      PAN16,
      `${PAN16}.00`,
      '9.111000000000007e15',
    ]) {
      const body = parsed(`{"amount": ${spelling}, "items": [{"id": 1, "n": [${spelling}]}], "ok": 9007199254740993}`);
      assert.deepEqual(panFields(body), ['amount', 'items[0].n[0]'], spelling);
      // An item checked on its own (a batch item) is found the same.
      assert.deepEqual(panFields((body as { items: unknown[] }).items[0]), ['n[0]'], spelling);
    }
    // Within 2^53 the parse keeps the digits: any spelling was found already.
    assert.deepEqual(panFields(parsed('{"a": 4111111111111111.0, "b": 4.111111111111111e15}')), ['a', 'b']);
    // The same digits with a fraction are no integer.
    assert.deepEqual(panFields(parsed(`{"a": ${PAN19}.5}`)), []);
  });

  it('keeps at most MAX_KEPT_DIGITS digits per body, and loses no refusal of a card number past them', () => {
    const many = 5 * MAX_KEPT_DIGITS;
    const list = parsed(`[${Array(many).fill(PAN19).join(',')}]`) as unknown[];
    assert.equal(lostDigitsOf(list, MAX_KEPT_DIGITS - 1), PAN19);
    assert.equal(lostDigitsOf(list, MAX_KEPT_DIGITS), undefined);
    // Each is still found and counted, as a refusal lists and counts them.
    assert.equal(panScan(list).count, many);
    // A batch's items are each scanned on their own: the last, far past the cap, is refused as the first is.
    const batch = parsed(
      `{"transactions": [${Array.from({ length: many }, (_, i) => `{"id": ${i}, "amount": ${PAN19}, "n": [1]}`).join(',')}]}`,
    ) as { transactions: unknown[] };
    for (const index of [0, MAX_KEPT_DIGITS, many - 1]) {
      assert.deepEqual(panFields(batch.transactions[index]), ['amount'], String(index));
    }
    // Numbers whose digits as sent tell the scan nothing else are not kept at all, however many.
    const plain = parsed(`[${Array(many).fill('9007199254740993').join(',')}]`) as unknown[];
    assert.equal(lostDigitsOf(plain, 0), undefined);
    assert.deepEqual(panFields(plain), []);
    // One whose parsed value reads as a card number and whose digits as sent do not is kept, and let through.
    const misread = parsed('{"n": 9007199254741047}');
    assert.equal(lostDigitsOf(misread as object, 'n'), '9007199254741047');
    assert.deepEqual(panFields(misread), []);
  });
});
