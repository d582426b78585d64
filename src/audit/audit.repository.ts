import { randomBytes } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { AppConfig } from '../config/app-config';
import { AUDIT_ORDER_LOCK, readInInsertOrder } from '../database/insert-order';
import { orUnavailable } from '../database/storage-unavailable';
import type { AuditRow, CheckedRow } from './audit-chain';
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

  /** A PostgreSQL server (DATABASE_URL), where lanes and gateways commit side by side: see find. */
  private readonly server: boolean;

  constructor(
    private readonly dataSource: DataSource,
    config: AppConfig,
  ) {
    this.repo = dataSource.getRepository(AuditEventEntity);
    this.server = config.DATABASE_URL !== undefined;
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
    // (seq, id) > (after), written so that the (writer_id, seq) index bounds the scan; ordered by the columns, not
    // by the text they are read as. Raw rows, not entities: TypeORM's mapping of a page held the event loop longer.
    const params: unknown[] = [writerId, limit];
    let past = '';
    if (after) {
      params.push(after.seq, after.id);
      past = 'AND e.seq >= $3 AND (e.seq > $3 OR e.id > $4)';
    }
    const raw = await orUnavailable('the audit chains could not be read', () =>
      this.dataSource.query<RawChainRow[]>(
        `SELECT ${CHAIN_COLUMNS}, date_trunc('milliseconds', occurred_at) <> occurred_at AS sub_millisecond
         FROM audit_events e WHERE e.writer_id = $1 ${past} ORDER BY e.seq, e.id LIMIT $2`,
        params,
      ),
    );
    const rows = raw.map(fromRaw);
    const last = raw.at(-1);
    return { rows, last: last && { seq: last.seq, id: last.id } };
  }

  /**
   * A page of rows, newest first. On a PostgreSQL server the read holds AUDIT_ORDER_LOCK exclusively (every insert
   * holds it shared): it waits for the inserts in flight, so no row with an id below one it lists can become visible
   * after it, where the next page (`beforeId`) would never list it. Found with four lanes committing at once: one page
   * walk in 60 missed a row. The wait is bounded (lock_timeout, 2 s: then 503, as for a database away); embedded
   * PGlite runs one statement at a time, so an insert is whole before a read begins.
   */
  async find(query: AuditQuery): Promise<StoredAuditRow[]> {
    const rows = await orUnavailable('the audit events could not be read', () =>
      readInInsertOrder(this.dataSource, this.server, AUDIT_ORDER_LOCK, (manager) => this.page(manager, query)),
    );
    return rows.map(toRow);
  }

  private page(manager: EntityManager, query: AuditQuery): Promise<AuditEventEntity[]> {
    const qb = manager.getRepository(AuditEventEntity).createQueryBuilder('e');
    if (query.from) qb.andWhere('e.occurred_at >= :from', { from: query.from });
    if (query.to) qb.andWhere('e.occurred_at < :to', { to: query.to });
    if (query.actor) qb.andWhere('e.actor = :actor', { actor: query.actor });
    if (query.action) qb.andWhere('e.action = :action', { action: query.action });
    if (query.model) qb.andWhere('e.model_name = :model', { model: query.model });
    if (query.outcome) qb.andWhere('e.outcome = :outcome', { outcome: query.outcome });
    if (query.tenant) qb.andWhere('e.tenant = :tenant', { tenant: query.tenant });
    if (query.beforeId) qb.andWhere('e.id < :beforeId', { beforeId: query.beforeId });
    return qb.orderBy('e.id', 'DESC').limit(query.limit).getMany();
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
    hashVersion: e.hashVersion,
  };
}

/** A row as chainPage reads it: the bigints as text (a seq past 2^53 stays exact for the next page's key). */
interface RawChainRow {
  id: string;
  writer_id: string;
  seq: string;
  occurred_at: Date;
  actor: string | null;
  roles: string[];
  tenant: string | null;
  action: string;
  model_name: string | null;
  model_version: string | null;
  request_id: string;
  client_address: string;
  input_digest: string | null;
  output_summary: Record<string, unknown> | null;
  outcome: AuditOutcome;
  status_code: number;
  latency_ms: number;
  prev_hash: string;
  hash: string;
  hash_version: number;
  sub_millisecond: boolean;
}

const CHAIN_COLUMNS =
  'id::text AS id, writer_id, seq::text AS seq, occurred_at, actor, roles, tenant, action, model_name, model_version, ' +
  'request_id, client_address, input_digest, output_summary, outcome, status_code, latency_ms, prev_hash, hash, ' +
  'hash_version';

function fromRaw(r: RawChainRow): CheckedRow & { id: string } {
  return {
    id: r.id,
    writerId: r.writer_id,
    seq: Number(r.seq),
    occurredAt: r.occurred_at,
    actor: r.actor,
    roles: r.roles,
    tenant: r.tenant,
    action: r.action,
    modelName: r.model_name,
    modelVersion: r.model_version,
    requestId: r.request_id,
    clientAddress: r.client_address,
    inputDigest: r.input_digest,
    outputSummary: r.output_summary,
    outcome: r.outcome,
    statusCode: r.status_code,
    latencyMs: r.latency_ms,
    prevHash: r.prev_hash,
    hash: r.hash,
    hashVersion: r.hash_version,
    subMillisecond: r.sub_millisecond,
  };
}
