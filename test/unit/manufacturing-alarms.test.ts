import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AlarmRule,
  AlarmState,
  thresholdsOutOfRange,
  validateAlarmRule,
} from '../../src/domains/manufacturing/hysteresis.util';

// The machine-failure manifest's thresholds: raise at 0.47, clear below 0.28.
const FAILURE: AlarmRule = { raiseAt: 0.47, clearAt: 0.28, consecutive: 3, direction: 'above' };
// The turbofan-rul manifest's: raise when RUL <= 30 cycles, clear when it rises above 40.
const RUL: AlarmRule = { raiseAt: 30, clearAt: 40, consecutive: 2, direction: 'below' };

const feed = (state: AlarmState, values: number[]) => values.map((v) => state.update(v));

describe('manufacturing: alarms with hysteresis', () => {
  it('raises only after k consecutive windows at or above raiseAt', () => {
    const alarm = new AlarmState(FAILURE);
    assert.deepEqual(feed(alarm, [0.1, 0.5, 0.47]), [undefined, undefined, undefined]);
    assert.equal(alarm.streak, 2);
    assert.equal(alarm.active, false);
    assert.equal(alarm.update(0.9), 'raised');
    assert.equal(alarm.active, true);
    assert.equal(alarm.update(0.95), undefined, 'an active alarm is not raised again');
  });

  it('restarts the count when a window dips below raiseAt in between', () => {
    const alarm = new AlarmState(FAILURE);
    assert.deepEqual(feed(alarm, [0.6, 0.6, 0.46, 0.6, 0.6]), [undefined, undefined, undefined, undefined, undefined]);
    assert.equal(alarm.active, false);
    assert.equal(alarm.streak, 2);
    assert.equal(alarm.update(0.6), 'raised');
  });

  it('clears only below clearAt, not merely below raiseAt', () => {
    const alarm = new AlarmState({ ...FAILURE, consecutive: 1 });
    assert.equal(alarm.update(0.5), 'raised');
    assert.deepEqual(feed(alarm, [0.4, 0.3, 0.28]), [undefined, undefined, undefined], 'between clearAt and raiseAt');
    assert.equal(alarm.active, true);
    assert.equal(alarm.update(0.2799), 'cleared');
    assert.equal(alarm.active, false);
    assert.equal(alarm.update(0.46), undefined, 'needs raiseAt again, not clearAt');
    assert.equal(alarm.update(0.47), 'raised');
  });

  it("mirrors for 'below' (remaining useful life falling)", () => {
    const alarm = new AlarmState(RUL);
    assert.deepEqual(feed(alarm, [80, 31, 30, 35, 29]), [undefined, undefined, undefined, undefined, undefined]);
    assert.equal(alarm.update(12), 'raised');
    assert.deepEqual(feed(alarm, [33, 40]), [undefined, undefined], 'RUL back up to clearAt is not enough');
    assert.equal(alarm.update(40.5), 'cleared');
  });

  it('ignores NaN: neither a fault nor health', () => {
    const alarm = new AlarmState(FAILURE);
    feed(alarm, [0.9, 0.9]);
    assert.equal(alarm.update(Number.NaN), undefined);
    assert.equal(alarm.streak, 2);
    assert.equal(alarm.update(0.9), 'raised');
    assert.equal(alarm.update(Number.NaN), undefined);
    assert.equal(alarm.active, true);
  });

  it('can start active, restored after a restart', () => {
    const alarm = new AlarmState(RUL, true);
    assert.equal(alarm.active, true);
    assert.equal(alarm.update(10), undefined);
    assert.equal(alarm.update(100), 'cleared');
  });

  it('validates rules', () => {
    assert.equal(validateAlarmRule(FAILURE), undefined);
    assert.equal(validateAlarmRule(RUL), undefined);
    assert.equal(validateAlarmRule({ ...FAILURE, clearAt: FAILURE.raiseAt }), undefined, 'no hysteresis is allowed');
    assert.match(validateAlarmRule({ ...FAILURE, clearAt: 0.6 }) ?? '', /clearAt \(0\.6\) must not exceed raiseAt/);
    assert.match(validateAlarmRule({ ...RUL, clearAt: 20 }) ?? '', /clearAt \(20\) must not be below raiseAt \(30\)/);
    assert.match(validateAlarmRule({ ...FAILURE, consecutive: 0 }) ?? '', /consecutive must be an integer >= 1/);
    assert.match(validateAlarmRule({ ...FAILURE, consecutive: 1.5 }) ?? '', /consecutive/);
    assert.match(validateAlarmRule({ ...FAILURE, raiseAt: Number.NaN }) ?? '', /raiseAt must be a finite number/);
    assert.match(validateAlarmRule({ ...FAILURE, clearAt: Infinity }) ?? '', /clearAt must be a finite number/);
    const sideways = { ...FAILURE, direction: 'sideways' } as unknown as AlarmRule;
    assert.match(validateAlarmRule(sideways) ?? '', /direction must be 'above' or 'below', got sideways/);
    assert.throws(() => new AlarmState({ ...RUL, clearAt: 0 }), /invalid alarm rule: clearAt/);
  });

  it('names the thresholds outside the values the signal can take (an alarm that could never move)', () => {
    const probability = { low: 0, high: 1 };
    assert.deepEqual(thresholdsOutOfRange(FAILURE, probability, 'p'), []);
    assert.deepEqual(thresholdsOutOfRange({ raiseAt: 1, clearAt: 0 }, probability, 'p'), [], 'the bounds are in reach');
    assert.deepEqual(thresholdsOutOfRange({ raiseAt: 5, clearAt: -0.1 }, probability, 'the failure probability'), [
      { field: 'raiseAt', reason: '5 is outside [0, 1], the values the failure probability can take' },
      { field: 'clearAt', reason: '-0.1 is outside [0, 1], the values the failure probability can take' },
    ]);
    const rul = { low: 0, high: 125 };
    assert.deepEqual(
      thresholdsOutOfRange({ raiseAt: -1, clearAt: 130 }, rul, 'RUL').map((e) => e.field),
      ['raiseAt', 'clearAt'],
    );
    assert.deepEqual(
      thresholdsOutOfRange({ raiseAt: -1e9, clearAt: 1e9 }, { low: -Infinity, high: Infinity }, 'x'),
      [],
    );
  });
});
