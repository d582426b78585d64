import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChainAnchor } from '../../src/audit/audit-anchor';
import {
  type CheckedRow,
  GENESIS_HASH,
  KEYED_HASH,
  KEYED_HASH_MISMATCH,
  keyedHashOf,
  olderSecretAfterNewer,
  rowHashKey,
  UNKEYED_AFTER_KEYED,
  UNKEYED_HASH,
  unkeyedHashOf,
} from '../../src/audit/audit-chain';
import { type ChainKey, type ChainSource, walkChains } from '../../src/audit/audit-verify';

let nextId = 1;
const KEY = rowHashKey(Buffer.from('test audit secret, 32 characters or more'));
const BY_2 = { key: KEY, pageSize: 2, sliceMs: 5 };
const BY_4 = { key: KEY, pageSize: 4, sliceMs: 5 };

/**
 * A chain of `count` rows from seq 1, as the gateway writes it (keyed); its first `unkeyed` rows as they were written
 * before keyed hashes (version 1, plain sha256).
 */
function chain(writerId: string, count: number, unkeyed = 0): CheckedRow[] {
  const rows: CheckedRow[] = [];
  let prevHash = GENESIS_HASH;
  for (let seq = 1; seq <= count; seq++) {
    const fields = {
      writerId,
      seq,
      occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)),
      actor: 'risk-engine',
      roles: ['risk-engine'],
      tenant: null,
      action: 'model.infer',
      modelName: 'card-fraud',
      modelVersion: '1',
      requestId: `${writerId}-${seq}`,
      clientAddress: '10.0.0.1',
      inputDigest: null,
      outputSummary: { probability: 0.1 },
      outcome: 'ok' as const,
      statusCode: 200,
      latencyMs: 1,
      prevHash,
      hashVersion: seq <= unkeyed ? UNKEYED_HASH : KEYED_HASH,
    };
    const hash = seq <= unkeyed ? unkeyedHashOf(fields) : keyedHashOf(KEY, fields);
    rows.push({ ...fields, id: String(nextId++), hash });
    prevHash = hash;
  }
  return rows;
}

/** The rows as AuditRepository pages them: by writer, by (seq, id), after a key. */
function source(rows: CheckedRow[]): ChainSource & { pages: number } {
  const byKey = (a: CheckedRow, b: CheckedRow) => a.seq - b.seq || Number(a.id) - Number(b.id);
  const fake = {
    pages: 0,
    writers: () => Promise.resolve([...new Set(rows.map((r) => r.writerId))].sort()),
    chainPage: (writerId: string, after: ChainKey | undefined, limit: number) => {
      fake.pages++;
      const past = (r: CheckedRow) =>
        !after || r.seq > Number(after.seq) || (r.seq === Number(after.seq) && Number(r.id) > Number(after.id));
      const page = rows
        .filter((r) => r.writerId === writerId && past(r))
        .sort(byKey)
        .slice(0, limit);
      const last = page.at(-1);
      return Promise.resolve({ rows: page, last: last && { seq: String(last.seq), id: last.id } });
    },
  };
  return fake;
}

const anchorOf = (row: CheckedRow): ChainAnchor => ({
  chain: row.writerId,
  seq: row.seq,
  hash: row.hash,
  at: '2026-01-01T00:01:00.000Z',
});

