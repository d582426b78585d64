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
} as const;
export type ReasonCode = keyof typeof REASON_CODES;

/** Which reason each credit model input speaks to (raw sources of the credit-default model). */
export function reasonOf(source: string): ReasonCode | undefined {
  if (source === 'PAY_0' || source === 'PAY_2') return 'RC01';
  if (/^PAY_[3-6]$/.test(source)) return 'RC02';
  if (/^BILL_AMT[1-6]$/.test(source)) return 'RC03';
  if (/^PAY_AMT[1-6]$/.test(source)) return 'RC04';
  if (source === 'LIMIT_BAL') return 'RC05';
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
 * per reason code, largest first. Inputs that lowered the risk give no reason, nor does a total that
 * rounds to 0 at the six decimals the answer shows.
 */
export function adverseReasons(contributions: readonly Contribution[], max = 4): Reason[] {
  const totals = new Map<ReasonCode, number>();
  for (const c of contributions) {
    const code = reasonOf(c.source);
    if (code && c.contribution > 0) totals.set(code, (totals.get(code) ?? 0) + c.contribution);
  }
  // A total that the answer would show as 0 (float32 noise: a balance a cent from the typical one)
  // did not raise the risk, and is no reason.
  return [...totals.entries()]
    .filter(([, contribution]) => reported(contribution) > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, max)
    .map(([code, contribution]) => ({ code, text: REASON_CODES[code], contribution: reported(contribution) }));
}
