import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import type { MessageEvent } from '@nestjs/common';
import { Subject } from 'rxjs';
import { endAtTokenExpiry, TOKEN_EXPIRED_COMMENT, untilTokenExpires } from '../../src/common/access';

const MAX_TIMER_MS = 2 ** 31 - 1;
const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('untilTokenExpires', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  it('fires at validUntil, not before', () => {
    let fired = 0;
    let done = false;
    untilTokenExpires({ validUntil: 1_000_000 + 5_000 }).subscribe({
      next: () => fired++,
      complete: () => (done = true),
    });
    mock.timers.tick(4_999);
    assert.equal(fired, 0);
    mock.timers.tick(1);
    assert.deepEqual([fired, done], [1, true]);
  });

  it('waits out a token valid for longer than setTimeout can wait (2^31-1 ms), in steps', () => {
    // Past its limit, a real setTimeout fires after 1 ms (the mock does not), so every delay asked for must be within it.
    const setTimeoutSpy = mock.method(globalThis, 'setTimeout');
    try {
      let fired = 0;
      const thirtyDays = 30 * 86_400_000;
      untilTokenExpires({ validUntil: 1_000_000 + thirtyDays }).subscribe(() => fired++);
      mock.timers.tick(1);
      assert.equal(fired, 0, 'fired early');
      mock.timers.tick(MAX_TIMER_MS);
      assert.equal(fired, 0);
      mock.timers.tick(thirtyDays - MAX_TIMER_MS - 2);
      assert.equal(fired, 0);
      mock.timers.tick(1);
      assert.equal(fired, 1);
      const delays = setTimeoutSpy.mock.calls.map((call) => call.arguments[1] as number);
      assert.equal(delays.length, 2);
      assert.ok(
        delays.every((ms) => ms <= MAX_TIMER_MS),
        `setTimeout was asked to wait ${delays.join(', ')} ms`,
      );
    } finally {
      // Before afterEach puts the real setTimeout back: restored later, the spy would bring the mock back.
      setTimeoutSpy.mock.restore();
    }
  });

  it('fires at once for a token already expired', () => {
    let fired = 0;
    untilTokenExpires({ validUntil: 1_000_000 }).subscribe(() => fired++);
    assert.equal(fired, 1);
  });
});

describe('endAtTokenExpiry', () => {
  it('passes the events on, then ends with the comment at expiry', async () => {
    const source = new Subject<MessageEvent>();
    const seen: MessageEvent[] = [];
    const ended = new Promise<void>((complete) =>
      source.pipe(endAtTokenExpiry({ validUntil: Date.now() + 50 })).subscribe({ next: (e) => seen.push(e), complete }),
    );
    source.next({ type: 'alarm', data: 'a' });
    await ended;
    source.next({ type: 'alarm', data: 'b' });
    assert.deepEqual(seen, [{ type: 'alarm', data: 'a' }, { comment: TOKEN_EXPIRED_COMMENT }]);
    assert.equal(source.observed, false, 'the source is let go');
  });

  it('clears its timer when the client leaves first, or the source ends first (shutdown), without the comment', () => {
    const before = timers();
    for (const end of ['unsubscribe', 'complete'] as const) {
      const source = new Subject<MessageEvent>();
      const seen: MessageEvent[] = [];
      const subscription = source
        .pipe(endAtTokenExpiry({ validUntil: Date.now() + 3_600_000 }))
        .subscribe((e) => seen.push(e));
      assert.equal(timers(), before + 1);
      if (end === 'unsubscribe') subscription.unsubscribe();
      else source.complete();
      assert.equal(timers(), before, `a timer is left after ${end}`);
      assert.deepEqual(seen, []);
    }
  });
});