describe('audit verify walk', () => {
  it('walks every chain past a broken one: each names its own first break, and every anchor is held', async () => {
    // A junk row in the chain whose writer id sorts first; a later chain anchored at seq 5 and cut to 3 rows.
    const junk = { ...chain('a-junk/0', 1)[0], hash: 'f'.repeat(64) };
    const cut = chain('b/0', 5);
    const edited = chain('c/0', 4);
    edited[1] = { ...edited[1], actor: 'someone-else' };
    const intact = chain('d/0', 3);
    const anchors = new Map([
      ['b/0', anchorOf(cut[4])],
      ['d/0', anchorOf(intact[2])],
    ]);
    const report = await walkChains(source([junk, ...cut.slice(0, 3), ...edited, ...intact]), anchors, [], BY_2);

    assert.equal(report.valid, false);
    const broken = (writerId: string, seq: number, id: string, reason: string) => ({ writerId, seq, id, reason });
    assert.deepEqual(report.firstBroken, broken('a-junk/0', 1, junk.id, KEYED_HASH_MISMATCH));
    assert.deepEqual(report.chains, [
      {
        writerId: 'a-junk/0',
        rows: 0,
        valid: false,
        anchoredSeq: null,
        firstBroken: report.firstBroken,
        unkeyedRows: 0,
        rowsUnderRetiredSecrets: 0,
      },
      {
        writerId: 'b/0',
        rows: 3,
        valid: false,
        anchoredSeq: 5,
        firstBroken: null,
        unkeyedRows: 0,
        rowsUnderRetiredSecrets: 0,
      },
      {
        writerId: 'c/0',
        rows: 1,
        valid: false,
        anchoredSeq: null,
        firstBroken: broken('c/0', 2, edited[1].id, KEYED_HASH_MISMATCH),
        unkeyedRows: 0,
        rowsUnderRetiredSecrets: 0,
      },
      {
        writerId: 'd/0',
        rows: 3,
        valid: true,
        anchoredSeq: 3,
        firstBroken: null,
        unkeyedRows: 0,
        rowsUnderRetiredSecrets: 0,
      },
    ]);
    assert.deepEqual(report.anchorBreaks, [
      {
        writerId: 'b/0',
        seq: 5,
        anchoredAt: '2026-01-01T00:01:00.000Z',
        line: null,
        reason: 'rows after seq 3 cut off: the chain was anchored at seq 5 on 2026-01-01T00:01:00.000Z',
      },
    ]);
    assert.equal(report.anchorsChecked, 2);
    assert.equal(report.unanchoredChains, 2);
    // Every row of the intact chains, and each broken chain up to its break.
    assert.equal(report.rowsChecked, 1 + 3 + 2 + 3);
  });

  it("reads every row of a chain by (seq, id): a second row with the seq of a page's last row is named", async () => {
    const rows = chain('w/0', 4);
    const copy = { ...rows[1], id: String(nextId++) };
    const report = await walkChains(source([...rows, copy]), new Map(), [], BY_2);
    assert.deepEqual(report.firstBroken, {
      writerId: 'w/0',
      seq: 2,
      id: copy.id,
      reason: 'expected seq 3: rows are missing or reordered',
    });
    assert.equal(report.chains[0].rows, 2);
  });

  it('holds a broken chain to its anchor with the rows stored past the break', async () => {
    const rows = chain('w/0', 6);
    rows[1] = { ...rows[1], prevHash: 'e'.repeat(64) };
    const held = await walkChains(source(rows), new Map([['w/0', anchorOf(rows[4])]]), [], BY_4);
    assert.deepEqual([held.valid, held.firstBroken?.seq, held.anchorBreaks, held.anchorsChecked], [false, 2, [], 1]);

    const cut = await walkChains(source(rows.slice(0, 4)), new Map([['w/0', anchorOf(rows[4])]]), [], BY_4);
    assert.deepEqual(
      cut.anchorBreaks.map((b) => b.reason),
      ['rows after seq 4 cut off: the chain was anchored at seq 5 on 2026-01-01T00:01:00.000Z'],
    );

    const rewritten = [...rows.slice(0, 4), { ...rows[4], hash: 'd'.repeat(64) }, rows[5]];
    const replaced = await walkChains(source(rewritten), new Map([['w/0', anchorOf(rows[4])]]), [], BY_4);
    assert.match(
      replaced.anchorBreaks[0]?.reason ?? '',
      /^the row at seq 5 is not the one anchored on .*: the chain was rewritten$/,
    );
  });

  it('counts the rows that rest on unkeyed hashes alone, and their chains', async () => {
    // A legacy chain (every row unkeyed); one upgraded at seq 4 (its unkeyed rows held by the keyed ones after them);
    // one keyed from its first row; a legacy chain cut by a break after 2 good rows; a keyed chain with an unkeyed
    // row forged at its head.
    const legacy = chain('a/0', 5, 5);
    const upgraded = chain('b/0', 6, 3);
    const keyed = chain('c/0', 3);
    const broken = chain('d/0', 4, 4);
    broken[2] = { ...broken[2], actor: 'someone-else' };
    const forged = chain('e/0', 3);
    const head = { ...forged[2], id: String(nextId++), seq: 4, prevHash: forged[2].hash, hashVersion: UNKEYED_HASH };
    forged.push({ ...head, hash: unkeyedHashOf(head) });
    const report = await walkChains(
      source([...legacy, ...upgraded, ...keyed, ...broken, ...forged]),
      new Map(),
      [],
      BY_4,
    );

    assert.deepEqual(
      report.chains.map((c) => [c.writerId, c.rows, c.unkeyedRows, c.firstBroken?.reason ?? null]),
      [
        ['a/0', 5, 5, null],
        ['b/0', 6, 0, null],
        ['c/0', 3, 0, null],
        ['d/0', 2, 2, 'row content does not match its hash'],
        ['e/0', 3, 0, UNKEYED_AFTER_KEYED],
      ],
    );
    assert.deepEqual([report.unkeyedRows, report.unkeyedChains], [7, 2]);
  });

  it('takes rows keyed under a retired secret, counts them, and names one under an older secret than the row before', async () => {
    const RETIRED = rowHashKey(Buffer.from('the secret before the rotation, 32 characters'));
    /** `rows` re-hashed under RETIRED up to (not including) index `upTo`, and relinked. */
    const underRetired = (rows: CheckedRow[], upTo: number): CheckedRow[] => {
      const out: CheckedRow[] = [];
      rows.forEach((row, i) => {
        const next = { ...row, prevHash: i === 0 ? GENESIS_HASH : out[i - 1].hash };
        out.push({ ...next, hash: keyedHashOf(i < upTo ? RETIRED : KEY, next) });
      });
      return out;
    };
    // Across the rotation at seq 4; wholly before it; never under it; a row forged under the retired secret at the
    // head of a chain that moved on.
    const across = underRetired(chain('a/0', 6), 3);
    const before = underRetired(chain('b/0', 2), 2);
    const after = chain('c/0', 3);
    const forged = chain('d/0', 3);
    const head = { ...forged[2], id: String(nextId++), seq: 4, prevHash: forged[2].hash };
    forged.push({ ...head, hash: keyedHashOf(RETIRED, head) });
    const rows = [...across, ...before, ...after, ...forged];
    const anchors = new Map([
      ['a/0', anchorOf(across[5])],
      ['b/0', { ...anchorOf(before[1]), retiredSecret: 1 }],
    ]);
    const report = await walkChains(source(rows), anchors, [], { ...BY_4, retiredKeys: [RETIRED] });

    assert.deepEqual(
      report.chains.map((c) => [c.writerId, c.rows, c.rowsUnderRetiredSecrets, c.valid, c.firstBroken?.reason ?? null]),
      [
        ['a/0', 6, 3, true, null],
        ['b/0', 2, 2, true, null],
        ['c/0', 3, 0, true, null],
        ['d/0', 3, 0, false, olderSecretAfterNewer(1, 0)],
      ],
    );
    assert.deepEqual(report.firstBroken, { writerId: 'd/0', seq: 4, id: head.id, reason: olderSecretAfterNewer(1, 0) });
    assert.deepEqual([report.rowsUnderRetiredSecrets, report.anchorsUnderRetiredSecrets], [5, 1]);
    assert.deepEqual(report.anchorBreaks, []);

    // Without the retired secret, the old rows are named where they begin, as before rotation was known.
    const unlisted = await walkChains(source(rows), anchors, [], BY_4);
    assert.deepEqual(
      unlisted.chains.map((c) => [c.writerId, c.rows, c.firstBroken?.seq ?? null, c.firstBroken?.reason ?? null]),
      [
        ['a/0', 0, 1, KEYED_HASH_MISMATCH],
        ['b/0', 0, 1, KEYED_HASH_MISMATCH],
        ['c/0', 3, null, null],
        ['d/0', 3, 4, KEYED_HASH_MISMATCH],
      ],
    );
    assert.equal(unlisted.rowsUnderRetiredSecrets, 0);
  });
});
