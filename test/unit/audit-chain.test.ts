import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { anchorKey } from '../../src/audit/audit-anchor';
import {
  canonicalJson,
  canonicalJsonByHand,
  canonicalJsonBytes,
  ChainedFields,
  checkChain,
  CheckedRow,
  followLink,
  GENESIS_HEAD,
  KEYED_HASH,
  KEYED_HASH_MISMATCH,
  keyedHashOf,
  olderSecretAfterNewer,
  rowHashKey,
  type RowKeys,
  SUB_MILLISECOND_TIME,
  UNKEYED_AFTER_KEYED,
  UNKEYED_HASH,
  unkeyedHashOf,
} from '../../src/audit/audit-chain';
import {
  type AuditCommitReply,
  type AuditCommitRequest,
  commitGroup,
  serveCommits,
} from '../../src/audit/audit-commit';
import { outcomeOf } from '../../src/audit/audit.hook';
import { tenantCursorKey } from '../../src/audit/audit-cursor';
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

describe('keyed row hashes', () => {
  const SECRET = Buffer.from('test audit secret, 32 characters or more');
  const OTHER_KEY = rowHashKey(Buffer.from('another audit secret, 32 characters or more'));
  /** `rows` re-hashed from `from` on as an unkeyed (version 1) chain, linked as a forger without the key can. */
  const unkeyed = <T extends ChainedFields & { hash: string }>(rows: T[], from = 0): T[] => {
    const out = rows.map((r) => ({ ...r }));
    for (let i = from; i < out.length; i++) {
      out[i].prevHash = i === 0 ? GENESIS_HEAD.hash : out[i - 1].hash;
      out[i].hashVersion = UNKEYED_HASH;
      out[i].hash = unkeyedHashOf(out[i]);
    }
    return out;
  };

  it('has a key of its own, apart from the secret, the anchor and the cursor keys', () => {
    const keys = [SECRET, KEY, anchorKey(SECRET), tenantCursorKey(SECRET)].map((k) => k.toString('hex'));
    assert.equal(new Set(keys).size, keys.length);
    assert.equal(KEY.length, 32);
  });

  it('a row hashed under another key does not verify, though linked and hashed as the gateway does', () => {
    const rows = chain(4);
    const forged = { ...rows[3], actor: 'forger' };
    forged.hash = keyedHashOf(OTHER_KEY, forged);
    assert.deepEqual(checkChain([...rows.slice(0, 3), forged], GENESIS_HEAD, KEY), {
      broken: { writerId: 'w1', seq: 4, id: '4', reason: KEYED_HASH_MISMATCH },
    });
    // A whole chain written under another key (a forger's, or the server's before AUDIT_HMAC_SECRET was rotated).
    const result = checkChain(chain(3), GENESIS_HEAD, OTHER_KEY);
    assert.ok('broken' in result && result.broken.seq === 1 && result.broken.reason === KEYED_HASH_MISMATCH);
  });

  it('an unkeyed row with a correct sha256 at the head of a keyed chain is a break', () => {
    const rows = chain(4);
    const appended = unkeyed([...rows, { ...rows[3], id: '5', seq: 5, requestId: 'forged' }], 4);
    assert.equal(appended[4].hash, unkeyedHashOf(appended[4]));
    assert.deepEqual(checkChain(appended, GENESIS_HEAD, KEY), {
      broken: { writerId: 'w1', seq: 5, id: '5', reason: UNKEYED_AFTER_KEYED },
    });
  });

  it('changing hash_version on a row is a break', () => {
    const rows = chain(4);
    const reason = (changed: CheckedRow[]) => {
      const result = checkChain(changed, GENESIS_HEAD, KEY);
      return 'broken' in result ? [result.broken.seq, result.broken.reason] : undefined;
    };
    const withVersion = (i: number, hashVersion: number) => rows.map((r, k) => (k === i ? { ...r, hashVersion } : r));
    // A keyed row relabelled unkeyed: after a keyed row, and as the first row (its sha256 is no HMAC).
    assert.deepEqual(reason(withVersion(2, UNKEYED_HASH)), [3, UNKEYED_AFTER_KEYED]);
    assert.deepEqual(reason(withVersion(0, UNKEYED_HASH)), [1, 'row content does not match its hash']);
    // A version the gateway never writes.
    assert.deepEqual(reason(withVersion(1, 3)), [
      2,
      'hash_version 3 is none the gateway writes (1: unkeyed, 2: keyed)',
    ]);
    // An unkeyed row relabelled keyed: the version is inside a keyed hash, and its sha256 is no HMAC.
    const legacy = unkeyed(rows);
    assert.deepEqual(reason(legacy.map((r, k) => (k === 1 ? { ...r, hashVersion: KEYED_HASH } : r))), [
      2,
      KEYED_HASH_MISMATCH,
    ]);
    // The version is covered by the keyed hash: the same fields under version 2 and version 1 hash apart.
    assert.notEqual(keyedHashOf(KEY, rows[0]), unkeyedHashOf(rows[0]));
  });

  it('a legacy (unkeyed) chain still verifies, and may go on keyed (an upgrade), never back', () => {
    const legacy = unkeyed(chain(5));
    assert.deepEqual(checkChain(legacy, GENESIS_HEAD, KEY), { head: { seq: 5, hash: legacy[4].hash } });
    // The rows before the upgrade were hashed as the gateway always did: sha256 of the fields' JSON array, then the
    // output summary with sorted keys. An outside verifier recomputes it with no key.
    const r = legacy[0];
    const fields = [r.writerId, r.seq, r.occurredAt.toISOString(), r.actor, r.roles, r.tenant, r.action, r.modelName];
    const more = [r.modelVersion, r.requestId, r.clientAddress, r.inputDigest, r.outcome, r.statusCode, r.latencyMs];
    const text = JSON.stringify([...fields, ...more, r.prevHash]) + canonicalJson(r.outputSummary);
    assert.equal(r.hash, createHash('sha256').update(text).digest('hex'));

    // Upgraded at seq 4: rows 4 and 5 keyed, linked to the unkeyed row 3.
    const upgraded = legacy.slice(0, 3);
    for (const row of chain(5).slice(3)) {
      const next = { ...row, prevHash: upgraded[upgraded.length - 1].hash };
      upgraded.push({ ...next, hash: keyedHashOf(KEY, next) });
    }
    assert.deepEqual(checkChain(upgraded, GENESIS_HEAD, KEY), {
      head: { seq: 5, hash: upgraded[4].hash, keyed: true },
    });
    // Back to unkeyed at seq 5: a break.
    const back = unkeyed(upgraded, 4);
    assert.deepEqual(checkChain(back, GENESIS_HEAD, KEY), {
      broken: { writerId: 'w1', seq: 5, id: '5', reason: UNKEYED_AFTER_KEYED },
    });
  });

  it('commits write keyed rows (hash_version 2) under the key they are given', async () => {
    const stored: CheckedRow[] = [];
    const store = {
      head: () => Promise.resolve(undefined),
      insert: (json: string) => {
        const rows = JSON.parse(json) as Array<CheckedRow & { occurredAt: string }>;
        stored.push(...rows.map((r, i) => ({ ...r, id: String(i + 1), occurredAt: new Date(r.occurredAt) })));
        return Promise.resolve();
      },
    };
    const drafts = chain(3).map(
      ({ writerId: _w, seq: _s, prevHash: _p, id: _i, hash: _h, hashVersion: _v, ...d }) => d,
    );
    await commitGroup(store, new Map(), 'w1', drafts, KEY);
    assert.deepEqual(
      stored.map((r) => r.hashVersion),
      [KEYED_HASH, KEYED_HASH, KEYED_HASH],
    );
    assert.ok('head' in checkChain(stored, GENESIS_HEAD, KEY));
    assert.ok('broken' in checkChain(stored, GENESIS_HEAD, OTHER_KEY));
  });
});

