/**
 * Alarm with hysteresis, one per asset and signal.
 *
 * 'above' (failure probability): raised after `consecutive` successive values >= raiseAt; a value
 * below raiseAt before then restarts the count. Once raised it clears on the first value < clearAt,
 * so a signal hovering between clearAt and raiseAt neither re-raises nor chatters.
 * 'below' (remaining useful life) mirrors it: raise on values <= raiseAt, clear on a value > clearAt.
 * NaN changes nothing: a failed inference is neither evidence of a fault nor of health.
 */
export interface AlarmRule {
  raiseAt: number;
  clearAt: number;
  /** Successive windows past raiseAt before the alarm is raised (>= 1). */
  consecutive: number;
  direction: 'above' | 'below';
}

export type AlarmTransition = 'raised' | 'cleared';

/** Error text for a rule that cannot work, or undefined when it is sound. */
export function validateAlarmRule(rule: AlarmRule): string | undefined {
  if (!Number.isFinite(rule.raiseAt)) return `raiseAt must be a finite number, got ${rule.raiseAt}`;
  if (!Number.isFinite(rule.clearAt)) return `clearAt must be a finite number, got ${rule.clearAt}`;
  if (!Number.isInteger(rule.consecutive) || rule.consecutive < 1) {
    return `consecutive must be an integer >= 1, got ${rule.consecutive}`;
  }
  switch (rule.direction) {
    case 'above':
      return rule.clearAt <= rule.raiseAt
        ? undefined
        : `clearAt (${rule.clearAt}) must not exceed raiseAt (${rule.raiseAt}) for an 'above' alarm`;
    case 'below':
      return rule.clearAt >= rule.raiseAt
        ? undefined
        : `clearAt (${rule.clearAt}) must not be below raiseAt (${rule.raiseAt}) for a 'below' alarm`;
    default:
      return `direction must be 'above' or 'below', got ${String(rule.direction)}`;
  }
}

/**
 * The thresholds outside [low, high], the values the alarm's signal can take (e.g. a probability's [0, 1]): past
 * the far end the alarm could never raise, or never clear; past the near end every value would count.
 */
export function thresholdsOutOfRange(
  rule: Pick<AlarmRule, 'raiseAt' | 'clearAt'>,
  range: { low: number; high: number },
  signal: string,
): Array<{ field: 'raiseAt' | 'clearAt'; reason: string }> {
  const out: Array<{ field: 'raiseAt' | 'clearAt'; reason: string }> = [];
  for (const field of ['raiseAt', 'clearAt'] as const) {
    const value = rule[field];
    if (value < range.low || value > range.high) {
      out.push({ field, reason: `${value} is outside [${range.low}, ${range.high}], the values ${signal} can take` });
    }
  }
  return out;
}

export class AlarmState {
  private readonly rule: AlarmRule;
  private isActive: boolean;
  private run = 0;

  /** `active` restores a raised alarm after a restart, so it is not raised twice. */
  constructor(rule: AlarmRule, active = false) {
    const problem = validateAlarmRule(rule);
    if (problem) throw new RangeError(`invalid alarm rule: ${problem}`);
    this.rule = { ...rule };
    this.isActive = active;
  }

  get active(): boolean {
    return this.isActive;
  }

  /** Successive values past raiseAt so far while not active. */
  get streak(): number {
    return this.run;
  }

  /** The state as it is now, for `restore` when a transition could not be stored. */
  save(): { active: boolean; streak: number } {
    return { active: this.isActive, streak: this.run };
  }

  /**
   * Takes up the streak of the predictions before a restart, newest first (stored, as the alarm judged them): those
   * past raiseAt up to the first that is not, fewer than `consecutive`. Only on an alarm that is not raised.
   */
  resume(newestFirst: Iterable<number>): void {
    if (this.isActive) return;
    const { raiseAt, consecutive, direction } = this.rule;
    let run = 0;
    for (const value of newestFirst) {
      if (run >= consecutive - 1 || !(direction === 'above' ? value >= raiseAt : value <= raiseAt)) break;
      run++;
    }
    this.run = run;
  }

  restore(saved: { active: boolean; streak: number }): void {
    this.isActive = saved.active;
    this.run = saved.streak;
  }

  update(value: number): AlarmTransition | undefined {
    if (Number.isNaN(value)) return undefined;
    const { raiseAt, clearAt, consecutive, direction } = this.rule;
    const above = direction === 'above';
    if (this.isActive) {
      if (above ? value < clearAt : value > clearAt) {
        this.isActive = false;
        this.run = 0;
        return 'cleared';
      }
      return undefined;
    }
    if (above ? value >= raiseAt : value <= raiseAt) {
      this.run++;
      if (this.run >= consecutive) {
        this.isActive = true;
        this.run = 0;
        return 'raised';
      }
    } else {
      this.run = 0;
    }
    return undefined;
  }
}
