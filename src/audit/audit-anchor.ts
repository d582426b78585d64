/**
 * Anchors of the audit hash chains outside the database. A hash chain shows an edited, deleted or
 * re-linked row, but not that a chain's newest rows were cut off: the shorter chain still verifies.
 * So each gateway process writes down, now and then, how far each of its chains had reached (chain,
 * seq, hash, time), one JSON line per anchor in a file of its own, authenticated with an HMAC under
 * a key derived from AUDIT_HMAC_SECRET: whoever administers the database, without that secret,
 * cannot forge an anchor nor move one to another chain or seq. Verification then holds the database
 * to the anchors: the anchored row must still be there, with the anchored hash.
 *
 * The file keeps only the newest anchor of each chain once it grows (compaction): that one alone
 * says everything the older ones did, since a chain that reaches it intact from its first row holds
 * every earlier anchored row too (the hash links them).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { makeDir } from '../common/make-dir';
import { claimSocketLock } from '../common/socket-lock';
import { derivedKey } from './keyed-digest';

/** How far a chain had reached at a time: its last committed row's seq and hash. */
export interface ChainAnchor {
  /** The chain: `<writer id>/<lane>`. */
  chain: string;
  seq: number;
  hash: string;
  /** When the head was anchored (ISO 8601). */
  at: string;
  /**
   * The chain's last anchor: written at a graceful shutdown by a process whose writer id was its own (host:pid:start
   * time, AUDIT_WRITER_ID unset), which no later process takes up again, so no row can follow it.
   */
  closed?: true;
  /**
   * Read from a line MAC'd under a retired secret's anchor key (written before a rotation): that secret's position in
   * AUDIT_HMAC_PREVIOUS_SECRETS, 1 the newest. Never written into a line.
   */
  retiredSecret?: number;
}

/** A line of the anchor file that does not verify: edited, forged, or cut short. */
export interface BadAnchorLine {
  /** 1-based line number in the file. */
  line: number;
  /** What the line claims, when it parses that far: never to be trusted, only to be named. */
  claims?: { chain?: string; seq?: number };
  text: string;
}

export interface AnchorReading {
  /** The verified anchor of each chain with the highest seq, with its line as written. */
  latest: Map<string, { anchor: ChainAnchor; text: string }>;
  bad: BadAnchorLine[];
  /** Lines in the file, bad ones included. */
  lines: number;
}

const HASH = /^[0-9a-f]{64}$/;

/** The anchors' own key, derived from the audit secret, so an anchor MAC is no input digest and the reverse. */
export function anchorKey(auditSecret: Buffer): Buffer {
  return derivedKey(auditSecret, 'gateway audit chain anchor v1');
}

/** HMAC-SHA256 (hex) of the JSON array [chain, seq, hash, at], with "closed" after them for a closing anchor. */
export function anchorMac(key: Buffer, a: ChainAnchor): string {
  const fields: unknown[] = [a.chain, a.seq, a.hash, a.at];
  if (a.closed) fields.push('closed');
  return createHmac('sha256', key).update(JSON.stringify(fields)).digest('hex');
}

/** The anchor as one line of the file: its fields and their MAC, ending in a newline. */
export function anchorLine(key: Buffer, a: ChainAnchor): string {
  const closed = a.closed ? { closed: true } : {};
  return (
    JSON.stringify({ chain: a.chain, seq: a.seq, hash: a.hash, at: a.at, ...closed, mac: anchorMac(key, a) }) + '\n'
  );
}

/**
 * Parses the anchor file's text: the newest verified anchor of each chain, and every line that does not verify. A line
 * is verified under `key` (the current secret's anchor key) or, failing that, under one of `retired` (the anchor keys
 * of AUDIT_HMAC_PREVIOUS_SECRETS, newest first), which its anchor then names (retiredSecret).
 */
