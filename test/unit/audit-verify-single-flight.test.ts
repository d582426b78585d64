import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuditAnchors } from '../../src/audit/audit-anchor.service';
import { AuditQueryService } from '../../src/audit/audit-query.service';
import type { AuditRepository } from '../../src/audit/audit.repository';
import { type CheckedRow, GENESIS_HASH, KEYED_HASH, keyedHashOf, rowHashKey } from '../../src/audit/audit-chain';
import { walkChains } from '../../src/audit/audit-verify';
import type { Principal } from '../../src/common/access';
import type { AppConfig } from '../../src/config/app-config';

const CONFIG = { AUDIT_HMAC_SECRET: 's'.repeat(32), NODE_ENV: 'test', DATA_DIR: '/nonexistent' } as AppConfig;
const KEY = rowHashKey(Buffer.from(CONFIG.AUDIT_HMAC_SECRET!));
const AUDITOR: Principal = {
  subject: 'auditor',
  roles: ['auditor'],
  permissions: new Set(['audit:read']),
  validUntil: Date.now() + 3_600_000,
};

/** A repository with one chain of one row, counting the walks that start; the first waits for `release` or `fail`. */
function gatedRepository(): {
  repository: AuditRepository;
  walks: () => number;
  release: () => void;
  fail: () => void;
} {
  let walks = 0;
  let open!: () => void;
  let refuse!: (error: Error) => void;
  const gate = new Promise<void>((resolve, reject) => ((open = resolve), (refuse = reject)));
  const fields = { ...row(1, GENESIS_HASH) };
  const repository = {
    writers: async () => {
      if (++walks === 1) await gate;
      return ['w/0'];
    },
    chainPage: (_writerId: string, after: unknown) =>
      Promise.resolve(after ? { rows: [], last: undefined } : { rows: [fields], last: { seq: '1', id: '1' } }),
  } as unknown as AuditRepository;
  return {
    repository,
    walks: () => walks,
    release: () => open(),
    fail: () => refuse(new Error('database away')),
  };
}

function row(seq: number, prevHash: string): CheckedRow {
  const fields = {
    writerId: 'w/0',
    seq,
    occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)),
    actor: 'a',
    roles: [],
    tenant: null,
    action: 'model.infer',
    modelName: null,
    modelVersion: null,
    requestId: `r-${seq}`,
    clientAddress: '10.0.0.1',
    inputDigest: null,
    outputSummary: null,
    outcome: 'ok' as const,
    statusCode: 200,
    latencyMs: 1,
    prevHash,
    hashVersion: KEYED_HASH,
  };
  return { ...fields, id: String(seq), hash: keyedHashOf(KEY, fields) };
}

const anchors = { forVerify: () => Promise.resolve({ anchors: new Map(), breaks: [] }) } as unknown as AuditAnchors;

describe('audit verify, one walk at a time', () => {
  it('calls that arrive while a walk runs share it: one walk, the same answer', async () => {
    const gated = gatedRepository();
    const service = new AuditQueryService(gated.repository, anchors, CONFIG);
    const first = service.verify(AUDITOR);
    const second = service.verify({ ...AUDITOR, subject: 'another-auditor' });
    gated.release();
    const [a, b] = await Promise.all([first, second]);
    assert.equal(gated.walks(), 1);
    assert.equal(a, b);
    assert.deepEqual([a.valid, a.rowsChecked], [true, 1]);
    // Once it is done, the next call walks the trail again: an answer is never kept.
    await service.verify(AUDITOR);
    assert.equal(gated.walks(), 2);
  });

  it('refuses a token that names a tenant even while a walk runs, rather than hand it the shared answer', async () => {
    const gated = gatedRepository();
    const service = new AuditQueryService(gated.repository, anchors, CONFIG);
    const running = service.verify(AUDITOR);
    await assert.rejects(service.verify({ ...AUDITOR, tenant: 'bank-a' }), { code: 'FORBIDDEN' });
    gated.release();
    await running;
    assert.equal(gated.walks(), 1);
  });

  it('a walk that fails fails every call sharing it, and the next call walks again', async () => {
    const gated = gatedRepository();
    const service = new AuditQueryService(gated.repository, anchors, CONFIG);
    const calls = [service.verify(AUDITOR), service.verify(AUDITOR)];
    gated.fail();
    for (const call of calls) await assert.rejects(call, /database away/);
    assert.equal(gated.walks(), 1);
    assert.equal((await service.verify(AUDITOR)).valid, true);
    assert.equal(gated.walks(), 2);
  });

  it('hands the event loop back while it hashes, even when every read answers at once', async () => {
    const rows: CheckedRow[] = [];
    for (let seq = 1; seq <= 50; seq++) rows.push(row(seq, rows.at(-1)?.hash ?? GENESIS_HASH));
    const source = {
      writers: () => Promise.resolve(['w/0']),
      chainPage: (_writerId: string, after: unknown) =>
        Promise.resolve(after ? { rows: [], last: undefined } : { rows, last: { seq: '50', id: '50' } }),
    };
    // Reads that resolve at once keep the walk in promise jobs, which run before any macrotask: without a yield of
    // its own, the walk ended before this immediate could run.
    let ranDuring = false;
    let done = false;
    setImmediate(() => (ranDuring = !done));
    const report = await walkChains(source, new Map(), [], { key: KEY, pageSize: 100, sliceMs: 0 });
    done = true;
    assert.equal(report.valid, true);
    assert.equal(ranDuring, true);
  });
});
