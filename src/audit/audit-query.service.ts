import { Injectable } from '@nestjs/common';
import type { Principal } from '../common/access';
import { AppError } from '../common/errors/app-error';
import { checkChain, GENESIS_HASH } from './audit-chain';
import { AuditEventPageDto, AuditEventsQueryDto, AuditVerifyDto, ChainReportDto, toEventDto } from './audit.dto';
import { AuditRepository } from './audit.repository';

const VERIFY_PAGE = 2000;

@Injectable()
export class AuditQueryService {
  constructor(private readonly repository: AuditRepository) {}

  /** Newest first; a caller whose token names a tenant sees only that tenant's events. */
  async events(query: AuditEventsQueryDto, caller: Principal | undefined): Promise<AuditEventPageDto> {
    const limit = query.limit ?? 100;
    if (query.from && query.to && query.from > query.to) {
      throw new AppError('VALIDATION_FAILED', 'from must not be after to', {
        fields: [{ field: 'from', reason: 'after to' }],
      });
    }
    const rows = await this.repository.find({
      from: query.from,
      to: query.to,
      actor: query.actor,
      action: query.action,
      model: query.model,
      outcome: query.outcome,
      tenant: caller?.tenant,
      beforeId: query.cursor,
      limit,
    });
    return { events: rows.map(toEventDto), nextCursor: rows.length === limit ? rows[rows.length - 1].id : null };
  }

  /**
   * Recomputes every writer's chain from its first row and names the first broken link. The chains
   * run across tenants (one per gateway process), so their counts and ids are everyone's: a caller
   * whose token names a tenant is refused, as it would otherwise learn of other tenants' activity.
   */
  async verify(caller: Principal | undefined): Promise<AuditVerifyDto> {
    if (caller?.tenant !== undefined) {
      throw new AppError(
        'FORBIDDEN',
        'the hash chains span every tenant: verifying them needs a token that names no tenant',
      );
    }
    const chains: ChainReportDto[] = [];
    let rowsChecked = 0;
    for (const writerId of await this.repository.writers()) {
      let head = { seq: 0, hash: GENESIS_HASH };
      let rows = 0;
      for (;;) {
        const page = await this.repository.chainPage(writerId, head.seq, VERIFY_PAGE);
        if (page.length === 0) break;
        const result = checkChain(page, head);
        if ('broken' in result) {
          const at = page.findIndex((r) => r.id === result.broken.id);
          rowsChecked += rows + at + 1;
          chains.push({ writerId, rows: rows + at, valid: false });
          return { valid: false, rowsChecked, chains, firstBroken: result.broken };
        }
        head = result.head;
        rows += page.length;
      }
      rowsChecked += rows;
      chains.push({ writerId, rows, valid: true });
    }
    return { valid: true, rowsChecked, chains, firstBroken: null };
  }
}
