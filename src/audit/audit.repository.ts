import { Injectable } from '@nestjs/common';
import { DataSource, Repository } from 'typeorm';
import type { ChainedFields } from './audit-chain';
import { AuditEventEntity, AuditOutcome } from './audit-event.entity';

export type AuditRow = ChainedFields & { hash: string };
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

const INSERT_COLUMNS: Array<[string, string]> = [
  ['writer_id', 'varchar'],
  ['seq', 'bigint'],
  ['occurred_at', 'timestamptz'],
  ['actor', 'varchar'],
  ['roles', 'jsonb'],
  ['tenant', 'varchar'],
  ['action', 'varchar'],
  ['model_name', 'varchar'],
  ['model_version', 'varchar'],
  ['request_id', 'varchar'],
  ['client_address', 'varchar'],
  ['input_digest', 'char(64)'],
  ['output_summary', 'jsonb'],
  ['outcome', 'varchar'],
  ['status_code', 'smallint'],
  ['latency_ms', 'double precision'],
  ['prev_hash', 'char(64)'],
  ['hash', 'char(64)'],
];
const INSERT_SQL =
  `INSERT INTO audit_events (${INSERT_COLUMNS.map(([name]) => name).join(', ')}) ` +
  `SELECT * FROM unnest(${INSERT_COLUMNS.map(([, type], i) => `$${i + 1}::${type}[]`).join(', ')})`;

/** The only code that touches the audit_events table. Inserts only; never updates or deletes. */
@Injectable()
export class AuditRepository {
  private readonly repo: Repository<AuditEventEntity>;

  constructor(private readonly dataSource: DataSource) {
    this.repo = dataSource.getRepository(AuditEventEntity);
  }

  /**
   * One INSERT of every row, hence one transaction: all of them are committed, or none. One array
   * parameter per column (unnest), so the statement is the same whatever the batch size.
   */
  async insertAll(rows: AuditRow[]): Promise<void> {
    const column = <T>(pick: (r: AuditRow) => T): T[] => rows.map(pick);
    await this.dataSource.query(INSERT_SQL, [
      column((r) => r.writerId),
      column((r) => String(r.seq)),
      column((r) => r.occurredAt.toISOString()),
      column((r) => r.actor),
      column((r) => JSON.stringify(r.roles)),
      column((r) => r.tenant),
      column((r) => r.action),
      column((r) => r.modelName),
      column((r) => r.modelVersion),
      column((r) => r.requestId),
      column((r) => r.clientAddress),
      column((r) => r.inputDigest),
      column((r) => (r.outputSummary === null ? null : JSON.stringify(r.outputSummary))),
      column((r) => r.outcome),
      column((r) => r.statusCode),
      column((r) => r.latencyMs),
      column((r) => r.prevHash),
      column((r) => r.hash),
    ]);
  }

  async ping(): Promise<void> {
    await this.dataSource.query('SELECT 1');
  }

  /** The last committed link of a writer's chain, if it has any. */
  async headOf(writerId: string): Promise<{ seq: number; hash: string } | undefined> {
    const row = await this.repo.findOne({ where: { writerId }, order: { seq: 'DESC' } });
    return row ? { seq: Number(row.seq), hash: row.hash } : undefined;
  }

  async writers(): Promise<string[]> {
    const rows = await this.repo
      .createQueryBuilder('e')
      .select('DISTINCT e.writer_id', 'writer_id')
      .orderBy('writer_id')
      .getRawMany<{ writer_id: string }>();
    return rows.map((r) => r.writer_id);
  }

  /** A writer's rows in chain order, `limit` at a time after `afterSeq`. */
  async chainPage(writerId: string, afterSeq: number, limit: number): Promise<StoredAuditRow[]> {
    const rows = await this.repo
      .createQueryBuilder('e')
      .where('e.writer_id = :writerId AND e.seq > :afterSeq', { writerId, afterSeq })
      .orderBy('e.seq', 'ASC')
      .limit(limit)
      .getMany();
    return rows.map(toRow);
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
    const rows = await qb.orderBy('e.id', 'DESC').limit(query.limit).getMany();
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
