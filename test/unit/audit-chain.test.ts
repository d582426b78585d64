import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canonicalJson,
  canonicalJsonByHand,
  canonicalJsonBytes,
  ChainedFields,
  checkChain,
  CheckedRow,
  GENESIS_HEAD,
  KEYED_HASH,
  KEYED_HASH_MISMATCH,
  keyedHashOf,
  rowHashKey,
  SUB_MILLISECOND_TIME,
} from '../../src/audit/audit-chain';
import {
  type AuditCommitReply,
  type AuditCommitRequest,
  commitGroup,
  serveCommits,
} from '../../src/audit/audit-commit';
import { outcomeOf } from '../../src/audit/audit.hook';
import type { AuditDraft } from '../../src/audit/audit-writer.service';

/** The row hash key of a test secret. */
const KEY = rowHashKey(Buffer.from('test audit secret, 32 characters or more'));

/** A chain of `n` rows as the gateway writes them: keyed under KEY. */
function chain(n: number): Array<ChainedFields & { id: string; hash: string }> {
  const rows: Array<ChainedFields & { id: string; hash: string }> = [];
  let prevHash = GENESIS_HEAD.hash;
  for (let seq = 1; seq <= n; seq++) {
    const fields: ChainedFields = {
      writerId: 'w1',
      seq,
      occurredAt: new Date(Date.UTC(2026, 10, 23, 12, 0, seq)),
      actor: 'risk-engine-7',
      roles: ['risk-engine'],
      tenant: 'bank-a',
      action: 'model.infer',
      modelName: 'card-fraud',
      modelVersion: '1',
      requestId: `req-${seq}`,
      clientAddress: '10.0.0.1',
      inputDigest: 'ab'.repeat(32),
      outputSummary: { probability: { values: [0.1 * seq], dims: [1, 1] } },
      outcome: 'ok',
      statusCode: 200,
      latencyMs: 1.5,
      prevHash,
      hashVersion: KEYED_HASH,
    };
    const hash = keyedHashOf(KEY, fields);
    rows.push({ ...fields, id: String(seq), hash });
    prevHash = hash;
  }
  return rows;
}

