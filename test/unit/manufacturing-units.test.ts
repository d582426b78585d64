import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkValue, plausibleRange } from '../../src/domains/manufacturing/reading-validation.util';
import {
  canConvert,
  convert,
  normalizeUnit,
  unitConverter,
  UnitConversionError,
} from '../../src/domains/manufacturing/units.util';

const near = (actual: number, expected: number, tolerance = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} is not within ${tolerance} of ${expected}`);

// Training ranges from models/manufacturing/machine-failure/1/model.json (preprocessing.features).
const AIR_TEMPERATURE = { min: 295.3, max: 304.4, unit: 'K' };
const ROTATIONAL_SPEED = { min: 1168, max: 2874, unit: 'rpm' };
const TOOL_WEAR = { min: 0, max: 253, unit: 'min' };
const TYPE_L = { min: 0, max: 1, unit: 'indicator' };

describe('manufacturing: unit conversion', () => {
  it('converts temperatures', () => {
    near(convert(300, 'K', '°C'), 26.85);
    near(convert(26.85, 'degC', 'K'), 300);
    near(convert(212, '°F', 'K'), 373.15);
    near(convert(32, 'F', 'C'), 0);
    near(convert(-40, 'degC', 'degF'), -40);
    near(convert(518.67, '°R', 'K'), 288.15);
  });

  it('converts rotational speed, torque, pressure and time', () => {
    near(convert(60, 'rpm', 'rad/s'), 2 * Math.PI);
    near(convert(1, 'Hz', 'rpm'), 60);
    near(convert(1, 'lbf·ft', 'Nm'), 1.3558179483314, 1e-12);
    near(convert(1, 'kN·m', 'N m'), 1000);
    near(convert(40, 'N·m', 'ft-lb'), 29.50249, 1e-5);
    near(convert(1, 'bar', 'psi'), 14.5038, 1e-4);
    near(convert(14.5038, 'psia', 'kPa'), 100, 1e-3);
    near(convert(101325, 'Pa', 'bar'), 1.01325);
    near(convert(1, 'h', 'min'), 60);
    near(convert(90, 's', 'min'), 1.5);
  });

  it('treats equal units as identity, case-insensitively and with common spellings', () => {
    assert.equal(convert(7.5, 'pps/psi', 'PPS/PSI'), 7.5, 'unknown to the table, but the same unit');
    assert.equal(convert(393, 'count', 'count'), 393);
    assert.equal(convert(5, 'RPM', 'rpm'), 5);
    assert.equal(normalizeUnit(' °C '), 'degc');
    assert.equal(normalizeUnit('N·m'), 'nm');
    assert.ok(canConvert('kelvin', 'Celsius'));
  });

  it('refuses conversions between different quantities or unknown units, naming both', () => {
    assert.equal(canConvert('K', 'rpm'), false);
    assert.equal(canConvert('psig', 'psia'), false, 'gauge to absolute needs the atmospheric pressure');
    assert.equal(canConvert('lbm/s', 'kg/s'), false);
    assert.throws(() => convert(1, 'K', 'rpm'), UnitConversionError);
    assert.throws(
      () => convert(1, 'K', 'rpm'),
      /cannot convert from "K" \(temperature\) to "rpm" \(rotational speed\)/,
    );
    assert.throws(
      () => unitConverter('psig', 'psia'),
      /cannot convert from "psig" \(unknown unit\) to "psia" \(pressure\)/,
    );
  });

  it('resolves a converter once for the per-reading path', () => {
    const toKelvin = unitConverter('degF', 'K');
    near(toKelvin(32), 273.15);
    near(toKelvin(212), 373.15);
  });
});

describe('manufacturing: reading plausibility', () => {
  it('refuses non-numbers, NaN and infinities, naming the input and value', () => {
    assert.equal(checkValue('torque', '40'), 'torque: "40" is not a number');
    assert.equal(checkValue('torque', undefined), 'torque: missing value is not a number');
    assert.equal(checkValue('torque', null), 'torque: null is not a number');
    assert.equal(checkValue('torque', true), 'torque: true is not a number');
    assert.equal(checkValue('torque', {}), 'torque: an object is not a number');
    assert.equal(checkValue('torque', [1]), 'torque: an array is not a number');
    assert.equal(checkValue('torque', Number.NaN), 'torque: value is NaN');
    assert.equal(checkValue('torque', Infinity), 'torque: value Infinity is not finite');
    assert.equal(checkValue('torque', -Infinity), 'torque: value -Infinity is not finite');
    assert.equal(checkValue('torque', 40), undefined);
  });

  it('widens the training range by 5 spans on each side', () => {
    const range = plausibleRange(AIR_TEMPERATURE); // span 9.1 K
    near(range.low, 295.3 - 45.5);
    near(range.high, 304.4 + 45.5);
    assert.equal(checkValue('air_temperature', 310, AIR_TEMPERATURE), undefined, 'outside training, plausible');
    assert.equal(checkValue('air_temperature', 249.9, AIR_TEMPERATURE), undefined);
    assert.match(
      checkValue('air_temperature', 1000, AIR_TEMPERATURE) ?? '',
      /^air_temperature: 1000 is outside the plausible range \[249\.8, 349\.9\] \(training range \[295\.3, 304\.4\] widened by 5 spans\)$/,
    );
    assert.equal(checkValue('rotational_speed', -500, ROTATIONAL_SPEED), undefined, 'a spindle may turn backwards');
  });

  it('names a converted value as it was sent, and in the model unit without binary noise', () => {
    const kelvin = unitConverter('degC', 'K')(-300); // -26.850000000000023
    assert.equal(
      checkValue('Air temperature [K]', kelvin, { ...AIR_TEMPERATURE, unit: 'K' }, { value: -300, unit: 'degC' }),
      'Air temperature [K]: -300 degC (-26.85 K) is outside the plausible range [249.8, 349.9] ' +
        '(training range [295.3, 304.4] widened by 5 spans)',
    );
    // Sent in another unit, though converted to the same number: both named (it read as 1e+308 alone, unit unsaid).
    assert.equal(
      checkValue(
        'Air temperature [K]',
        1e308 + 273.15,
        { ...AIR_TEMPERATURE, unit: 'K' },
        { value: 1e308, unit: 'degC' },
      ),
      'Air temperature [K]: 1e+308 degC (1e+308 K) is outside the plausible range [249.8, 349.9] ' +
        '(training range [295.3, 304.4] widened by 5 spans)',
    );
    // Sent in the model's unit: the value as it came, every digit.
    assert.match(
      checkValue('torque', 1000.123456789, { min: 3.8, max: 76.6 }, { value: 1000.123456789, unit: 'Nm' }) ?? '',
      /^torque: 1000\.123456789 is outside/,
    );
  });

  it('applies physical limits: absolute zero, non-negative durations, indicators in [0, 1]', () => {
    assert.match(
      checkValue('t', -1, { unit: 'K' }) ?? '',
      /t: -1 is outside the plausible range \[0, inf\] .*physical limits of K/,
    );
    assert.match(checkValue('t', -300, { unit: 'degC' }) ?? '', /\[-273\.15, inf\]/);
    assert.equal(checkValue('t', -273, { unit: '°C' }), undefined);
    assert.match(
      checkValue('tool_wear', -1, TOOL_WEAR) ?? '',
      /tool_wear: -1 is outside the plausible range \[0, 1518\]/,
    );
    assert.match(checkValue('type_l', 2, TYPE_L) ?? '', /type_l: 2 is outside the plausible range \[0, 1\]/);
    assert.match(checkValue('p', -0.1, { unit: 'psia' }) ?? '', /\[0, inf\]/);
    assert.equal(checkValue('anything', -1e9), undefined, 'no range and no unit: only finiteness is checked');
  });

  it('widens around the value itself when the training range is a single point or one-sided', () => {
    assert.deepEqual(plausibleRange({ min: 10, max: 10 }), {
      low: -40,
      high: 60,
      basis: 'training range [10, 10] widened by 5 spans',
    });
    const onlyMin = plausibleRange({ min: 0.5 });
    assert.equal(onlyMin.low, -4.5);
    assert.equal(onlyMin.high, Infinity);
  });
});
