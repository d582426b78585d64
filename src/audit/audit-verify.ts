/**
 * GET /v1/audit/verify's walk over the audit chains, apart from Nest and TypeORM: every row of every chain is read,
 * each chain reports its own first break, and each chain is held to its anchor whatever its rows showed. A break in
 * one chain used to end the walk, so that one junk row (and the table is append-only: it stays) hid every later
 * chain and every anchor from then on.
 *
 * It runs on the event loop that answers every other request, so it hands the loop back every `sliceMs` of hashing
 * (and at each page, which it awaits): 2,000 rows hashed at once held the loop for 100 ms and more.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { anchorMismatch, type ChainAnchor } from './audit-anchor';
import type { AnchorBreak } from './audit-anchor.service';
import { type ChainBreak, type CheckedRow, followLink, GENESIS_HEAD, type LinkHead, type RowKeys } from './audit-chain';

/** Where a page of a chain ended: its last row's seq and id, as the database has them (text, exact past 2^53). */
export interface ChainKey {
  seq: string;
  id: string;
}

export interface ChainPage {
  rows: CheckedRow[];
  /** The last row's key; undefined when the page is empty. */
  last: ChainKey | undefined;
}

/** Where the walk reads the chains (AuditRepository). */
export interface ChainSource {
  /** Every chain with a row in the database. */
  writers(): Promise<string[]>;
  /** A chain's rows by (seq, id), `limit` at a time after the key `after`; from its lowest row when undefined. */
  chainPage(writerId: string, after: ChainKey | undefined, limit: number): Promise<ChainPage>;
}

export interface ChainReport {
  writerId: string;
  /** Rows that verified, from the first up to the first break. */
  rows: number;
  valid: boolean;
  anchoredSeq: number | null;
  firstBroken: ChainBreak | null;
  /** Rows that verified by an unkeyed hash alone: see ChainWalk.unkeyedRows. */
  unkeyedRows: number;
  /** Of `rows`, those keyed under a retired secret (AUDIT_HMAC_PREVIOUS_SECRETS): written before a rotation. */
  rowsUnderRetiredSecrets: number;
}

export interface VerifyReport {
  valid: boolean;
  rowsChecked: number;
  chains: ChainReport[];
  firstBroken: ChainBreak | null;
  anchorsChecked: number;
  /** Chains with no anchor this gateway holds: proven by their hashes alone. */
  unanchoredChains: number;
  anchorBreaks: AnchorBreak[];
  /** Rows that verified by an unkeyed hash alone, over every chain (ChainWalk.unkeyedRows). */
  unkeyedRows: number;
  /** Chains with such rows: their rows that verified end in an unkeyed one. */
  unkeyedChains: number;
  /** Rows that verified under a retired secret's row key (AUDIT_HMAC_PREVIOUS_SECRETS), over every chain. */
  rowsUnderRetiredSecrets: number;
  /** Anchors held to the database whose line verified under a retired secret's anchor key. */
  anchorsUnderRetiredSecrets: number;
}

/** One chain's walk, fed its rows in chain order. */
export class ChainWalk {
  /** The last row that verified. */
  private head: LinkHead = GENESIS_HEAD;
  /** Rows that verified before the first break. */
  rows = 0;
  /** Of those, the unkeyed ones (hash_version 1). */
  private unkeyed = 0;
  /** Of those, the ones keyed under a retired secret. */
  retired = 0;
  firstBroken: ChainBreak | undefined;
  /** The last row read, past a break too: how far the stored chain reaches, for its anchor. */
  private last: { seq: number } | undefined;
  /** The stored hash at the anchored seq: the anchored one if any row there has it. */
  private hashAtAnchor: string | undefined;

  /** `keys`: the row hash keys (rowHashKey of the current and of each retired secret), for keyed rows. */
  constructor(
    private readonly anchor: ChainAnchor | undefined,
    private readonly keys: RowKeys,
  ) {}

  /** Rows hash-checked: those that verified, and the first broken one. */
  get rowsChecked(): number {
    return this.rows + (this.firstBroken ? 1 : 0);
  }

  /**
   * Rows that verified by an unkeyed hash alone, which anyone with write access to the table could have computed:
   * the unkeyed rows when no keyed row verified after them, else none. A keyed row holds every row before it (its
   * HMAC covers prev_hash, which the sha256 links tie to every earlier row), and none can follow it unkeyed.
   */
  get unkeyedRows(): number {
    return this.head.keyed ? 0 : this.unkeyed;
  }

