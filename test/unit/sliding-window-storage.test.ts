import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ThrottlerStorageService } from '@nestjs/throttler';
import { SlidingWindowThrottlerStorage } from '../../src/auth/sliding-window.storage';
import { seededRandom } from '../fixtures/random';

describe('SlidingWindowThrottlerStorage', () => {
  it("answers every request as @nestjs/throttler's own storage does", async (t) => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const rnd = seededRandom(seed);
      let now = 1_800_000_000_000;
      t.mock.method(Date, 'now', () => now);
      const library = new ThrottlerStorageService();
      const ours = new SlidingWindowThrottlerStorage(() => now);
      // Bursts and pauses around the window and block lengths, over a few subjects; even seeds
      // also take the library's path without blocking (blockDuration 0).
      const ttl = 1000;
      const limit = 1 + Math.floor(rnd() * 20);
      const blockDuration = seed % 2 === 0 ? 0 : 500 + Math.floor(rnd() * 3000);
      for (let i = 0; i < 4000; i++) {
        now += rnd() < 0.05 ? Math.floor(rnd() * 2500) : Math.floor(rnd() * 40);
        const key = `subject-${Math.floor(rnd() * 3)}`;
        const expected = await library.increment(key, ttl, limit, blockDuration, 'default');
        const actual = await ours.increment(key, ttl, limit, blockDuration, 'default');
        assert.deepEqual(
          actual,
          expected,
          `seed ${seed}, request ${i} at ${now}, limit ${limit}, block ${blockDuration}`,
        );
      }
      library.onApplicationShutdown();
      now += 1e7;
      ours.evictIdle();
      assert.equal(ours.size, 0);
      t.mock.restoreAll();
    }
  });

  it('keeps at most limit + 1 hits and forgets idle subjects', async () => {
    let now = 0;
    const storage = new SlidingWindowThrottlerStorage(() => now);
    for (let i = 0; i < 10_000; i++) {
      now += 0.1;
      const r = await storage.increment('busy', 1000, 50, 1000, 'default');
      assert.ok(r.totalHits <= 51, `totalHits ${r.totalHits}`);
    }
    await storage.increment('other', 1000, 50, 1000, 'default');
    assert.equal(storage.size, 2);
    now += 5000;
    storage.evictIdle();
    assert.equal(storage.size, 0);
  });

  it('refuses past the limit until the block ends, then counts afresh', async () => {
    let now = 0;
    const storage = new SlidingWindowThrottlerStorage(() => now);
    for (let i = 0; i < 3; i++)
      assert.equal((await storage.increment('a', 60_000, 3, 60_000, 'default')).isBlocked, false);
    const refused = await storage.increment('a', 60_000, 3, 60_000, 'default');
    assert.equal(refused.isBlocked, true);
    assert.equal(refused.timeToBlockExpire, 60);
    assert.equal((await storage.increment('b', 60_000, 3, 60_000, 'default')).isBlocked, false);
    now += 60_000;
    const after = await storage.increment('a', 60_000, 3, 60_000, 'default');
    assert.deepEqual({ blocked: after.isBlocked, hits: after.totalHits }, { blocked: false, hits: 1 });
    now += 120_000;
    storage.evictIdle();
    assert.equal(storage.size, 0);
  });
});