describe('audit hash chain', () => {
  it('canonical JSON sorts keys at every level and is stable', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } }),
      '{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}',
    );
    assert.equal(canonicalJson({ t: new Date(0) }), '{"t":"1970-01-01T00:00:00.000Z"}');
  });

  it('canonical JSON is JSON.stringify of the value with keys sorted, on random nested values', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const value = (depth: number): unknown => {
      const pick = rnd();
      if (depth > 3 || pick < 0.3) {
        const leaf = [rnd() * 1e6 - 5e5, Math.floor(rnd() * 1e9), 'x"\\\u00e9\n' + rnd(), true, false, null, -0, 1e21];
        return leaf[Math.floor(rnd() * leaf.length)];
      }
      if (pick < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
      const keys = ['b', 'a', 'é', 'Z', 'a b', 'aa', '_'];
      return Object.fromEntries(keys.filter(() => rnd() < 0.5).map((k) => [k, value(depth + 1)]));
    };
    const sorted = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(sorted)
        : v !== null && typeof v === 'object'
          ? Object.fromEntries(
              Object.keys(v)
                .sort()
                .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
            )
          : v;
    for (let i = 0; i < 300; i++) {
      const v = value(0);
      assert.equal(canonicalJson(v), JSON.stringify(sorted(v)));
      assert.equal(canonicalJsonByHand(v), canonicalJson(v));
    }
    // Keys an object literal would not keep in sorted place: written by hand, still sorted by code unit.
    const awkward = JSON.parse('{"b":1,"10":2,"9":3,"__proto__":{"x":[1,{"2":0,"1":0}]},"a":null}') as unknown;
    assert.equal(canonicalJson(awkward), '{"10":2,"9":3,"__proto__":{"x":[1,{"1":0,"2":0}]},"a":null,"b":1}');
    assert.equal(canonicalJson({ a: undefined, b: [undefined, NaN, Infinity] }), '{"b":[null,null,null]}');
  });

  it('canonical JSON stays right for records of one shape, of its keys reordered, and past the shape cache', () => {
    const batch = Array.from({ length: 50 }, (_, i) =>
      i % 2 === 0 ? { id: i, amount: i / 3, m: { z: i, a: -i } } : { m: { a: -i, z: i }, amount: i / 3, id: i },
    );
    const expected = batch.map((_, i) => `{"amount":${JSON.stringify(i / 3)},"id":${i},"m":{"a":${-i},"z":${i}}}`);
    assert.equal(canonicalJson(batch), `[${expected.join(',')}]`);
    // More shapes than the cache keeps, then the first ones again.
    const shapes = Array.from({ length: 40 }, (_, i) => ({ [`k${i}`]: 1, [`j${i}`]: 2 }));
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 40; i++) assert.equal(canonicalJson(shapes[i]), `{"j${i}":2,"k${i}":1}`);
    }
    // Same key count as a cached shape, but keys that need writing by hand.
    assert.equal(canonicalJson({ id: 1, amount: 2, m: 3 }), '{"amount":2,"id":1,"m":3}');
    assert.equal(canonicalJson(JSON.parse('{"10":1,"9":2,"m":3}')), '{"10":1,"9":2,"m":3}');
  });

  it('canonical bytes written in pieces (a long member array) are the bytes of canonicalJson', () => {
    const items = (n: number) =>
      Array.from(
        { length: n },
        (_, i) =>
          [
            { z: i, id: `tx-${i}`, amount: i / 7, features: { v10: 1, v2: -0, v1: 1e21 } },
            undefined,
            () => i,
            new Date(i * 1000),
            [i, { b: 'caf\u00e9 \ud83d\ude00 "q"\n', a: null }],
            JSON.parse(`{"${i % 10}":1,"x":2}`) as unknown,
          ][i % 6],
      );
    const cases: unknown[] = [
      { transactions: items(1000), note: 'x' },
      { b: items(256), a: items(300), c: undefined, d: () => 1, e: new Date(0) },
      JSON.parse(`{"b":1,"10":${JSON.stringify(Array.from({ length: 400 }, (_, i) => i))},"9":3,"__proto__":{"x":1}}`),
      { nested: { list: items(500) } },
      { short: items(255) },
      items(300),
      new Date(5),
      'text',
      null,
    ];
    for (const value of cases) assert.equal(canonicalJsonBytes(value).toString('utf8'), canonicalJson(value));
  });

  it('a whole chain verifies', () => {
    const rows = chain(5);
    assert.deepEqual(checkChain(rows, GENESIS_HEAD, KEY), { head: { seq: 5, hash: rows[4].hash, keyed: true } });
  });

  it('names the first row whose content changed', () => {
    const rows = chain(5);
    rows[2] = { ...rows[2], outputSummary: { probability: { values: [0.01], dims: [1, 1] } } };
    const result = checkChain(rows, GENESIS_HEAD, KEY);
    assert.deepEqual(result, { broken: { writerId: 'w1', seq: 3, id: '3', reason: KEYED_HASH_MISMATCH } });
  });

  it('names a row whose occurred_at holds a fraction of a millisecond, which its Date and hash cannot see', () => {
    // Moved by 900 microseconds in the database, the row was read as the same Date and verified.
    const rows: CheckedRow[] = chain(5);
    rows[1] = { ...rows[1], subMillisecond: true };
    assert.deepEqual(checkChain(rows, GENESIS_HEAD, KEY), {
      broken: { writerId: 'w1', seq: 2, id: '2', reason: SUB_MILLISECOND_TIME },
    });
    assert.match(SUB_MILLISECOND_TIME, /^row content does not match its hash/);
  });

  it('names a gap (a deleted row) and a re-hashed row that breaks the next link', () => {
    const rows = chain(5);
    const gap = checkChain([...rows.slice(0, 2), ...rows.slice(3)], GENESIS_HEAD, KEY);
    assert.ok('broken' in gap && gap.broken.seq === 4 && /missing/.test(gap.broken.reason));
    // Someone who edits row 2 and recomputes its hash, even with the key, still breaks row 3's prev_hash.
    const forged = { ...rows[1], actor: 'someone-else' };
    forged.hash = keyedHashOf(KEY, forged);
    const relinked = checkChain([rows[0], forged, ...rows.slice(2)], GENESIS_HEAD, KEY);
    assert.ok('broken' in relinked && relinked.broken.seq === 3 && /prev_hash/.test(relinked.broken.reason));
  });

  it("a commit answers with its chain's new head, so the main thread knows it without a query", async () => {
    const stored: Array<{ seq: number; hash: string }> = [];
    const store = {
      head: () => Promise.resolve(stored.at(-1)),
      insert: (json: string) => {
        stored.push(...(JSON.parse(json) as Array<{ seq: number; hash: string }>));
        return Promise.resolve();
      },
    };
    const heads = new Map();
    const handlers: Array<(request: AuditCommitRequest) => void> = [];
    const replies: AuditCommitReply[] = [];
    serveCommits(
      {
        on: (_event: string, handler: (request: AuditCommitRequest) => void) => handlers.push(handler),
        postMessage: (r: AuditCommitReply) => replies.push(r),
      } as never,
      {
        claim: () => Promise.resolve(),
        commit: (writerId, drafts) => commitGroup(store, heads, writerId, drafts, KEY),
        close: () => Promise.resolve(),
      },
    );
    const draft = (): AuditDraft => {
      const { writerId: _w, seq: _s, prevHash: _p, id: _i, hash: _h, hashVersion: _v, ...fields } = chain(1)[0];
      return fields;
    };
    // One commit in flight per chain, as AuditWriter's lanes have it.
    for (const [id, drafts] of [
      [1, [draft(), draft()]],
      [2, [draft()]],
    ] as const) {
      handlers[0]({ type: 'commit', id, writerId: 'w/0', drafts: [...drafts] });
      while (replies.length < id) await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(replies, [
      { type: 'committed', id: 1, seq: 2, hash: stored[1].hash },
      { type: 'committed', id: 2, seq: 3, hash: stored[2].hash },
    ]);
  });

  it('maps status codes to outcomes', () => {
    assert.deepEqual([200, 401, 403, 429, 400, 404, 503, 500].map(outcomeOf), [
      'ok',
      'denied',
      'denied',
      'denied',
      'invalid',
      'invalid',
      'error',
      'error',
    ]);
  });
});
