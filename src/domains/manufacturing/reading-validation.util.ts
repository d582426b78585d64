import { convert, normalizeUnit, unitFamily } from './units.util';

/**
 * Plausibility of one sensor value, checked after unit conversion (so in the model's unit).
 *
 * The manifest's min/max are the training range; a healthy plant drifts outside it and a degrading
 * machine must still be scored, so the plausible range widens it by WIDEN spans on each side:
 * [min - WIDEN*(max-min), max + WIDEN*(max-min)]. When min = max, or only one bound is known, the
 * span is max(|bound|, 1). Physical limits then narrow it: no temperature below absolute zero, no
 * negative absolute pressure, duration, count, cycle or ratio, and an indicator stays in [0, 1].
 * A value outside is a sensor fault or a mapping error, not a reading to feed a model.
 */
export const WIDEN = 5;

export interface ValueSpec {
  /** Training minimum in the model's unit (manifest preprocessing.features[].min). */
  min?: number;
  max?: number;
  /** The model's unit for this input, for physical limits. */
  unit?: string;
}

export interface PlausibleRange {
  low: number;
  high: number;
  /** Why the bounds are where they are, for the refusal text. */
  basis: string;
}

const NON_NEGATIVE = new Set(['count', 'counts', 'cycle', 'cycles', 'ratio']);

function physicalLimits(unit: string | undefined): { low: number; high: number } {
  if (unit === undefined) return { low: -Infinity, high: Infinity };
  const norm = normalizeUnit(unit);
  if (norm === 'indicator') return { low: 0, high: 1 };
  if (NON_NEGATIVE.has(norm)) return { low: 0, high: Infinity };
  switch (unitFamily(unit)) {
    case 'temperature':
      return { low: convert(0, 'K', unit), high: Infinity };
    case 'pressure': // every pressure unit known here is absolute (gauge units are refused)
    case 'time':
      return { low: 0, high: Infinity };
    case 'rotational speed': // spindles reverse
    case 'torque':
    case undefined:
      return { low: -Infinity, high: Infinity };
  }
}

export function plausibleRange(spec: ValueSpec = {}): PlausibleRange {
  const { min, max, unit } = spec;
  const hasMin = typeof min === 'number' && Number.isFinite(min);
  const hasMax = typeof max === 'number' && Number.isFinite(max);
  let low = -Infinity;
  let high = Infinity;
  let basis = 'no training range';
  if (hasMin || hasMax) {
    const bounds = [hasMin ? min : 0, hasMax ? max : 0];
    const span = hasMin && hasMax && max > min ? max - min : Math.max(1, ...bounds.map(Math.abs));
    if (hasMin) low = min - WIDEN * span;
    if (hasMax) high = max + WIDEN * span;
    basis = `training range [${hasMin ? min : '-inf'}, ${hasMax ? max : 'inf'}] widened by ${WIDEN} spans`;
  }
  const physical = physicalLimits(unit);
  if (physical.low > low || physical.high < high) basis += ` and physical limits of ${unit}`;
  return { low: Math.max(low, physical.low), high: Math.min(high, physical.high), basis };
}

/**
 * Reason text naming the input and the value, or undefined when the value may be used. `sent` is the value as the
 * plant sent it, before conversion to the model's unit (spec.unit): a refusal names both.
 */
export function checkValue(
  input: string,
  value: unknown,
  spec?: ValueSpec,
  sent?: { value: number; unit: string },
): string | undefined {
  if (typeof value !== 'number') return `${input}: ${describe(value)} is not a number`;
  if (Number.isNaN(value)) return `${input}: value is NaN`;
  if (!Number.isFinite(value)) return `${input}: value ${value} is not finite`;
  const range = plausibleRange(spec);
  if (value < range.low || value > range.high) {
    // A converted value carries binary noise (-300 degC is -26.850000000000023 K): 12 digits are enough to tell.
    // Sent in another unit, both are named even where the conversion left the number as it was (1e308 degC is 1e308
    // K): shown bare, the value read as in the model's unit, the unit it was sent in unsaid.
    const converted = sent && (sent.value !== value || (spec?.unit !== undefined && sent.unit !== spec.unit));
    const shown = converted ? `${sent.value} ${sent.unit} (${Number(value.toPrecision(12))} ${spec?.unit})` : value;
    return `${input}: ${shown} is outside the plausible range [${round(range.low)}, ${round(range.high)}] (${range.basis})`;
  }
  return undefined;
}

/**
 * The refusal of a reading that sends the asset's tags but not one usable value, worded alike over HTTP, MQTT JSON and
 * Sparkplug B: the tags sent null (no value), then those sent NaN or infinite (taken as no value), by the value sent,
 * each tag named once, and the asset's tags.
 */
export function noUsableValue(
  sent: { nulls: readonly string[]; notFinite?: ReadonlyArray<{ tag: string; value: number }> },
  assetTags: readonly string[],
): string {
  const groups = new Map<string, Set<string>>();
  const add = (kind: string, tag: string) => groups.set(kind, (groups.get(kind) ?? new Set()).add(tag));
  for (const tag of sent.nulls) add('null (no value)', tag);
  for (const { tag, value } of sent.notFinite ?? []) add(`${String(value)} (taken as no value)`, tag);
  const parts = [...groups].map(([kind, tags]) => `${[...tags].join(', ')} ${tags.size === 1 ? 'is' : 'are'} ${kind}`);
  return (
    `no usable value: ${parts.join('; ')}; none of the asset's other tags has a usable value ` +
    `(its tags: ${assetTags.join(', ')})`
  );
}

function round(x: number): string {
  return Number.isFinite(x) ? String(Number(x.toPrecision(6))) : x > 0 ? 'inf' : '-inf';
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing value';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`;
}
