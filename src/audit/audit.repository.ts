import { randomBytes } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, Repository } from 'typeorm';
import { orUnavailable } from '../database/storage-unavailable';
import type { AuditRow } from './audit-chain';
import type { ChainKey, ChainPage } from './audit-verify';
import { AuditEventEntity, AuditOutcome } from './audit-event.entity';

export type StoredAuditRow = AuditRow & { id: string };

export interface AuditQuery {
  from?: Date;
  to?: Date;
  actor?: string;
  action?: string;
  model?: string;
  outcome?: AuditOutcome;
  tenant?: string;
  /** Rows with an id below this one (newest first). */
  beforeId?: string;
  limit: number;
}

/**
 * Reads of the audit_events table; its rows are written by the audit commit thread
 * (audit-writer.worker.ts) only, and never updated or deleted.
 */
@Injectable()
export class AuditRepository {
  private readonly repo: Repository<AuditEventEntity>;

  constructor(private readonly dataSource: DataSource) {
    this.repo = dataSource.getRepository(AuditEventEntity);
  }

  async ping(): Promise<void> {
    await this.dataSource.query('SELECT 1');
  }

  /**
   * Whether the database can give audit rows a new page: in one transaction, rolled back, a table made in
   * audit_events' tablespace gets one row, which needs a first page of its own. A full disk answers SELECT 1
   * (and takes rows into pages that still have room) but fails this with 53100. Nothing stays: no catalog
   * entry, no file, no row, and audit_events is not touched (its chains and ids go on as they were).
   */
  async probeWrite(): Promise<void> {
    const runner = this.dataSource.createQueryRunner();
    try {
      await runner.connect();
      await runner.startTransaction();
      try {
        const [found] = (await runner.query(
          `SELECT tablespace FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'audit_events'`,
        )) as Array<{ tablespace: string | null }>;
        const tablespace = found?.tablespace ? ` TABLESPACE "${found.tablespace.replaceAll('"', '""')}"` : '';
        // Named once per probe: gateways sharing a server do not wait on each other's.
        const table = `gateway_space_probe_${randomBytes(6).toString('hex')}`;
        await runner.query(`CREATE TABLE ${table} (pad text)${tablespace}`);
        await runner.query(`INSERT INTO ${table} VALUES ('probe')`);
      } finally {
        // A connection the database dropped has nothing to roll back: the probe's own error is the one told.
        await runner.rollbackTransaction().catch(() => undefined);
      }
    } finally {
      await runner.release();
    }
  }

  async writers(): Promise<string[]> {
    const rows = await orUnavailable('the audit chains could not be read', () =>
      this.repo
        .createQueryBuilder('e')
        .select('DISTINCT e.writer_id', 'writer_id')
        .orderBy('writer_id')
        .getRawMany<{ writer_id: string }>(),
    );
    return rows.map((r) => r.writer_id);
  }

  /**
   * A writer's rows in chain order, by (seq, id), `limit` at a time after the key `after` (from its lowest row,
   * whatever its seq, when undefined: a row below 1 is one verify must see). By (seq, id), not seq alone: a second row
   * with the seq of a page's last one (the unique index dropped) is read too, and verify names it. Each row says
   * whether its occurred_at holds a fraction of a millisecond (a Date, and so the hash, keeps milliseconds; the column
   * keeps microseconds). The key is read as text: a seq past 2^53 that a number would round must not repeat a page.
   */
  async chainPage(writerId: string, after: ChainKey | undefined, limit: number): Promise<ChainPage> {
    const { entities, raw } = await orUnavailable('the audit chains could not be read', () => {
      const qb = this.repo
        .createQueryBuilder('e')
        .addSelect(`date_trunc('milliseconds', e.occurred_at) <> e.occurred_at`, 'sub_millisecond')
        .where('e.writer_id = :writerId', { writerId });
      // (seq, id) > (:seq, :id), written so that the (writer_id, seq) index bounds the scan.
      if (after) {
        qb.andWhere('e.seq >= :afterSeq AND (e.seq > :afterSeq OR e.id > :afterId)', {
          afterSeq: after.seq,
          afterId: after.id,
        });
      }
      return qb
        .orderBy('e.seq', 'ASC')
        .addOrderBy('e.id', 'ASC')
        .limit(limit)
        .getRawAndEntities<{ e_id: string | number; sub_millisecond: boolean }>();
    });
    const subMillisecond = new Set(raw.filter((r) => r.sub_millisecond).map((r) => String(r.e_id)));
    const rows = entities.map((e) => ({ ...toRow(e), subMillisecond: subMillisecond.has(String(e.id)) }));
    const last = entities.at(-1);
    return { rows, last: last && { seq: String(last.seq), id: String(last.id) } };
  }

  async find(query: AuditQuery): Promise<StoredAuditRow[]> {
    const qb = this.repo.createQueryBuilder('e');
    if (query.from) qb.andWhere('e.occurred_at >= :from', { from: query.from });
    if (query.to) qb.andWhere('e.occurred_at < :to', { to: query.to });
    if (query.actor) qb.andWhere('e.actor = :actor', { actor: query.actor });
    if (query.action) qb.andWhere('e.action = :action', { action: query.action });
    if (query.model) qb.andWhere('e.model_name = :model', { model: query.model });
    if (query.outcome) qb.andWhere('e.outcome = :outcome', { outcome: query.outcome });
    if (query.tenant) qb.andWhere('e.tenant = :tenant', { tenant: query.tenant });
    if (query.beforeId) qb.andWhere('e.id < :beforeId', { beforeId: query.beforeId });
    const rows = await orUnavailable('the audit events could not be read', () =>
      qb.orderBy('e.id', 'DESC').limit(query.limit).getMany(),
    );
    return rows.map(toRow);
  }
}

function toRow(e: AuditEventEntity): StoredAuditRow {
  return {
    id: String(e.id),
    writerId: e.writerId,
    seq: Number(e.seq),
    occurredAt: e.occurredAt,
    actor: e.actor,
    roles: e.roles,
    tenant: e.tenant,
    action: e.action,
    modelName: e.modelName,
    modelVersion: e.modelVersion,
    requestId: e.requestId,
    clientAddress: e.clientAddress,
    inputDigest: e.inputDigest,
    outputSummary: e.outputSummary,
    outcome: e.outcome,
    statusCode: e.statusCode,
    latencyMs: e.latencyMs,
    prevHash: e.prevHash,
    hash: e.hash,
  };
}
