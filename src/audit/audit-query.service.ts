import { Injectable } from '@nestjs/common';
import type { Principal } from '../common/access';
import { AppError } from '../common/errors/app-error';
import { checkTimeRange } from '../common/iso-time';
import { isRowCursor, NOT_A_CURSOR } from '../common/storable-text';
import { AppConfig } from '../config/app-config';
import { anchorMismatch } from './audit-anchor';
import { AuditAnchors } from './audit-anchor.service';
import { checkChain, GENESIS_HASH } from './audit-chain';
import { openTenantCursor, sealTenantCursor, tenantCursorKey } from './audit-cursor';
import {
  AuditEventPageDto,
  AuditEventsQueryDto,
  AuditVerifyDto,
  ChainReportDto,
  toEventDto,
  toTenantEventDto,
} from './audit.dto';
import { AuditRepository } from './audit.repository';
import { auditSecret } from './input-digest';

const VERIFY_PAGE = 2000;

@Injectable()
export class AuditQueryService {
  private readonly cursorKey: Buffer;

  constructor(
    private readonly repository: AuditRepository,
    private readonly anchors: AuditAnchors,
    config: AppConfig,
  ) {
    this.cursorKey = tenantCursorKey(auditSecret(config));
  }

  /**
   * Newest first; a caller whose token names a tenant sees only that tenant's events, without their place in the
   * chains (which span every tenant, see verify), and pages with a sealed cursor rather than a row id.
   */
  async events(query: AuditEventsQueryDto, caller: Principal | undefined): Promise<AuditEventPageDto> {
    const limit = query.limit ?? 100;
    checkTimeRange(query.from, query.to);
    const tenant = caller?.tenant;
    const beforeId = query.cursor === undefined ? undefined : this.cursorId(query.cursor, tenant);
    const rows = await this.repository.find({
      from: query.from,
      to: query.to,
      actor: query.actor,
      action: query.action,
      model: query.model,
      outcome: query.outcome,
      tenant,
      beforeId,
      limit,
    });
    const last = rows.length === limit ? rows[rows.length - 1].id : null;
    if (tenant === undefined) return { events: rows.map(toEventDto), nextCursor: last };
    return {
      events: rows.map(toTenantEventDto),
      nextCursor: last === null ? null : sealTenantCursor(this.cursorKey, tenant, last),
    };
  }

  /** The row id a cursor stands for: the id itself without a tenant, the id sealed for this tenant with one. */
  private cursorId(cursor: string, tenant: string | undefined): string {
    if (tenant === undefined && isRowCursor(cursor)) return cursor;
    const id = tenant === undefined ? undefined : openTenantCursor(this.cursorKey, tenant, cursor);
    if (id === undefined) {
      throw new AppError('VALIDATION_FAILED', `cursor: ${NOT_A_CURSOR}`, {
        fields: [{ field: 'cursor', reason: NOT_A_CURSOR }],
      });
    }
    return id;
  }

  /**
   * Recomputes every writer's chain from its first row and names the first broken link, then holds
   * each chain to its newest anchor (written outside the database, see AuditAnchors): the anchored
   * row must still be there with the anchored hash, or the chain's newest rows were cut off or the
   * chain rewritten. The chains run across tenants (one per gateway process), so their counts and
   * ids are everyone's: a caller whose token names a tenant is refused, as it would otherwise learn
   * of other tenants' activity.
   */
  async verify(caller: Principal | undefined): Promise<AuditVerifyDto> {
    if (caller?.tenant !== undefined) {
      throw new AppError(
        'FORBIDDEN',
        'the hash chains span every tenant: verifying them needs a token that names no tenant',
      );
    }
    const { anchors, breaks: anchorBreaks } = await this.anchors.forVerify();
    const chains: ChainReportDto[] = [];
    let rowsChecked = 0;
    let anchorsChecked = 0;
    const stored = await this.repository.writers();
    // An anchored chain with no row left is walked too: every one of its rows was cut off.
    const storedIds = new Set(stored);
    const gone = [...anchors.keys()].filter((id) => !storedIds.has(id)).sort();
    for (const writerId of [...stored, ...gone]) {
      const anchor = anchors.get(writerId);
      const anchoredSeq = anchor?.seq ?? null;
      let head = { seq: 0, hash: GENESIS_HASH };
      let rows = 0;
      let hashAtAnchor: string | undefined;
      // From the chain's lowest row, whatever its seq: one below 1 (inserted by hand) breaks the chain there.
      let afterSeq: number | undefined;
      for (;;) {
        const page = await this.repository.chainPage(writerId, afterSeq, VERIFY_PAGE);
        if (page.length === 0) break;
        const result = checkChain(page, head);
        if ('broken' in result) {
          const at = page.findIndex((r) => r.id === result.broken.id);
          rowsChecked += rows + at + 1;
          chains.push({ writerId, rows: rows + at, valid: false, anchoredSeq });
          return { valid: false, rowsChecked, chains, firstBroken: result.broken, anchorsChecked, anchorBreaks };
        }
        if (anchor && hashAtAnchor === undefined) hashAtAnchor = page.find((r) => r.seq === anchor.seq)?.hash;
        head = result.head;
        afterSeq = head.seq;
        rows += page.length;
      }
      rowsChecked += rows;
      const mismatch = anchor && anchorMismatch(anchor, { head, hashAtAnchor });
      if (anchor) anchorsChecked++;
      if (anchor && mismatch) {
        anchorBreaks.push({ writerId, seq: anchor.seq, anchoredAt: anchor.at, line: null, reason: mismatch });
      }
      chains.push({ writerId, rows, valid: !mismatch, anchoredSeq });
    }
    return { valid: anchorBreaks.length === 0, rowsChecked, chains, firstBroken: null, anchorsChecked, anchorBreaks };
  }
}
