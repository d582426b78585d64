import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DropReason,
  ForwardRetryQueue,
  PendingForward,
  RetryPolicy,
} from '../../src/domains/medical/dimse/forward-retry.util';
import { until } from '../fixtures/until';

/** A queue whose sends fail while `down`, recording what it reports. */
function harness(policy: Partial<RetryPolicy> = {}) {
  const state = {
    down: true,
    refuse: false,
    inFlight: 0,
    mostInFlight: 0,
    sent: [] as number[],
    delivered: [] as string[],
    failed: [] as Array<[string, number]>,
    dropped: [] as Array<[string, DropReason, number]>,
  };
  const queue = new ForwardRetryQueue<string>(
    { retries: 3, firstDelayMs: 20, maxBytes: 1000, ...policy },
    {
      send: async (sr) => {
        state.inFlight++;
        state.mostInFlight = Math.max(state.mostInFlight, state.inFlight);
        state.sent.push(Date.now());
        await new Promise((resolve) => setTimeout(resolve, 5));
        state.inFlight--;
        if (state.refuse) throw Object.assign(new Error('refused'), { permanent: true });
        if (state.down) throw new Error(`down (${sr.length} bytes)`);
      },
      permanent: (error) => (error as { permanent?: boolean }).permanent === true,
      delivered: (e: PendingForward<string>) => state.delivered.push(e.meta),
      failed: (e) => state.failed.push([e.meta, e.attempts]),
      dropped: (e, reason) => state.dropped.push([e.meta, reason, e.attempts]),
    },
  );
  return { queue, state };
}

describe('medical: SR forward retries', () => {
  it('sends again with doubling waits, and delivers once the destination is up', async () => {
    const { queue, state } = harness();
    const start = Date.now();
    queue.add(Buffer.alloc(100), 'a', new Error('down'));
    assert.deepEqual([queue.size, queue.heldBytes], [1, 100]);
    await until('two retries', () => (state.sent.length === 2 ? true : undefined));
    state.down = false;
    await until('delivered', () => (state.delivered.length === 1 ? true : undefined));
    assert.deepEqual(state.delivered, ['a']);
    assert.deepEqual(state.failed, [
      ['a', 1],
      ['a', 2],
      ['a', 3],
    ]);
    // 20 ms, then 40, then 80 after each failure.
    assert.ok(state.sent[0] - start >= 19 && state.sent[1] - state.sent[0] >= 39, JSON.stringify(state.sent));
    assert.deepEqual([queue.size, queue.heldBytes], [0, 0]);
  });

  it('gives up after its retries, or at once on a refusal another attempt would get again', async () => {
    const { queue, state } = harness({ retries: 2 });
    queue.add(Buffer.alloc(10), 'a', new Error('down'));
    await until('given up', () => (state.dropped.length === 1 ? true : undefined));
    assert.deepEqual(state.dropped, [['a', 'RETRIES_EXHAUSTED', 3]]);
    queue.add(Buffer.alloc(10), 'b', Object.assign(new Error('refused'), { permanent: true }));
    assert.deepEqual(state.dropped[1], ['b', 'REFUSED', 1]);
    assert.equal(queue.size, 0);
  });

  it('holds at most maxBytes: an SR past it is dropped at once', () => {
    const { queue, state } = harness({ maxBytes: 250, firstDelayMs: 60_000 });
    queue.add(Buffer.alloc(100), 'a', new Error('down'));
    queue.add(Buffer.alloc(100), 'b', new Error('down'));
    queue.add(Buffer.alloc(100), 'c', new Error('down'));
    assert.deepEqual(state.dropped, [['c', 'QUEUE_FULL', 1]]);
    assert.deepEqual([queue.size, queue.heldBytes], [2, 200]);
    return queue.stop();
  });

  it('tries one SR at a time, however many are due', async () => {
    const { queue, state } = harness({ retries: 1 });
    for (const meta of ['a', 'b', 'c', 'd']) queue.add(Buffer.alloc(10), meta, new Error('down'));
    await until('all given up', () => (state.dropped.length === 4 ? true : undefined));
    assert.equal(state.mostInFlight, 1);
  });

  it('drops what still waits when stopped, and takes nothing after', async () => {
    const { queue, state } = harness({ firstDelayMs: 60_000 });
    queue.add(Buffer.alloc(10), 'a', new Error('down'));
    await queue.stop();
    queue.add(Buffer.alloc(10), 'b', new Error('down'));
    assert.deepEqual(state.dropped, [
      ['a', 'SHUTDOWN', 1],
      ['b', 'SHUTDOWN', 1],
    ]);
    assert.equal(state.sent.length, 0);
  });
});