export function readAnchors(text: string, key: Buffer, retired: readonly Buffer[] = []): AnchorReading {
  const latest = new Map<string, { anchor: ChainAnchor; text: string }>();
  const bad: BadAnchorLine[] = [];
  const lines = text.split('\n');
  // The text after the last newline: empty when the file ends as written, else a line cut short.
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    const anchor = verifiedAnchor(line, key, retired);
    if ('bad' in anchor) {
      bad.push({ line: i + 1, ...(anchor.claims ? { claims: anchor.claims } : {}), text: line });
      return;
    }
    const known = latest.get(anchor.chain);
    // At one seq, the later line: a closing anchor follows the round's plain one.
    if (!known || known.anchor.seq <= anchor.seq) latest.set(anchor.chain, { anchor, text: line });
  });
  return { latest, bad, lines: lines.length };
}

function verifiedAnchor(
  line: string,
  key: Buffer,
  retired: readonly Buffer[],
): ChainAnchor | { bad: true; claims?: BadAnchorLine['claims'] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { bad: true };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { bad: true };
  const { chain, seq, hash, at, closed, mac } = parsed as Record<string, unknown>;
  const claims = {
    ...(typeof chain === 'string' ? { chain } : {}),
    ...(typeof seq === 'number' ? { seq } : {}),
  };
  if (
    typeof chain !== 'string' ||
    typeof seq !== 'number' ||
    !Number.isSafeInteger(seq) ||
    seq < 1 ||
    typeof hash !== 'string' ||
    !HASH.test(hash) ||
    typeof at !== 'string' ||
    typeof mac !== 'string' ||
    !HASH.test(mac) ||
    (closed !== undefined && closed !== true)
  ) {
    return { bad: true, claims };
  }
  const anchor: ChainAnchor = { chain, seq, hash, at, ...(closed === true ? { closed } : {}) };
  const stored = Buffer.from(mac, 'hex');
  const macOk = (under: Buffer) => timingSafeEqual(Buffer.from(anchorMac(under, anchor), 'hex'), stored);
  if (macOk(key)) return anchor;
  const secret = retired.findIndex(macOk);
  return secret === -1 ? { bad: true, claims } : { ...anchor, retiredSecret: secret + 1 };
}

/**
 * The compacted file: every line that does not verify, as it was (so that the alteration stays
 * reported), then the newest anchor of each chain.
 */
export function compactedAnchors(reading: AnchorReading): string {
  const kept = [...reading.bad.map((b) => b.text), ...[...reading.latest.values()].map((l) => l.text)];
  return kept.map((line) => line + '\n').join('');
}

/**
 * One process's anchor file: appends (each fsync'd before it counts as written) and compaction,
 * one at a time. The file belongs to one process (claimAnchorFile): when one of two sharing it
 * compacts, what the other appended meanwhile is lost.
 */
export class AnchorFile {
  private queue: Promise<unknown> = Promise.resolve();
  /** Lines in the file and distinct chains, once read; compaction is due past chains + compactAfter. */
  private lines: number | undefined;
  private chains = new Set<string>();
  /** Whether the file ends in a line cut short, which the next append must not continue. */
  private unterminated = false;

  /** `key` MACs the lines written; a line read verifies under it or under one of `retired` (see readAnchors). */
  constructor(
    readonly path: string,
    private readonly key: Buffer,
    private readonly compactAfter = 1000,
    private readonly retired: readonly Buffer[] = [],
  ) {}

  /** The file's anchors, or undefined when there is no file yet. */
  async read(): Promise<AnchorReading | undefined> {
    const text = await readIfThere(this.path);
    return text === undefined ? undefined : readAnchors(text, this.key, this.retired);
  }

  /** Appends one line per anchor, in one write, and flushes it to disk; compacts the file once it has grown. */
  append(anchors: ChainAnchor[]): Promise<void> {
    return this.serially(async () => {
      if (this.lines === undefined) await this.load();
      const text = (this.unterminated ? '\n' : '') + anchors.map((a) => anchorLine(this.key, a)).join('');
      const file = await open(this.path, 'a', 0o640);
      try {
        await file.writeFile(text);
        await file.sync();
      } finally {
        await file.close();
      }
      this.unterminated = false;
      this.lines = (this.lines ?? 0) + anchors.length;
      for (const a of anchors) this.chains.add(a.chain);
      if (this.lines > this.chains.size + this.compactAfter) await this.compactNow();
    });
  }