  add(row: CheckedRow): void {
    if (this.anchor && row.seq === this.anchor.seq && this.hashAtAnchor !== this.anchor.hash) {
      this.hashAtAnchor = row.hash;
    }
    this.last = row;
    if (this.firstBroken) return;
    const next = followLink(row, this.head, this.keys);
    if ('broken' in next) {
      this.firstBroken = next.broken;
      return;
    }
    this.head = next.head;
    this.rows++;
    if (!this.head.keyed) this.unkeyed++;
    if (this.head.retiredSecret !== undefined) this.retired++;
  }

  /**
   * Why the stored chain no longer matches its anchor, or undefined (and so without one). Past a break, the chain
   * is held to the rows stored after it as well: a cut tail or a replaced anchored row is named, whatever broke.
   */
  anchorMismatch(): string | undefined {
    if (!this.anchor) return undefined;
    const head = { seq: Math.max(this.last?.seq ?? 0, 0) };
    return anchorMismatch(this.anchor, { head, hashAtAnchor: this.hashAtAnchor });
  }
}

export interface WalkOptions {
  /** The row hash key (rowHashKey of AUDIT_HMAC_SECRET), for keyed rows. */
  key: Buffer;
  /**
   * The row hash keys of the secrets rotations retired (AUDIT_HMAC_PREVIOUS_SECRETS), newest first: a keyed row that
   * does not verify under `key` is tried under them (only then: see followLink).
   */
  retiredKeys?: readonly Buffer[];
  /** Rows read per query. */
  pageSize: number;
  /** Longest stretch of checking before the event loop is handed back (setImmediate), in milliseconds. */
  sliceMs: number;
}

/**
 * Walks every stored chain, and every anchored one with no row left, and holds each to its anchor. `firstBroken` is
 * the first break met (chains in the order `writers` gives them); each chain's report has its own.
 */
export async function walkChains(
  source: ChainSource,
  anchors: Map<string, ChainAnchor>,
  anchorBreaks: AnchorBreak[],
  { key, retiredKeys = [], pageSize, sliceMs }: WalkOptions,
): Promise<VerifyReport> {
  const chains: ChainReport[] = [];
  let rowsChecked = 0;
  let anchorsChecked = 0;
  let unanchoredChains = 0;
  let unkeyedRows = 0;
  let unkeyedChains = 0;
  let rowsUnderRetiredSecrets = 0;
  let anchorsUnderRetiredSecrets = 0;
  let firstBroken: ChainBreak | null = null;
  const stored = await source.writers();
  // An anchored chain with no row left is walked too: every one of its rows was cut off.
  const storedIds = new Set(stored);
  const gone = [...anchors.keys()].filter((id) => !storedIds.has(id)).sort();
  for (const writerId of [...stored, ...gone]) {
    const anchor = anchors.get(writerId);
    const walk = new ChainWalk(anchor, { current: key, retired: retiredKeys });
    // From the chain's lowest row, whatever its seq: one below 1 (inserted by hand) breaks the chain there.
    let after: ChainKey | undefined;
    for (;;) {
      const page = await source.chainPage(writerId, after, pageSize);
      if (page.rows.length === 0 || !page.last) break;
      let sliceStart = performance.now();
      for (const row of page.rows) {
        walk.add(row);
        if (performance.now() - sliceStart >= sliceMs) {
          await nextTurn();
          sliceStart = performance.now();
        }
      }
      after = page.last;
    }
    rowsChecked += walk.rowsChecked;
    if (!anchor) unanchoredChains++;
    unkeyedRows += walk.unkeyedRows;
    if (walk.unkeyedRows > 0) unkeyedChains++;
    rowsUnderRetiredSecrets += walk.retired;
    firstBroken ??= walk.firstBroken ?? null;
    const mismatch = walk.anchorMismatch();
    if (anchor) anchorsChecked++;
    if (anchor?.retiredSecret !== undefined) anchorsUnderRetiredSecrets++;
    if (anchor && mismatch) {
      anchorBreaks.push({ writerId, seq: anchor.seq, anchoredAt: anchor.at, line: null, reason: mismatch });
    }
    chains.push({
      writerId,
      rows: walk.rows,
      valid: !walk.firstBroken && !mismatch,
      anchoredSeq: anchor?.seq ?? null,
      firstBroken: walk.firstBroken ?? null,
      unkeyedRows: walk.unkeyedRows,
      rowsUnderRetiredSecrets: walk.retired,
    });
  }
  return {
    valid: firstBroken === null && anchorBreaks.length === 0,
    rowsChecked,
    chains,
    firstBroken,
    anchorsChecked,
    unanchoredChains,
    anchorBreaks,
    unkeyedRows,
    unkeyedChains,
    rowsUnderRetiredSecrets,
    anchorsUnderRetiredSecrets,
  };
}
