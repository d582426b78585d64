import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addressKey,
  callerKey,
  MAX_TRACKED_ADDRESSES,
  OVERFLOW_KEY,
  RefusalBudgets,
  RefusalLimiter,
} from '../../src/auth/refusal-limiter';

describe('refusal limiter (requests without a valid token, per address)', () => {
  it('counts each address in fixed windows and limits past the budget, with the time left as Retry-After', () => {
    let now = 0;
    const limiter = new RefusalLimiter(3, 10_000, { now: () => now });
    for (let i = 0; i < 3; i++) assert.equal(limiter.refused('192.0.2.1'), undefined);
    now = 2_500;
    assert.deepEqual(limiter.refused('192.0.2.1'), {
      key: '192.0.2.1',
      retryAfterSeconds: 8,
      limit: 3,
      windowSeconds: 10,
      first: true,
    });
    assert.equal(limiter.refused('192.0.2.2'), undefined, 'another address has its own budget');
    now = 9_999;
    const later = limiter.refused('192.0.2.1');
    assert.equal(later?.retryAfterSeconds, 1);
    assert.equal(later?.first, false, 'logged once a window: only the first past the budget says first');
    now = 10_000;
    assert.equal(limiter.refused('192.0.2.1'), undefined, 'a new window, a new budget');
  });

  it('limits nothing at 0', () => {
    const limiter = new RefusalLimiter(0, 1_000);
    for (let i = 0; i < 1_000; i++) assert.equal(limiter.refused('192.0.2.1'), undefined);
  });

  it('counts IPv6 addresses by their /64 and IPv4-mapped ones as IPv4', () => {
    const limiter = new RefusalLimiter(1, 60_000, { now: () => 0 });
    assert.equal(limiter.refused('2001:db8:1:2::1'), undefined);
    assert.equal(limiter.refused('2001:db8:1:2:ffff:0:0:9')?.key, '2001:db8:1:2::/64');
    assert.equal(limiter.refused('2001:db8:1:3::1'), undefined, 'another /64');
    assert.equal(limiter.refused('::ffff:192.0.2.1'), undefined);
    assert.equal(limiter.refused('192.0.2.1')?.key, '192.0.2.1');
  });

  it('tracks a bounded number of addresses; the rest share one budget', () => {
    const limiter = new RefusalLimiter(2, 60_000, { now: () => 0 });
    for (let i = 0; i < MAX_TRACKED_ADDRESSES; i++) {
      assert.equal(limiter.refused(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`), undefined);
    }
    assert.equal(limiter.refused('172.16.0.1'), undefined);
    assert.equal(limiter.refused('172.16.0.2'), undefined);
    assert.equal(limiter.refused('172.16.0.3')?.key, OVERFLOW_KEY);
    // Tracked addresses keep their own budgets.
    assert.equal(limiter.refused('10.0.0.0'), undefined);
    assert.equal(limiter.refused('10.0.0.0')?.key, '10.0.0.0');
  });

  it('writes address keys in one form whatever the spelling', () => {
    assert.equal(addressKey('2001:DB8:0:0:1:2:3:4'), '2001:db8:0:0::/64');
    assert.equal(addressKey('2001:0db8:0000:0042::'), '2001:db8:0:42::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(addressKey('::ffff:0:0:1.2.3.4'), '0:0:0:ffff::/64');
    assert.equal(addressKey('::FFFF:198.51.100.1'), '198.51.100.1');
    assert.equal(addressKey('198.51.100.1'), '198.51.100.1');
    assert.equal(addressKey('not an address'), 'not an address');
  });
});

describe("refusal budgets of a token's caller (its 403s and 429s)", () => {
  it('keeps a budget per subject within its tenant: one sub in two tenants is two callers', () => {
    const budgets = new RefusalBudgets(2, 60_000, () => 0);
    for (let i = 0; i < 2; i++)
      assert.equal(budgets.callerRefused({ subject: 'shared-user', tenant: 'tA' }), undefined);
    const limited = budgets.callerRefused({ subject: 'shared-user', tenant: 'tA' });
    assert.equal(limited?.key, '["tA","shared-user"]');
    assert.equal(limited?.first, true);
    // The same sub in another tenant, and without a tenant, have budgets of their own.
    for (let i = 0; i < 2; i++)
      assert.equal(budgets.callerRefused({ subject: 'shared-user', tenant: 'tB' }), undefined);
    assert.equal(budgets.callerRefused({ subject: 'shared-user', tenant: 'tB' })?.key, '["tB","shared-user"]');
    for (let i = 0; i < 2; i++) assert.equal(budgets.callerRefused({ subject: 'shared-user' }), undefined);
    assert.equal(budgets.callerRefused({ subject: 'shared-user' })?.key, '[null,"shared-user"]');
  });

  it('gives no two callers one key, whatever their tenant and subject hold', () => {
    const callers = [
      { tenant: 'a', subject: 'b c' },
      { tenant: 'a b', subject: 'c' },
      { tenant: 'a', subject: 'b\u0000c' },
      { tenant: 'a\u0000b', subject: 'c' },
      { tenant: 'a', subject: '"b' },
      { tenant: 'a"', subject: 'b' },
      { tenant: 'a","b', subject: 'c' },
      { tenant: 'a', subject: 'b","c' },
      { tenant: 'null', subject: 'x' },
      { subject: 'x' },
      { tenant: '', subject: 'x' },
      { subject: 'other subjects' },
      { subject: 'ip:192.0.2.1' },
    ];
    const keys = callers.map(callerKey);
    assert.equal(new Set(keys).size, callers.length, keys.join('\n'));
    assert.ok(!keys.includes('other subjects') && !keys.includes('ip:192.0.2.1'));
    // Each is a budget of its own: one refusal apiece stays within a budget of one.
    const budgets = new RefusalBudgets(1, 60_000, () => 0);
    for (const caller of callers) assert.equal(budgets.callerRefused(caller), undefined, JSON.stringify(caller));
  });
});
