/**
 * Unit conversion from what a plant sends to what a model was trained on.
 *
 * Units are matched case-insensitively after normalising spelling ('°C' = 'degC' = 'C', 'N·m' =
 * 'N m' = 'Nm'), so 'MPa' and 'mPa' are the same unit here: megapascal, the one plants use.
 * Two units that normalise to the same text are identical even when this table does not know them
 * ('pps/psi', 'count'). Gauge pressure (psig, barg) is deliberately absent: converting it to absolute
 * needs the local atmospheric pressure, which a tag does not carry.
 */
export class UnitConversionError extends Error {}

type Family = 'temperature' | 'rotational speed' | 'torque' | 'pressure' | 'time';

/** value_in_base = value * factor + offset (base units: K, rad/s, N·m, Pa, s). */
interface UnitDef {
  family: Family;
  factor: number;
  offset: number;
}

const TWO_PI = 2 * Math.PI;
// Exact by definition: 1 lbf = 4.4482216152605 N, 1 in = 0.0254 m, 1 ft = 0.3048 m.
const LBF = 4.4482216152605;
const LBF_FT_IN_NM = LBF * 0.3048;
const LBF_IN_IN_NM = LBF * 0.0254;
const PSI_IN_PA = LBF / 0.0254 ** 2;

const TABLE: Array<[Family, number, number, string[]]> = [
  ['temperature', 1, 0, ['k', 'kelvin']],
  ['temperature', 1, 273.15, ['degc', 'c', 'celsius', 'degcelsius']],
  ['temperature', 5 / 9, 273.15 - (32 * 5) / 9, ['degf', 'f', 'fahrenheit', 'degfahrenheit']],
  ['temperature', 5 / 9, 0, ['degr', 'ra', 'rankine', 'degrankine']],
  ['rotational speed', 1, 0, ['rad/s', 'radps', 'rad/sec']],
  ['rotational speed', TWO_PI / 60, 0, ['rpm', 'r/min', 'rev/min', '1/min']],
  ['rotational speed', TWO_PI, 0, ['hz', 'rps', 'rev/s', 'r/s', '1/s']],
  ['torque', 1, 0, ['nm', 'newtonmetre', 'newtonmeter']],
  ['torque', 1000, 0, ['knm']],
  ['torque', LBF_FT_IN_NM, 0, ['lbfft', 'ftlbf', 'lbft', 'ftlb', 'poundfoot']],
  ['torque', LBF_IN_IN_NM, 0, ['lbfin', 'inlbf', 'lbin', 'inlb']],
  ['pressure', 1, 0, ['pa', 'pascal']],
  ['pressure', 1e3, 0, ['kpa']],
  ['pressure', 1e6, 0, ['mpa']],
  ['pressure', 1e5, 0, ['bar', 'bara']],
  ['pressure', 100, 0, ['mbar', 'hpa']],
  ['pressure', PSI_IN_PA, 0, ['psi', 'psia', 'lbf/in2', 'lbf/in^2']],
  ['time', 1, 0, ['s', 'sec', 'secs', 'second', 'seconds']],
  ['time', 1e-3, 0, ['ms', 'millisecond', 'milliseconds']],
  ['time', 60, 0, ['min', 'mins', 'minute', 'minutes']],
  ['time', 3600, 0, ['h', 'hr', 'hrs', 'hour', 'hours']],
];

const UNITS = new Map<string, UnitDef>();
for (const [family, factor, offset, names] of TABLE) {
  for (const name of names) UNITS.set(name, { family, factor, offset });
}

/** Canonical spelling used for matching: lower case, '°' as 'deg', no spaces or product dots. */
export function normalizeUnit(unit: string): string {
  return unit
    .trim()
    .toLowerCase()
    .replace(/°|º/g, 'deg')
    .replace(/[\s·⋅*.\u2011-]/g, '');
}

/** Which physical quantity a unit measures, when this table knows it. */
export function unitFamily(unit: string): Family | undefined {
  return UNITS.get(normalizeUnit(unit))?.family;
}

export function canConvert(from: string, to: string): boolean {
  const a = normalizeUnit(from);
  const b = normalizeUnit(to);
  if (a === b) return true;
  const fa = UNITS.get(a);
  const fb = UNITS.get(b);
  return fa !== undefined && fb !== undefined && fa.family === fb.family;
}

/**
 * A converter resolved once, for the per-reading path (sensor mappings are fixed per asset).
 * Throws UnitConversionError naming both units when they measure different things.
 */
export function unitConverter(from: string, to: string): (value: number) => number {
  const a = normalizeUnit(from);
  const b = normalizeUnit(to);
  if (a === b) return (value) => value;
  const fa = UNITS.get(a);
  const fb = UNITS.get(b);
  if (!fa || !fb || fa.family !== fb.family) {
    const what = (u: string, d?: UnitDef) => `"${u}"${d ? ` (${d.family})` : ' (unknown unit)'}`;
    throw new UnitConversionError(`cannot convert from ${what(from, fa)} to ${what(to, fb)}`);
  }
  const factor = fa.factor / fb.factor;
  const offset = (fa.offset - fb.offset) / fb.factor;
  return (value) => value * factor + offset;
}

export function convert(value: number, from: string, to: string): number {
  return unitConverter(from, to)(value);
}
