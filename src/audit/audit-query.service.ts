import { Injectable } from '@nestjs/common';
import type { Principal } from '../common/access';
import { AppError } from '../common/errors/app-error';
import { checkTimeRange } from '../common/iso-time';
import { isRowCursor, NOT_A_CURSOR } from '../common/storable-text';
import { AppConfig } from '../config/app-config';
import { AuditAnchors } from './audit-anchor.service';
import { rowHashKey } from './audit-chain';
import { openTenantCursor, sealTenantCursor, tenantCursorKey } from './audit-cursor';
import { AuditEventPageDto, AuditEventsQueryDto, AuditVerifyDto, toEventDto, toTenantEventDto } from './audit.dto';
import { AuditRepository } from './audit.repository';
import { walkChains } from './audit-verify';
import { auditSecret, retiredAuditSecrets } from './input-digest';

/** Rows per query, and the longest stretch verify hashes before it hands the event loop back (see walkChains). */
const VERIFY_WALK = { pageSize: 2000, sliceMs: 5 };

@Injectable()
export class AuditQueryService {
  /**
   * Tenant cursors are sealed and opened under the current secret's key only: one sealed before a rotation is refused
   * (400 naming `cursor`, start paging again). They live for a paging session, and opened under a retired key, a
   * leaked retired secret would go on forging them.
   */
  private readonly cursorKey: Buffer;
  /** The key keyed rows are hashed under (rowHashKey). */
  private readonly rowKey: Buffer;
  /** The row keys of the secrets rotations retired (AUDIT_HMAC_PREVIOUS_SECRETS), newest first: verify takes them too. */
  private readonly retiredRowKeys: Buffer[];
  /** The walk in progress: a verify that arrives meanwhile gets its answer rather than walking the trail again. */
  private running: Promise<AuditVerifyDto> | undefined;

  constructor(
    private readonly repository: AuditRepository,
    private readonly anchors: AuditAnchors,
    config: AppConfig,
  ) {
    const secret = auditSecret(config);
    this.cursorKey = tenantCursorKey(secret);
    this.rowKey = rowHashKey(secret);
    this.retiredRowKeys = retiredAuditSecrets(config).map(rowHashKey);
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
   * Recomputes every writer's chain from its lowest row, each chain naming its own first broken link, and holds
   * each chain to its newest anchor (written outside the database, see AuditAnchors): the anchored
   * row must still be there with the anchored hash, or the chain's newest rows were cut off or the
   * chain rewritten. The chains run across tenants (one per gateway process), so their counts and
   * ids are everyone's: a caller whose token names a tenant is refused, as it would otherwise learn
   * of other tenants' activity. So every caller allowed gets the same answer, and calls that arrive while a walk
   * runs share it (one walk, not one each: four at once multiplied the stall and the time of each).
   */
  async verify(caller: Principal | undefined): Promise<AuditVerifyDto> {
    if (caller?.tenant !== undefined) {
      // The token is what is refused, as in the guard's 403s: its field is Authorization.
      const reason = 'the hash chains span every tenant: verifying them needs a token that names no tenant';
      throw new AppError('FORBIDDEN', reason, { fields: [{ field: 'Authorization', reason }] });
    }
    this.running ??= this.walk().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async walk(): Promise<AuditVerifyDto> {
    const { anchors, breaks: anchorBreaks } = await this.anchors.forVerify();
    return walkChains(this.repository, anchors, anchorBreaks, {
      ...VERIFY_WALK,
      key: this.rowKey,
      retiredKeys: this.retiredRowKeys,
    });
  }
}