describe('rotated audit secrets', () => {
  // Three generations of the secret: A (the oldest), B, C. KEY stands for the current one in chain().
  const [A, B, C] = ['first', 'second', 'third'].map((n) =>
    rowHashKey(Buffer.from(`${n} audit secret, 32 chars or more`)),
  );
  /** `rows` re-hashed under `keys[i]` for row i (keyed) and relinked, as gateways under those secrets wrote them. */
  const keyedUnder = (keys: Buffer[]): CheckedRow[] => {
    const out: CheckedRow[] = [];
    chain(keys.length).forEach((row, i) => {
      const next = { ...row, prevHash: i === 0 ? GENESIS_HEAD.hash : out[i - 1].hash };
      out.push({ ...next, hash: keyedHashOf(keys[i], next) });
    });
    return out;
  };
  const broken = (seq: number, reason: string) => ({ broken: { writerId: 'w1', seq, id: String(seq), reason } });

  it('a chain that goes on across a rotation verifies with the retired secret listed, and breaks at its first old row without', () => {
    const rows = keyedUnder([A, A, A, B, B]);
    assert.deepEqual(checkChain(rows, GENESIS_HEAD, B, [A]), { head: { seq: 5, hash: rows[4].hash, keyed: true } });
    assert.deepEqual(checkChain(rows, GENESIS_HEAD, B), broken(1, KEYED_HASH_MISMATCH));
    // A chain that ended before the rotation (a gateway whose writer id was its own): its head names the secret.
    const closed = keyedUnder([A, A]);
    assert.deepEqual(checkChain(closed, GENESIS_HEAD, B, [A]), {
      head: { seq: 2, hash: closed[1].hash, keyed: true, retiredSecret: 1 },
    });
  });

  it("a chain's key only moves forward: a row under an older secret after one under a newer is a break that says so", () => {
    // Forged by a holder of the retired secret A, appended after the rows under B.
    assert.deepEqual(
      checkChain(keyedUnder([A, B, B, A]), GENESIS_HEAD, B, [A]),
      broken(4, olderSecretAfterNewer(1, 0)),
    );
    assert.equal(
      olderSecretAfterNewer(1, 0),
      'a row keyed under retired secret 1 of AUDIT_HMAC_PREVIOUS_SECRETS after one keyed under the current ' +
        "AUDIT_HMAC_SECRET: a chain's key only moves forward, from a retired secret to a newer one",
    );
    // Two rotations (C current, B then A retired): forward, even past a secret, verifies; back is named by position.
    const head = (rows: CheckedRow[]) => ({
      head: { seq: rows.length, hash: rows[rows.length - 1].hash, keyed: true },
    });
    for (const keys of [
      [A, B, C],
      [A, C],
      [B, C, C],
      [A, A, B, B, C],
    ]) {
      const rows = keyedUnder(keys);
      assert.deepEqual(checkChain(rows, GENESIS_HEAD, C, [B, A]), head(rows));
    }
    assert.deepEqual(checkChain(keyedUnder([B, A]), GENESIS_HEAD, C, [B, A]), broken(2, olderSecretAfterNewer(2, 1)));
    assert.deepEqual(
      checkChain(keyedUnder([A, C, B]), GENESIS_HEAD, C, [B, A]),
      broken(3, olderSecretAfterNewer(1, 0)),
    );
    // Unkeyed rows may still precede keyed ones under any secret, never follow them.
    const legacy = keyedUnder([A, B]);
    const upgraded = [{ ...legacy[0], hashVersion: UNKEYED_HASH }, legacy[1]];
    upgraded[0].hash = unkeyedHashOf(upgraded[0]);
    upgraded[1] = { ...upgraded[1], prevHash: upgraded[0].hash };
    upgraded[1].hash = keyedHashOf(A, upgraded[1]);
    assert.deepEqual(checkChain(upgraded, GENESIS_HEAD, B, [A]), {
      head: { seq: 2, hash: upgraded[1].hash, keyed: true, retiredSecret: 1 },
    });
  });

  it('tries the retired keys only on a mismatch, starting from the key the row before verified under', () => {
    /** `keys` with every read of a key counted: the current one, and each retired one by position. */
    const counted = (current: Buffer, retired: Buffer[]) => {
      const reads = { current: 0, retired: 0 };
      const keys: RowKeys = {
        get current() {
          reads.current++;
          return current;
        },
        retired: new Proxy(retired, {
          get(target, property, receiver) {
            if (typeof property === 'string' && /^\d+$/.test(property)) reads.retired++;
            return Reflect.get(target, property, receiver) as unknown;
          },
        }),
      };
      return { keys, reads };
    };
    const walk = (rows: CheckedRow[], keys: RowKeys) => {
      let head = GENESIS_HEAD;
      for (const row of rows) {
        const next = followLink(row, head, keys);
        assert.ok('head' in next, JSON.stringify(next));
        head = next.head;
      }
    };
    // Every row under the current secret: one HMAC a row, the retired keys never read.
    const current = counted(B, [A]);
    walk(keyedUnder([B, B, B, B, B, B]), current.keys);
    assert.deepEqual(current.reads, { current: 6, retired: 0 });
    // A chain written before the rotation: the current key is tried at its first row only, then the one that held.
    const old = counted(B, [A]);
    walk(keyedUnder([A, A, A, A, A, A]), old.keys);
    assert.deepEqual(old.reads, { current: 1, retired: 6 });
    // Across the rotation: at the first row under B, A (the row before's) is tried first, then B holds.
    const across = counted(B, [A]);
    walk(keyedUnder([A, A, A, B, B, B]), across.keys);
    assert.deepEqual(across.reads, { current: 1 + 1 + 2, retired: 3 + 1 });
  });
});