  private async load(): Promise<void> {
    await makeDir(dirname(this.path));
    const text = (await readIfThere(this.path)) ?? '';
    const reading = readAnchors(text, this.key, this.retired);
    this.lines = reading.lines;
    this.chains = new Set(reading.latest.keys());
    this.unterminated = text.length > 0 && !text.endsWith('\n');
    if (this.lines > this.chains.size + this.compactAfter) await this.compactNow();
  }

  /** Rewrites the file with the newest anchor of each chain (and any bad line): a new file, flushed, renamed over it. */
  private async compactNow(): Promise<void> {
    const reading = readAnchors((await readIfThere(this.path)) ?? '', this.key, this.retired);
    const temporary = `${this.path}.compacting`;
    const file = await open(temporary, 'w', 0o640);
    try {
      await file.writeFile(compactedAnchors(reading));
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, this.path);
    await syncDirectory(dirname(this.path));
    this.lines = reading.bad.length + reading.latest.size;
    this.chains = new Set(reading.latest.keys());
    this.unterminated = false;
  }

  private serially<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Gateways anchoring side by side from one directory, at most. */
const MAX_ANCHOR_FILES = 64;

export interface AnchorFileClaim {
  /** This process's anchor file. */
  path: string;
  release(): Promise<void>;
}

/**
 * Claims an anchor file for this process: `path`, or while another running gateway holds it (several
 * gateways on one PostgreSQL with one DATA_DIR), the first free one of `<name>.2<ext>`, `<name>.3<ext>`, ...
 * beside it. Each claim is a socket `<file>.lock` (claimSocketLock) that goes with the process however it
 * ends, so a restarted gateway takes a file back, and with it its predecessors' anchors. Rejects when
 * the directory cannot hold the lock, or all the files are held.
 */
export async function claimAnchorFile(path: string): Promise<AnchorFileClaim> {
  await makeDir(dirname(path));
  for (let n = 1; n <= MAX_ANCHOR_FILES; n++) {
    const file = anchorFileNumber(path, n);
    // A path too long for a Unix socket is refused there: cut, the slots' locks would all be one socket.
    const lock = await claimSocketLock(`${file}.lock`);
    if (lock) return { path: file, release: () => new Promise<void>((done) => lock.close(() => done())) };
  }
  throw new Error(`${path} and the ${MAX_ANCHOR_FILES - 1} anchor files beside it are all held by running gateways`);
}

/** The n-th anchor file of `path`: `path` itself, then `<name>.<n><ext>`. */
export function anchorFileNumber(path: string, n: number): string {
  if (n === 1) return path;
  const ext = extname(path);
  return `${path.slice(0, path.length - ext.length)}.${n}${ext}`;
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Makes a rename durable; a file system that cannot sync a directory keeps the rename all the same. */
async function syncDirectory(path: string): Promise<void> {
  try {
    const dir = await open(path, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // Not every platform can open or sync a directory; the rename itself stands.
  }
}

/** The database's side of one anchored chain, after its rows were verified from the first. */
export interface AnchoredChainState {
  /** The last row of the chain that verified. */
  head: { seq: number };
  /** The hash of the chain's row at the anchored seq, undefined when there is none. */
  hashAtAnchor: string | undefined;
}

/** Why the database no longer matches an anchor, or undefined when it holds the anchored row unchanged. */
export function anchorMismatch(anchor: ChainAnchor, found: AnchoredChainState): string | undefined {
  if (found.head.seq < anchor.seq) {
    const kept = found.head.seq === 0 ? 'every row cut off' : `rows after seq ${found.head.seq} cut off`;
    return `${kept}: the chain was anchored at seq ${anchor.seq} on ${anchor.at}`;
  }
  if (found.hashAtAnchor !== anchor.hash) {
    return `the row at seq ${anchor.seq} is not the one anchored on ${anchor.at}: the chain was rewritten`;
  }
  if (anchor.closed && found.head.seq > anchor.seq) {
    return (
      `rows after seq ${anchor.seq} added to a closed chain: its gateway anchored seq ${anchor.seq} as the chain's ` +
      `last row when it stopped on ${anchor.at}`
    );
  }
  return undefined;
}
