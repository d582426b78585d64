import type { Contribution } from './attribution.util';
import { reported } from './finance-models';

/** Stable adverse-action reason codes, with the plain-language text an applicant is given. */
export const REASON_CODES = {
  RC01: 'Recent payments delayed or missed',
  RC02: 'Payment delays earlier in the repayment history',
  RC03: 'High outstanding balances',
  RC04: 'Low recent payment amounts',
  RC05: 'Low credit limit',
  RC06: 'Education level on file',
  RC07: 'Low or no recent use of the credit line',
} as const;
export type ReasonCode = keyof typeof REASON_CODES;

/** Repayment status: -2 no consumption, -1 paid in full, 0 revolving credit, 1..9 months of delay. */
const NO_CONSUMPTION = -2;

/**
 * The reason an input of the credit-default model speaks to, given where the applicant's value lies
 * against the typical one (its baseline, the value its attribution was measured against): only a reason
 * whose text is true of that value. A balance below the typical one that raised the risk is not "high
 * outstanding balances", a status of "paid in full" is no payment delay; such an input gives the reason
 * that describes it (little use of the credit line), or none where no reason would be true.
 */
export function reasonOf(source: string, value: number, baseline: number): ReasonCode | undefined {
  const pay = /^PAY_([0-6])$/.exec(source);
  if (pay) {
    if (value >= 1) return pay[1] === '0' || pay[1] === '2' ? 'RC01' : 'RC02';
    return value === NO_CONSUMPTION ? 'RC07' : undefined;
  }
  if (/^BILL_AMT[1-6]$/.test(source)) return value > baseline ? 'RC03' : value < baseline ? 'RC07' : undefined;
  if (/^PAY_AMT[1-6]$/.test(source)) return value < baseline ? 'RC04' : undefined;
  if (source === 'LIMIT_BAL') return value < baseline ? 'RC05' : undefined;
  if (source === 'EDUCATION') return 'RC06';
  return undefined;
}

export interface Reason {
  code: ReasonCode;
  text: string;
  /** Sum of the contributions (probability points) of the inputs behind this reason. */
  contribution: number;
}

/**
 * Up to `max` reasons that raised the probability of default most: positive attributions summed
 * per reason code (reasonOf, from each input's value in `values` against its baseline in `baselines`),
 * largest first. Inputs that lowered the risk give no reason, nor does a total that rounds to 0 at the
 * six decimals the answer shows, nor an input no reason's text is true of.
 */
export function adverseReasons(
  contributions: readonly Contribution[],
  values: Readonly<Record<string, number>>,
  baselines: Readonly<Record<string, number>>,
  max = 4,
): Reason[] {
  const totals = new Map<ReasonCode, number>();
  for (const c of contributions) {
    if (!(c.contribution > 0)) continue;
    const code = reasonOf(c.source, values[c.source], baselines[c.source]);
    if (code) totals.set(code, (totals.get(code) ?? 0) + c.contribution);
  }
  // A total that the answer would show as 0 (float32 noise: a balance a cent from the typical one)
  // did not raise the risk, and is no reason.
  return [...totals.entries()]
    .filter(([, contribution]) => reported(contribution) > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, max)
    .map(([code, contribution]) => ({ code, text: REASON_CODES[code], contribution: reported(contribution) }));
}
