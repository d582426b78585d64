import { Injectable, Logger } from '@nestjs/common';
import { Counter } from 'prom-client';
import { MetricsService } from '../common/metrics/metrics.service';
import { AppConfig } from '../config/app-config';
import {
  AnchorFile,
  type AnchorFileClaim,
  anchorKey,
  anchorMac,
  type ChainAnchor,
  claimAnchorFile,
} from './audit-anchor';
import type { ChainHead } from './audit-commit';
import { auditSecret, retiredAuditSecrets } from './input-digest';

/** Something verify finds wrong with an anchor: the database no longer holds it, or the anchor file was altered. */
export interface AnchorBreak {
  writerId: string | null;
  seq: number | null;
  anchoredAt: string | null;
  /** The anchor file's line, for a line that does not verify. */
  line: number | null;
  reason: string;
}

/**
 * Anchors this process's audit chains outside the database (see audit-anchor.ts): every
 * AUDIT_ANCHOR_INTERVAL_MS, and once more at shutdown after the last commit, each chain whose head
 * moved is written to the anchor file (fsync'd) and logged (`audit chain head`) for the log
 * shipper's copy. The file is this process's own (claimAnchorFile: AUDIT_ANCHOR_FILE, or a numbered
 * one beside it while another gateway holds that). The heads come with the commits' answers
 * (AuditWriter.heads): no query, nothing per request. A failed write is logged and counted, never
 * fatal: the heads are anchored at the next round.
 */
@Injectable()
export class AuditAnchors {
  private readonly logger = new Logger('Audit');
  private readonly key: Buffer;
  /** The anchor keys of the retired secrets (AUDIT_HMAC_PREVIOUS_SECRETS): lines written before a rotation verify. */
  private readonly retiredKeys: Buffer[];
  /** The configured file until start claims one; verify reads it either way. */
  private file: AnchorFile;
  private claim: AnchorFileClaim | undefined;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private heads: () => ReadonlyMap<string, ChainHead> = () => new Map();
  private round: Promise<void> = Promise.resolve();
  /** The newest anchor this process wrote of each chain: verify holds the file to them too. */
  private readonly written = new Map<string, ChainAnchor>();
  private readonly anchored: Counter;
  private readonly failures: Counter;
  /**
   * Whether this process's chains end with it: its writer id is its own (host:pid:start time, AUDIT_WRITER_ID
   * unset), so no later process appends to them, and its last anchors at shutdown close them.
   */
  private readonly closesChains: boolean;

  constructor(config: AppConfig, metrics: MetricsService) {
    this.key = anchorKey(auditSecret(config));
    this.retiredKeys = retiredAuditSecrets(config).map(anchorKey);
    this.closesChains = config.AUDIT_WRITER_ID === undefined;
    this.file = this.anchorFile(config.auditAnchorFile);
    this.intervalMs = config.AUDIT_ANCHOR_INTERVAL_MS;
    this.anchored = new Counter({
      name: 'gateway_audit_anchors_total',
      help: 'Audit chain heads anchored outside the database (anchor file, fsync-ed)',
      registers: [metrics.registry],
    });
    this.failures = new Counter({
      name: 'gateway_audit_anchor_failures_total',
      help: 'Anchor file writes that failed (logged; the heads are anchored at the next round)',
      registers: [metrics.registry],
    });
  }

  private anchorFile(path: string): AnchorFile {
    return new AnchorFile(path, this.key, undefined, this.retiredKeys);
  }

  /** The anchor file this process writes (once started) and verify reads. */
  get filePath(): string {
    return this.file.path;
  }

