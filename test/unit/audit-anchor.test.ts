import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Logger, type LoggerService } from '@nestjs/common';
import { AuditAnchors } from '../../src/audit/audit-anchor.service';
import type { ChainHead } from '../../src/audit/audit-commit';
import { MetricsService } from '../../src/common/metrics/metrics.service';
import { loadConfig } from '../../src/config/app-config';
import {
  AnchorFile,
  anchorFileNumber,
  anchorKey,
  anchorLine,
  anchorMac,
  anchorMismatch,
  type ChainAnchor,
  claimAnchorFile,
  compactedAnchors,
  readAnchors,
} from '../../src/audit/audit-anchor';

const key = anchorKey(Buffer.from('test-audit-secret-0123456789abcdef0123456789'));
const hash = (n: number): string => n.toString(16).padStart(64, '0');
const anchor = (chain: string, seq: number): ChainAnchor => ({
  chain,
  seq,
  hash: hash(seq),
  at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
});

describe('audit chain anchors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-anchor-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads back the newest anchor of each chain, whatever the order of the lines', () => {
    const text = [anchor('a/0', 3), anchor('a/1', 1), anchor('a/0', 7), anchor('a/0', 5)]
      .map((a) => anchorLine(key, a))
      .join('');
    const reading = readAnchors(text, key);
    assert.deepEqual(reading.bad, []);
    assert.equal(reading.lines, 4);
    assert.deepEqual(
      [...reading.latest.values()].map((l) => l.anchor),
      [anchor('a/0', 7), anchor('a/1', 1)],
    );
  });

  it('an anchor line altered, forged without the secret, moved to another chain or cut short does not verify', () => {
    const good = anchorLine(key, anchor('a/0', 9));
    const lowered = good.replace('"seq":9', '"seq":4');
    const moved = good.replace('"a/0"', '"a/1"');
    const rehashed = good.replace(hash(9), hash(8));
    const forged = anchorLine(anchorKey(Buffer.from('a guess at the secret, 32 characters long')), anchor('a/0', 12));
    // The MAC of another anchor, with the fields of this one.
    const swapped = JSON.stringify({ ...anchor('a/0', 12), mac: anchorMac(key, anchor('a/0', 9)) }) + '\n';
    const text = [good, lowered, moved, rehashed, forged, swapped, '\n', '{"chain":"a/0"}\n', 'not json\n', good]
      .join('')
      .concat(good.slice(0, 30));
    const reading = readAnchors(text, key);
    assert.deepEqual(
      reading.bad.map((b) => [b.line, b.claims]),
      [
        [2, { chain: 'a/0', seq: 4 }],
        [3, { chain: 'a/1', seq: 9 }],
        [4, { chain: 'a/0', seq: 9 }],
        [5, { chain: 'a/0', seq: 12 }],
        [6, { chain: 'a/0', seq: 12 }],
        [7, undefined],
        [8, { chain: 'a/0' }],
        [9, undefined],
        [11, undefined],
      ],
    );
    assert.deepEqual(
      [...reading.latest.values()].map((l) => l.anchor),
      [anchor('a/0', 9)],
    );
    assert.equal(reading.lines, 11);
  });

  it('the anchors key is derived from the audit secret, not the secret itself', () => {
    const secret = Buffer.from('test-audit-secret-0123456789abcdef0123456789');
    assert.notDeepEqual(anchorKey(secret), secret);
    assert.deepEqual(anchorKey(secret), key);
  });

  it("takes lines MAC'd under a retired secret's anchor key, naming it, and compacts them as its own; a line under none is bad", async () => {
    const retired = anchorKey(Buffer.from('the secret before the rotation, 32 characters'));
    const older = anchorKey(Buffer.from('the secret before that one, 32 characters long'));
    const unknown = anchorKey(Buffer.from('a secret no gateway was given, 32 characters'));
    const text = [
      anchorLine(older, anchor('r/0', 1)),
      anchorLine(retired, anchor('r/0', 2)),
      anchorLine(retired, anchor('r/1', 4)),
      anchorLine(key, anchor('r/0', 3)),
      anchorLine(unknown, anchor('r/2', 5)),
    ].join('');
    const reading = readAnchors(text, key, [retired, older]);
    assert.deepEqual(
      reading.bad.map((b) => [b.line, b.claims]),
      [[5, { chain: 'r/2', seq: 5 }]],
    );
    assert.deepEqual(
      [...reading.latest.values()].map((l) => l.anchor),
      [anchor('r/0', 3), { ...anchor('r/1', 4), retiredSecret: 1 }],
    );
    assert.deepEqual(
      readAnchors(anchorLine(older, anchor('r/0', 1)), key, [retired, older]).latest.get('r/0')?.anchor,
      { ...anchor('r/0', 1), retiredSecret: 2 },
    );
    // Without the retired keys, the old lines are bad ones, as before rotation was known.
    assert.deepEqual(
      readAnchors(text, key).bad.map((b) => b.line),
      [1, 2, 3, 5],
    );
    // A file that goes on across a rotation: the process appends under the current key, reads the old lines as
    // anchors, and compaction keeps the newest of each chain (no old line is kept as a bad one).
    const path = join(dir, 'rotated.jsonl');
    writeFileSync(path, text);
    const file = new AnchorFile(path, key, 1, [retired, older]);
    await file.append([anchor('r/1', 6)]);
    const after = readFileSync(path, 'utf8');
    assert.equal(
      after,
      anchorLine(unknown, anchor('r/2', 5)) + anchorLine(key, anchor('r/0', 3)) + anchorLine(key, anchor('r/1', 6)),
    );
  });

  it('appends lines to a file it creates, with its folder', async () => {
    const path = join(dir, 'fresh', 'anchors.jsonl');
    const file = new AnchorFile(path, key);
    assert.equal(await file.read(), undefined);
    await file.append([anchor('b/0', 1), anchor('b/1', 2)]);
    await file.append([anchor('b/0', 3)]);
    assert.equal(readFileSync(path, 'utf8').split('\n').length, 4);
    const reading = await file.read();
    assert.deepEqual(
      [...(reading?.latest.values() ?? [])].map((l) => l.anchor),
      [anchor('b/0', 3), anchor('b/1', 2)],
    );
  });

  it('compacts the file once it grows: the newest anchor of each chain, and any bad line kept as it was', async () => {
    const path = join(dir, 'growing.jsonl');
    const file = new AnchorFile(path, key, 10);
    await file.append([anchor('c/0', 1), anchor('c/1', 1)]);
    appendFileSync(path, 'tampered\n');
    for (let seq = 2; seq <= 7; seq++) await file.append([anchor('c/0', seq)]);
    assert.equal(readFileSync(path, 'utf8').split('\n').length - 1, 9, 'not yet past 2 chains + 10 lines');
    for (let seq = 8; seq <= 20; seq++) await file.append([anchor('c/0', seq)]);
    const lines = readFileSync(path, 'utf8').split('\n');
    assert.ok(lines.length - 1 <= 2 + 10 + 1, `${lines.length - 1} lines after compaction`);
    assert.equal(lines[0], 'tampered');
    const reading = await file.read();
    assert.deepEqual(
      reading?.bad.map((b) => b.text),
      ['tampered'],
    );
    assert.deepEqual(
      [...(reading?.latest.values() ?? [])].map((l) => l.anchor),
      [anchor('c/0', 20), anchor('c/1', 1)],
    );
  });

  it('compacts a grown file when a process first appends to it (a restart), and starts a new line after one cut short', async () => {
    const path = join(dir, 'restart.jsonl');
    const lines = Array.from({ length: 30 }, (_, i) => anchorLine(key, anchor(`d/${i % 2}`, i + 1))).join('');
    writeFileSync(path, lines + anchorLine(key, anchor('d/0', 99)).slice(0, 20));
    const file = new AnchorFile(path, key, 10);
    await file.append([anchor('d/2', 1)]);
    const reading = await file.read();
    assert.equal(reading?.lines, 4);
    assert.equal(reading?.bad.length, 1);
    assert.deepEqual(
      [...(reading?.latest.values() ?? [])].map((l) => l.anchor),
      [anchor('d/0', 29), anchor('d/1', 30), anchor('d/2', 1)],
    );
    // Without compaction due, a line cut short is closed before the next anchor.
    const small = join(dir, 'torn.jsonl');
    writeFileSync(small, anchorLine(key, anchor('e/0', 1)) + '{"chain":"e/0","se');
    await new AnchorFile(small, key).append([anchor('e/0', 2)]);
    const torn = readAnchors(readFileSync(small, 'utf8'), key);
    assert.deepEqual(
      torn.bad.map((b) => b.line),
      [2],
    );
    assert.deepEqual(torn.latest.get('e/0')?.anchor, anchor('e/0', 2));
  });

  it('names what the database holds against an anchor: rows cut off, every row gone, a rewritten chain', () => {
    const a = anchor('h/0', 9);
    assert.equal(anchorMismatch(a, { head: { seq: 9 }, hashAtAnchor: hash(9) }), undefined);
    assert.equal(anchorMismatch(a, { head: { seq: 12 }, hashAtAnchor: hash(9) }), undefined);
    assert.equal(
      anchorMismatch(a, { head: { seq: 6 }, hashAtAnchor: undefined }),
      `rows after seq 6 cut off: the chain was anchored at seq 9 on ${a.at}`,
    );
    assert.equal(
      anchorMismatch(a, { head: { seq: 0 }, hashAtAnchor: undefined }),
      `every row cut off: the chain was anchored at seq 9 on ${a.at}`,
    );
    assert.equal(
      anchorMismatch(a, { head: { seq: 11 }, hashAtAnchor: hash(7) }),
      `the row at seq 9 is not the one anchored on ${a.at}: the chain was rewritten`,
    );
  });

  it("a closing anchor (a stopped gateway's last) is read back as closed, and rows past it are named", () => {
    const closed: ChainAnchor = { ...anchor('c/0', 9), closed: true };
    const line = anchorLine(key, closed);
    assert.match(line, /"closed":true/);
    const reading = readAnchors(anchorLine(key, anchor('c/0', 9)) + line, key);
    assert.deepEqual([reading.bad, reading.latest.get('c/0')?.anchor], [[], closed]);
    // Its MAC covers the mark: neither taken off a closing line nor put on a plain one without the secret.
    const opened = line.replace(',"closed":true', '');
    const shut = anchorLine(key, anchor('c/1', 4)).replace('"mac"', '"closed":true,"mac"');
    const marked = line.replace('"closed":true', '"closed":"yes"');
    assert.deepEqual(
      readAnchors(opened + shut + marked, key).bad.map((b) => b.line),
      [1, 2, 3],
    );
    assert.equal(anchorMismatch(closed, { head: { seq: 9 }, hashAtAnchor: hash(9) }), undefined);
    assert.equal(
      anchorMismatch(closed, { head: { seq: 11 }, hashAtAnchor: hash(9) }),
      `rows after seq 9 added to a closed chain: its gateway anchored seq 9 as the chain's last row when it stopped on ${closed.at}`,
    );
    assert.equal(
      anchorMismatch(closed, { head: { seq: 6 }, hashAtAnchor: undefined }),
      `rows after seq 6 cut off: the chain was anchored at seq 9 on ${closed.at}`,
    );
  });

  it('compactedAnchors keeps what a reading found', () => {
    const text = [anchor('f/0', 1), anchor('f/0', 2)].map((a) => anchorLine(key, a)).join('') + 'x\n';
    assert.equal(compactedAnchors(readAnchors(text, key)), 'x\n' + anchorLine(key, anchor('f/0', 2)));
  });

  it('claimAnchorFile gives each running process a file of its own, numbered beside the configured one', async () => {
    assert.equal(anchorFileNumber('/srv/data/audit-anchors.jsonl', 1), '/srv/data/audit-anchors.jsonl');
    assert.equal(anchorFileNumber('/srv/data/audit-anchors.jsonl', 2), '/srv/data/audit-anchors.2.jsonl');
    assert.equal(anchorFileNumber('/srv/data/anchors', 3), '/srv/data/anchors.3');
    const path = join(dir, 'claimed', 'anchors.jsonl');
    const [a, b, c] = [await claimAnchorFile(path), await claimAnchorFile(path), await claimAnchorFile(path)];
    assert.deepEqual(
      [a.path, b.path, c.path],
      [path, join(dir, 'claimed', 'anchors.2.jsonl'), join(dir, 'claimed', 'anchors.3.jsonl')],
    );
    await b.release();
    const again = await claimAnchorFile(path);
    assert.equal(again.path, b.path);
    for (const claim of [a, c, again]) await claim.release();
    // A lock socket's path is cut at 107 bytes without a word: every number would then be one lock.
    await assert.rejects(
      claimAnchorFile(join(dir, 'x'.repeat(120), 'anchors.jsonl')),
      /longer than a Unix socket path/,
    );
  });

  it('a write that fails rejects, and the next one still works', async () => {
    const blocked = join(dir, 'blocked');
    writeFileSync(blocked, '');
    const file = new AnchorFile(join(blocked, 'anchors.jsonl'), key);
    await assert.rejects(file.append([anchor('g/0', 1)]));
    await assert.rejects(file.append([anchor('g/0', 1)]));
    const ok = new AnchorFile(join(dir, 'ok.jsonl'), key);
    await ok.append([anchor('g/0', 1)]);
    assert.equal((await ok.read())?.latest.size, 1);
  });
});

