import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuditAggregates } from '../../src/audit/audit-aggregates';
import { AuditDraft, AuditUnavailable, AuditWriter } from '../../src/audit/audit-writer.service';
import { AppConfig } from '../../src/config/app-config';

function refusal(requestId: string, at: number, action = 'fraud.score'): AuditDraft {
  return {
    occurredAt: new Date(at),
    actor: null,
    roles: [],
    tenant: null,
    action,
    modelName: null,
    modelVersion: null,
    requestId,
    clientAddress: '192.0.2.1',
    inputDigest: null,
    outputSummary: { reason: `token expired (${requestId})` },
    outcome: 'denied',
    statusCode: 429,
    latencyMs: 0.2,
  };
}

/** The real writer's one method the aggregates use: here it records rows, or fails while `down`. */
function writer(): { rows: AuditDraft[]; down: boolean; writer: AuditWriter } {
  const state = { rows: [] as AuditDraft[], down: false, writer: undefined as unknown as AuditWriter };
  state.writer = {
    record: (draft: AuditDraft) => {
      if (state.down) return Promise.reject(new AuditUnavailable('audit trail unavailable', 'database unreachable'));
      state.rows.push(draft);
      return Promise.resolve();
    },
  } as unknown as AuditWriter;
  return state;
}

const config = { AUTH_REFUSAL_WINDOW_MS: 60_000 } as AppConfig;

describe('audit aggregates (refusals past an address budget)', () => {
  it('summarises answered reads (scrapes of /metrics) by count and span, without a reason or refusals', async () => {
    const w = writer();
    const aggregates = new AuditAggregates(w.writer, config);
    const scrape = (requestId: string, at: number): AuditDraft => ({
      ...refusal(requestId, at, 'metrics.read'),
      actor: 'prometheus-1',
      roles: ['monitoring'],
      outputSummary: null,
      outcome: 'ok',
      statusCode: 200,
    });
    aggregates.count('scraper prometheus-1', scrape('s1', 1_000));
    aggregates.count('scraper prometheus-1', scrape('s2', 16_000));
    await aggregates.beforeApplicationShutdown();
    assert.equal(w.rows.length, 1);
    const [row] = w.rows;
    assert.equal(row.actor, 'prometheus-1');
    assert.equal(row.outcome, 'ok');
    assert.equal(row.requestId, 's2');
    assert.deepEqual(row.outputSummary, {
      requests: 2,
      firstAt: new Date(1_000).toISOString(),
      lastAt: new Date(16_000).toISOString(),
    });
  });

  it('writes one summary row per group, action and status, with the count, the span and the last request', async () => {
    const w = writer();
    const aggregates = new AuditAggregates(w.writer, config);
    aggregates.count('192.0.2.1', refusal('r1', 1_000));
    aggregates.count('192.0.2.1', refusal('r2', 2_000));
    aggregates.count('192.0.2.1', refusal('r3', 3_000));
    aggregates.count('192.0.2.1', refusal('r4', 4_000, 'audit.events'));
    aggregates.count('address 2001:db8::/64', { ...refusal('r5', 5_000), clientAddress: '2001:db8::/64' });
    await aggregates.beforeApplicationShutdown();
    assert.equal(w.rows.length, 3);
    const [first, other, v6] = w.rows;
    assert.equal(first.action, 'fraud.score');
    assert.equal(first.requestId, 'r3');
    assert.equal(first.clientAddress, '192.0.2.1');
    assert.equal(first.statusCode, 429);
    assert.equal(first.outcome, 'denied');
    assert.equal(first.latencyMs, 0);
    assert.deepEqual(first.outputSummary, {
      reason: 'token expired (r3)',
      refusals: 3,
      firstAt: new Date(1_000).toISOString(),
      lastAt: new Date(3_000).toISOString(),
    });
    assert.equal(other.action, 'audit.events');
    assert.equal(other.outputSummary?.refusals, 1);
    assert.equal(v6.clientAddress, '2001:db8::/64');
    // Nothing more to write.
    await aggregates.flush();
    assert.equal(w.rows.length, 3);
  });

  it('keeps counting what could not be written, and writes it with the next summary', async () => {
    const w = writer();
    const aggregates = new AuditAggregates(w.writer, config);
    aggregates.count('192.0.2.1', refusal('r1', 1_000));
    aggregates.count('192.0.2.1', refusal('r2', 2_000));
    w.down = true;
    const flushing = aggregates.flush();
    // Counted while the failed summary is on its way back: the two are merged.
    aggregates.count('192.0.2.1', { ...refusal('r3', 3_000), actor: 'someone' });
    await flushing;
    assert.equal(w.rows.length, 0);
    w.down = false;
    await aggregates.beforeApplicationShutdown();
    assert.equal(w.rows.length, 1);
    assert.equal(w.rows[0].requestId, 'r3');
    assert.equal(w.rows[0].actor, null, 'the kept refusals and the later one named different actors');
    assert.deepEqual(w.rows[0].outputSummary, {
      reason: 'token expired (r3)',
      refusals: 3,
      firstAt: new Date(1_000).toISOString(),
      lastAt: new Date(3_000).toISOString(),
      severalActors: true,
    });
  });

  it('names no actor in a summary of refusals that named several (a peer trying calling AE titles)', async () => {
    const w = writer();
    const aggregates = new AuditAggregates(w.writer, config);
    aggregates.count('192.0.2.1', { ...refusal('r1', 1_000), actor: 'dimse:STRANGER' });
    aggregates.count('192.0.2.1', { ...refusal('r2', 2_000), actor: 'dimse:INTRUDER' });
    aggregates.count('192.0.2.2', { ...refusal('r3', 3_000), actor: 'dimse:STRANGER', clientAddress: '192.0.2.2' });
    await aggregates.flush();
    assert.deepEqual(
      w.rows.map((r) => [r.clientAddress, r.actor, r.outputSummary?.refusals, r.outputSummary?.severalActors]),
      [
        ['192.0.2.1', null, 2, true],
        ['192.0.2.2', 'dimse:STRANGER', 1, undefined],
      ],
    );
  });

  it("writes a summary row per tenant: one tenant's row carries none of another's request ids or counts", async () => {
    const w = writer();
    const aggregates = new AuditAggregates(w.writer, config);
    const inTenant = (tenant: string, requestId: string, at: number): AuditDraft => ({
      ...refusal(requestId, at),
      actor: 'shared-user',
      tenant,
    });
    // One group (a subject past its budget, or every subject past the tracked ones), refused in two tenants.
    for (let i = 1; i <= 3; i++) aggregates.count('subject shared-user', inTenant('tA', `tA-req-${i}`, i));
    for (let i = 1; i <= 2; i++) aggregates.count('subject shared-user', inTenant('tB', `tB-secret-req-${i}`, 10 + i));
    await aggregates.flush();
    assert.deepEqual(
      w.rows.map((r) => [r.tenant, r.actor, r.requestId, r.outputSummary?.refusals]),
      [
        ['tA', 'shared-user', 'tA-req-3', 3],
        ['tB', 'shared-user', 'tB-secret-req-2', 2],
      ],
    );
    // No tenant is not the tenant "null".
    w.rows.length = 0;
    aggregates.count('subject x', { ...refusal('r1', 1), tenant: null });
    aggregates.count('subject x', { ...refusal('r2', 2), tenant: 'null' });
    await aggregates.flush();
    assert.deepEqual(
      w.rows.map((r) => [r.tenant, r.requestId]),
      [
        [null, 'r1'],
        ['null', 'r2'],
      ],
    );
  });
});
