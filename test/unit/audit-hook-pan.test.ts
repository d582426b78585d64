import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CARD_NUMBER_REMOVED, clipWithoutPan } from '../../src/audit/audit.hook';
import { containsPan } from '../../src/common/pan';

describe('audit row strings cut to their column', () => {
  it('a cut that leaves a card number (a longer run of digits cut to a Luhn-valid 16) writes none', () => {
    // 17 digits are no card number; cut to 64 characters the run is 4111111111111111, which is.
    const version = `${'v'.repeat(47)}-41111111111111110`;
    assert.equal(containsPan(version), false);
    assert.equal(containsPan(version.slice(0, 64)), true);
    assert.equal(clipWithoutPan(version, 64), CARD_NUMBER_REMOVED);
    const reason = `model ${'x'.repeat(177)} 41111111111111110 not found`;
    assert.equal(clipWithoutPan(reason, 200), CARD_NUMBER_REMOVED);
  });

  it('a cut through a card number keeps none of its digits', () => {
    const name = `${'m'.repeat(54)} 4111 1111 1111 1111`;
    assert.equal(containsPan(name.slice(0, 64)), false);
    assert.equal(clipWithoutPan(name, 64), CARD_NUMBER_REMOVED);
  });

  it('leaves other strings as they are, cut to their column', () => {
    assert.equal(clipWithoutPan(undefined, 64), null);
    assert.equal(clipWithoutPan('fixture-linear', 128), 'fixture-linear');
    assert.equal(clipWithoutPan(`${'v'.repeat(70)}`, 64), 'v'.repeat(64));
    assert.equal(clipWithoutPan(`${'v'.repeat(47)}-41111111111111110`, 70), `${'v'.repeat(47)}-41111111111111110`);
  });
});