  /** Claims this process's anchor file, then anchors the chains of `heads` every AUDIT_ANCHOR_INTERVAL_MS (unless 0). */
  async start(heads: () => ReadonlyMap<string, ChainHead>): Promise<void> {
    this.heads = heads;
    if (this.intervalMs === 0) return;
    try {
      this.claim = await claimAnchorFile(this.file.path);
      this.file = this.anchorFile(this.claim.path);
    } catch (error) {
      // Anchoring never stops the gateway: it writes the configured file, which another one may write too.
      this.logger.error({
        msg: 'audit anchor file not claimed: another gateway anchoring in it would overwrite its lines',
        file: this.file.path,
        error: String(error),
      });
    }
    this.logger.log({ msg: 'anchoring audit chain heads', file: this.file.path });
    this.timer = setInterval(() => void this.anchor(), this.intervalMs).unref();
  }

  /**
   * Stops the rounds, anchors the heads as they are (called after the last commit), and gives the file up. With a
   * writer id of its own, every chain's head is anchored as closed, moved or not: a row found after it was forged.
   */
  async stop(): Promise<void> {
    if (this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.round = this.round.then(() => this.anchorMoved(this.closesChains));
      await this.round;
    }
    const claim = this.claim;
    this.claim = undefined;
    await claim?.release();
  }

  /** Anchors every chain whose head moved since its last anchor, after any round still writing; never rejects. */
  anchor(): Promise<void> {
    this.round = this.round.then(() => this.anchorMoved());
    return this.round;
  }

  private async anchorMoved(closing = false): Promise<void> {
    const at = new Date().toISOString();
    const moved: ChainAnchor[] = [];
    for (const [chain, { seq, hash }] of this.heads()) {
      if (closing) moved.push({ chain, seq, hash, at, closed: true });
      else if (this.written.get(chain)?.seq !== seq) moved.push({ chain, seq, hash, at });
    }
    if (moved.length === 0) return;
    for (const a of moved) this.logger.log({ msg: 'audit chain head', ...a, mac: anchorMac(this.key, a) });
    try {
      await this.file.append(moved);
      for (const a of moved) this.written.set(a.chain, a);
      this.anchored.inc(moved.length);
    } catch (error) {
      this.failures.inc();
      this.logger.error({
        msg: 'audit chain heads not written to the anchor file (serving goes on; retried at the next round)',
        error: String(error),
      });
    }
  }

  /**
   * The anchors verify holds the database to: the newest of each chain in the anchor file, or this
   * process's own where the file lacks it; and what is wrong with the file (a line that does not
   * verify, an anchor this process wrote that is gone, a file that cannot be read). No file is no
   * fault (a fresh install), unless this process wrote to it.
   */
  async forVerify(): Promise<{ anchors: Map<string, ChainAnchor>; breaks: AnchorBreak[] }> {
    const anchors = new Map<string, ChainAnchor>();
    const breaks: AnchorBreak[] = [];
    let readable = true;
    try {
      const reading = await this.file.read();
      for (const [chain, { anchor }] of reading?.latest ?? []) anchors.set(chain, anchor);
      for (const bad of reading?.bad ?? []) {
        breaks.push({
          writerId: bad.claims?.chain ?? null,
          seq: bad.claims?.seq ?? null,
          anchoredAt: null,
          line: bad.line,
          reason: `anchor line ${bad.line} does not verify (HMAC or form): the anchor file was altered, or a write was cut short`,
        });
      }
    } catch (error) {
      readable = false;
      this.logger.error({ msg: 'the audit anchor file cannot be read', error: String(error) });
      const code = (error as NodeJS.ErrnoException).code;
      breaks.push({
        writerId: null,
        seq: null,
        anchoredAt: null,
        line: null,
        reason: `the anchor file cannot be read${code ? ` (${code})` : ''}`,
      });
    }
    for (const [chain, own] of this.written) {
      const inFile = anchors.get(chain);
      if (inFile && inFile.seq >= own.seq) continue;
      anchors.set(chain, own);
      if (!readable) continue;
      breaks.push({
        writerId: chain,
        seq: own.seq,
        anchoredAt: own.at,
        line: null,
        reason: `the anchor file lacks this process's anchor of seq ${own.seq}: the file was cut, replaced or edited`,
      });
    }
    return { anchors, breaks };
  }
}