describe('AuditAnchors (the gateway process anchoring its chains)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-anchors-test-'));
  const logged: unknown[] = [];
  const errors: unknown[] = [];
  const capture: LoggerService = {
    log: (message: unknown) => logged.push(message),
    error: (message: unknown) => errors.push(message),
    warn: () => undefined,
  };
  Logger.overrideLogger(capture);
  after(() => {
    Logger.overrideLogger(false);
    rmSync(dir, { recursive: true, force: true });
  });
  const anchorsOf = (
    file: string,
    interval = '3600000',
    env: Record<string, string> = {},
  ): { anchors: AuditAnchors; metrics: MetricsService } => {
    const metrics = new MetricsService();
    const config = loadConfig({
      NODE_ENV: 'test',
      DATA_DIR: dir,
      AUDIT_HMAC_SECRET: 'test-audit-secret-0123456789abcdef0123456789',
      AUDIT_ANCHOR_FILE: join(dir, file),
      AUDIT_ANCHOR_INTERVAL_MS: interval,
      ...env,
    });
    return { anchors: new AuditAnchors(config, metrics), metrics };
  };
  const linesOf = (file: string): Array<ChainAnchor & { mac: string }> =>
    readFileSync(join(dir, file), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ChainAnchor & { mac: string });

  it('anchors a chain only when its head moved, in the file and as a log line, and closes every chain at shutdown', async () => {
    const { anchors } = anchorsOf('moving.jsonl');
    const heads = new Map<string, ChainHead>([['w/0', { seq: 2, hash: hash(2) }]]);
    await anchors.start(() => heads);
    await anchors.anchor();
    await anchors.anchor();
    heads.set('w/1', { seq: 1, hash: hash(1) });
    await anchors.anchor();
    heads.set('w/0', { seq: 5, hash: hash(5) });
    await anchors.stop();
    await anchors.stop();
    // With a writer id of its own (AUDIT_WRITER_ID unset), each chain's last anchor closes it, moved or not.
    assert.deepEqual(
      linesOf('moving.jsonl').map((l) => [l.chain, l.seq, l.hash, l.closed]),
      [
        ['w/0', 2, hash(2), undefined],
        ['w/1', 1, hash(1), undefined],
        ['w/0', 5, hash(5), true],
        ['w/1', 1, hash(1), true],
      ],
    );
    const logLines = logged.filter((m) => (m as { msg?: string }).msg === 'audit chain head');
    assert.deepEqual(
      logLines,
      linesOf('moving.jsonl').map((l) => ({ msg: 'audit chain head', ...l })),
      'each anchor is logged as written, MAC included',
    );
  });

  it('closes no chain at shutdown under an AUDIT_WRITER_ID, which the next process takes up again', async () => {
    const { anchors } = anchorsOf('named.jsonl', '3600000', { AUDIT_WRITER_ID: 'pacs-gateway-1' });
    const heads = new Map<string, ChainHead>([['pacs-gateway-1/0', { seq: 2, hash: hash(2) }]]);
    await anchors.start(() => heads);
    await anchors.anchor();
    heads.set('pacs-gateway-1/1', { seq: 1, hash: hash(1) });
    await anchors.stop();
    assert.deepEqual(
      linesOf('named.jsonl').map((l) => [l.chain, l.seq, l.closed]),
      [
        ['pacs-gateway-1/0', 2, undefined],
        ['pacs-gateway-1/1', 1, undefined],
      ],
    );
  });

  it('anchors on its interval; 0 turns anchoring off, at shutdown too', async () => {
    const heads = new Map<string, ChainHead>([['x/0', { seq: 1, hash: hash(1) }]]);
    const ticking = anchorsOf('ticking.jsonl', '20').anchors;
    await ticking.start(() => heads);
    const deadline = Date.now() + 10_000;
    while (!readIfAny(join(dir, 'ticking.jsonl')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await ticking.stop();
    assert.deepEqual(
      linesOf('ticking.jsonl').map((l) => [l.seq, l.closed]),
      [
        [1, undefined],
        [1, true],
      ],
    );
    const off = anchorsOf('off.jsonl', '0').anchors;
    await off.start(() => heads);
    await off.stop();
    assert.equal(readIfAny(join(dir, 'off.jsonl')), undefined);
  });

  it('a write that fails is logged and counted, never thrown, and the head is anchored at the next round', async () => {
    writeFileSync(join(dir, 'not-a-folder'), '');
    const { anchors, metrics } = anchorsOf('not-a-folder/anchors.jsonl');
    errors.length = 0;
    // Nor is a file it could not claim: it goes on with the configured one.
    await anchors.start(() => new Map([['y/0', { seq: 3, hash: hash(3) }]]));
    await anchors.anchor();
    await anchors.stop();
    assert.match((await metrics.metrics()).toString(), /gateway_audit_anchor_failures_total 2/);
    assert.equal(errors.length, 3);
    assert.match(JSON.stringify(errors[0]), /audit anchor file not claimed/);
    assert.match(JSON.stringify(errors[1]), /not written to the anchor file/);
  });

  it('two gateways on one anchor file (one DATA_DIR, one PostgreSQL) each write a file of their own; a restarted one takes the first free file back', async () => {
    const heads = (chain: string) => () => new Map<string, ChainHead>([[chain, { seq: 4, hash: hash(4) }]]);
    const first = anchorsOf('shared.jsonl').anchors;
    const second = anchorsOf('shared.jsonl').anchors;
    await first.start(heads('first/0'));
    await second.start(heads('second/0'));
    assert.equal(first.filePath, join(dir, 'shared.jsonl'));
    assert.equal(second.filePath, join(dir, 'shared.2.jsonl'));
    await Promise.all([first.anchor(), second.anchor()]);
    await first.stop();
    assert.deepEqual(
      linesOf('shared.jsonl').map((l) => [l.chain, l.closed]),
      [
        ['first/0', undefined],
        ['first/0', true],
      ],
    );
    assert.deepEqual(
      linesOf('shared.2.jsonl').map((l) => l.chain),
      ['second/0'],
    );
    // Each verifies against its own file: neither finds the other's anchors missing from it.
    assert.deepEqual((await second.forVerify()).breaks, []);
    const restarted = anchorsOf('shared.jsonl').anchors;
    await restarted.start(heads('restarted/0'));
    assert.equal(restarted.filePath, join(dir, 'shared.jsonl'));
    assert.deepEqual([...(await restarted.forVerify()).anchors.keys()], ['first/0']);
    await restarted.stop();
    await second.stop();
  });
});

function readIfAny(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8') || undefined;
  } catch {
    return undefined;
  }
}
