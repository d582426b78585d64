import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DeadLetterBudget,
  DeadLetterRow,
  MAX_KINDS,
  OTHER_CHANNELS,
  summaryOf,
} from '../../src/domains/manufacturing/records/dead-letter-budget';

function letter(reason: string, at: number, channel = 'factory/plant-1/line-b/mill-1/telemetry'): DeadLetterRow {
  return {
    receivedAt: new Date(at),
    source: 'mqtt',
    channel,
    assetId: 'mill-1',
    reason,
    detail: `${reason} at ${at}`,
    payload: `{"at":${at}}`,
  };
}

describe('dead-letter budget (refused input per source, channel and reason)', () => {
  it('keeps the first `limit` of each kind a window and counts the rest into a summary', () => {
    let now = 0;
    const budget = new DeadLetterBudget(2, 60_000, () => now);
    const { kept, summarised } = budget.admit([1, 2, 3, 4].map((at) => letter('malformed', at)));
    assert.deepEqual(
      kept.map((r) => r.detail),
      ['malformed at 1', 'malformed at 2'],
    );
    assert.deepEqual(
      summarised.map((r) => r.detail),
      ['malformed at 3', 'malformed at 4'],
    );
    // Another reason, another channel: budgets of their own.
    assert.equal(
      budget.admit([letter('late', 5), letter('malformed', 6, 'factory/plant-1/line-b/mill-2/telemetry')]).kept.length,
      2,
    );
    // What records a reading the gateway gave up on is kept whatever the budget.
    assert.equal(budget.admit([1, 2, 3].map((at) => letter('held-too-long', at))).kept.length, 3);
    assert.equal(budget.pending, true);
    const [surplus] = budget.take();
    assert.equal(budget.pending, false);
    assert.equal(surplus.count, 2);
    const summary = summaryOf(surplus, 2);
    assert.equal(summary.reason, 'malformed');
    assert.equal(summary.payload, '{"at":4}');
    assert.deepEqual(summary.receivedAt, new Date(4));
    assert.equal(
      summary.detail,
      '2 more dead letters like this from 1970-01-01T00:00:00.003Z to 1970-01-01T00:00:00.004Z were counted, ' +
        "not kept (more than 2 a minute); the last one's detail: malformed at 4",
    );
    // The next window keeps again.
    now = 60_000;
    assert.equal(budget.admit([letter('malformed', 60_001)]).kept.length, 1);
  });

  it('puts back a surplus it could not write, merged with what came since', () => {
    const budget = new DeadLetterBudget(1, 60_000, () => 0);
    budget.admit([1, 2, 3].map((at) => letter('late', at)));
    const taken = budget.take();
    budget.admit([letter('late', 4)]);
    budget.restore(taken);
    const [merged] = budget.take();
    assert.equal(merged.count, 3);
    assert.deepEqual([merged.firstAt, merged.lastAt], [new Date(2), new Date(4)]);
  });

  it('tracks a bounded number of kinds; further channels share one budget', () => {
    const budget = new DeadLetterBudget(1, 60_000, () => 0);
    for (let i = 0; i < MAX_KINDS; i++) budget.admit([letter('unknown-topic', i, `topic/${i}`)]);
    assert.equal(budget.admit([letter('unknown-topic', 1, 'topic/new-1')]).kept.length, 1);
    assert.equal(budget.admit([letter('unknown-topic', 2, 'topic/new-2')]).kept.length, 0);
    const [surplus] = budget.take();
    assert.equal(surplus.channel, OTHER_CHANNELS);
    assert.equal(summaryOf(surplus, 1).channel, OTHER_CHANNELS);
  });

  it('keeps every one at 0', () => {
    const budget = new DeadLetterBudget(0);
    assert.equal(budget.admit(Array.from({ length: 5000 }, (_, i) => letter('malformed', i))).kept.length, 5000);
    assert.equal(budget.pending, false);
  });
});
