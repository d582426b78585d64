import { randomUUID } from 'node:crypto';
import { Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { Counter } from 'prom-client';
import { filter, finalize, map, Observable, ReplaySubject, share, takeUntil, tap } from 'rxjs';
import { And, Between, DataSource, EntityManager, LessThan, MoreThan, Repository } from 'typeorm';
import { ReadinessService } from '../../../common/health/readiness.service';
import { MetricsService } from '../../../common/metrics/metrics.service';
import { storableText } from '../../../common/storable-text';
import { deleteInChunks, PURGE_CHUNK } from '../../../database/chunked-delete';
import { clientConfigOf } from '../../../database/connection-config';
import { LISTENER_DEFAULTS, Notice, notificationsOf } from '../../../database/notification-listener';
import {
  ALARMS_ORDER_LOCK,
  DEAD_LETTERS_ORDER_LOCK,
  readInInsertOrder,
  sharedLockCte,
} from '../../../database/insert-order';
import { errorCodeOf, orUnavailable } from '../../../database/storage-unavailable';
import { AppConfig } from '../../../config/app-config';
import { AlarmEntity } from './alarm.entity';
import { DeadLetterBudget, DeadLetterRow, summaryOf } from './dead-letter-budget';
import { DeadLetterEntity } from './dead-letter.entity';
import type { OpeningRow, ReadingIn } from '../asset-window.util';
import { PredictionEntity } from './prediction.entity';
import { droppedSummary, PredictionRow, PredictionWriter, RefusedPrediction } from './prediction-writer';

/** Dead letters per INSERT at most, and payload and detail characters per INSERT at most. */
const DEAD_LETTERS_PER_STATEMENT = 2000;
const DEAD_LETTER_BYTES_PER_STATEMENT = 2_000_000;

/** The PostgreSQL channel on which each alarm insert is notified, with the inserting gateway's source as payload. */
export const ALARMS_CHANNEL = 'manufacturing_alarms';

/**
 * Whether the alarm listener's notifications reach it, as /health/ready details it: `not-listening` while no alarm
 * stream is open or while its connection is down (connecting again), `checking` from its LISTEN (each, after a drop
 * too) until its probe comes back or times out.
 */
export type AlarmNotifications = 'not-listening' | 'checking' | 'delivered' | 'not-delivered';

/**
 * The alarm listener's state once it gives `notice`: `not-listening` from a drop until it listens again (before, the
 * detail kept saying `checking` or `delivered` while the connection was down and reconnecting).
 */
export function alarmNotificationsAfter(state: AlarmNotifications, notice: Notice): AlarmNotifications {
  switch (notice.kind) {
    case 'listening':
      return 'checking';
    case 'heard':
      return 'delivered';
    case 'unheard':
      return 'not-delivered';
    case 'dropped':
      return 'not-listening';
    case 'notified':
      return state;
  }
}

/** What a source may be: it is written into the statement (a UUID, made by the repository). */
const SOURCE = /^[0-9a-f-]{1,64}$/;

/**
 * The alarm and dead-letter INSERTs: on a PostgreSQL server (`locked`) each takes its table's order lock shared
 * (src/database/insert-order.ts) before any id is drawn, in the same statement (no round trip more), so that a listing
 * (alarmsOf, deadLettersSince), which takes it exclusively, never pages past a row committed after the rows it lists.
 * The alarm INSERT also notifies ALARMS_CHANNEL with `source` (the gateway's): PostgreSQL delivers it at the commit,
 * so the other gateways sharing the server read the new alarm for their streams at once (alarmsStored).
 */
export function alarmInsertSql(locked: boolean, source = '0'): string {
  if (!SOURCE.test(source)) throw new Error(`not an alarm source: ${source}`);
  return (
    (locked ? sharedLockCte(ALARMS_ORDER_LOCK, `pg_notify('${ALARMS_CHANNEL}', '${source}')`) : '') +
    'INSERT INTO manufacturing_alarms (asset_id, state, metric, value, threshold, at, site, line, model_name, ' +
    'model_version, reason) SELECT $1::varchar, $2::varchar, $3::varchar, $4::double precision, ' +
    '$5::double precision, $6::timestamptz, $7::varchar, $8::varchar, $9::varchar, $10::varchar, $11::varchar' +
    (locked ? ' FROM ordered' : '') +
    ' RETURNING id'
  );
}

/** See alarmInsertSql: one array parameter per column (unnest). */
export function deadLetterInsertSql(locked: boolean): string {
  return (
    (locked ? sharedLockCte(DEAD_LETTERS_ORDER_LOCK) : '') +
    'INSERT INTO manufacturing_dead_letters (received_at, source, channel, asset_id, reason, detail, payload) ' +
    `SELECT u.* FROM ${locked ? 'ordered, ' : ''}unnest($1::timestamptz[], $2::varchar[], $3::varchar[], ` +
    '$4::varchar[], $5::varchar[], $6::text[], $7::text[]) AS u'
  );
}

/** The one place that touches the predictions, alarms and dead-letter tables. */
@Injectable()
export class PlantRecordsRepository implements OnModuleDestroy {
  private readonly logger = new Logger('PlantRecords');
  private readonly predictions: Repository<PredictionEntity>;
  private readonly alarms: Repository<AlarmEntity>;
  private readonly deadLetters: Repository<DeadLetterEntity>;
  private readonly writer: PredictionWriter;
  private readonly deadLettered: Counter<'reason'>;
  private readonly summarised: Counter<'reason'>;
  private readonly dropped: Counter;
  private readonly budget: DeadLetterBudget;
  private summaryTimer: NodeJS.Timeout | undefined;
  private summaries: Promise<void> | undefined;
  /** A PostgreSQL server (DATABASE_URL), where gateways and concurrent writes insert side by side: see alarmsOf. */
  private readonly server: boolean;
  private readonly alarmInsert: string;
  private readonly deadLetterInsert: string;
  /** This process, as its alarm inserts name it to the listeners (ALARMS_CHANNEL): its own are not read back. */
  private readonly source = randomUUID();
  /** Ends the alarm listener at shutdown, and keeps it from opening again (see alarmsStored). */
  private readonly stopping = new ReplaySubject<void>(1);
  private readonly stored: Observable<void> | undefined;
  private notifications: AlarmNotifications = 'not-listening';
  /** Where the alarm listener connects: DATABASE_LISTEN_URL, or DATABASE_URL's pool's server when unset. */
  private readonly listenUrl: string | undefined;

  constructor(
    private readonly dataSource: DataSource,
    metrics: MetricsService,
    config: AppConfig,
    readiness: ReadinessService,
  ) {
    this.budget = new DeadLetterBudget(config.MANUFACTURING_DEAD_LETTER_LIMIT);
    this.server = config.DATABASE_URL !== undefined;
    this.listenUrl = config.DATABASE_LISTEN_URL;
    this.alarmInsert = alarmInsertSql(this.server, this.source);
    this.stored = this.server ? this.otherGatewaysAlarms() : undefined;
    // Informative, never "not ready": alarms not notified are still streamed, late (see otherGatewaysAlarms).
    if (this.server) {
      readiness.register('alarm-notifications', () => ({
        ready: true,
        detail:
          this.notifications === 'not-delivered'
            ? {
                notifications: this.notifications,
                why:
                  'a probe notified after LISTEN did not come back: a connection pooler in transaction mode? ' +
                  'DATABASE_LISTEN_URL gives the listener the server itself, or a pooler in session mode',
                instead: `the alarm streams read the stored alarms every ${LISTENER_DEFAULTS.pollMs} ms`,
              }
            : { notifications: this.notifications },
      }));
    }
    this.deadLetterInsert = deadLetterInsertSql(this.server);
    this.summarised = new Counter({
      name: 'gateway_manufacturing_dead_letters_summarised_total',
      help: 'Dead letters of refused input past MANUFACTURING_DEAD_LETTER_LIMIT a minute for their source, channel and reason: counted into one summary dead letter a minute, not kept one by one',
      labelNames: ['reason'],
      registers: [metrics.registry],
    });
    this.deadLettered = new Counter({
      name: 'gateway_manufacturing_dead_letters_total',
      help: 'Rows written to the dead-letter table, by reason: readings refused (invalid-value, late) or given up on (inference-failed, held-too-long), predictions and alarms the database refused (prediction-refused, alarm-refused), MQTT messages refused (malformed, unknown-asset, ...)',
      labelNames: ['reason'],
      registers: [metrics.registry],
    });
    this.dropped = new Counter({
      name: 'gateway_manufacturing_predictions_dropped_total',
      help: 'Predictions dropped unstored: kept for retrying while the database refused them, past the 200,000 the writer keeps (the oldest go; the log names their assets and times)',
      registers: [metrics.registry],
    });
    this.predictions = dataSource.getRepository(PredictionEntity);
    this.alarms = dataSource.getRepository(AlarmEntity);
    this.deadLetters = dataSource.getRepository(DeadLetterEntity);
    // One array parameter per column (unnest): the statement is the same whatever the group's size, and
    // building it costs nothing per row (TypeORM's multi-row INSERT builds a parameter list per value).
    this.writer = new PredictionWriter(
      async (rows) => {
        await dataSource.query(
          'INSERT INTO manufacturing_predictions (asset_id, at, model_version, value, modes, inputs, incarnation) ' +
            'SELECT a, t, v, x, m, i::real[], n FROM unnest($1::varchar[], $2::timestamptz[], $3::varchar[], ' +
            '$4::double precision[], $5::jsonb[], $6::text[], $7::uuid[]) AS u(a, t, v, x, m, i, n) ' +
            // A late row of an asset removed and made since (kept while the database was away, written after the
            // removal) is dropped: its asset is gone, and at the new asset's times it replaced the new asset's
            // predictions. A removed asset not made again still takes its late rows, beside its others.
            'WHERE NOT EXISTS (SELECT 1 FROM manufacturing_assets s WHERE s.asset_id = u.a AND s.incarnation <> u.n) ' +
            // A row kept already is replaced, for an asset removed and made again (or put as another kind whose model
            // has the same version) that sends readings at the same times: before (DO NOTHING), the new prediction
            // was counted as stored and the old asset's was kept. A reading delivered again is not predicted again,
            // and a row written again after a commit whose answer was lost is the same (no new row version then).
            // Two rows of one key in one statement (21000) are written apart by the writer's halving, the later last.
            // Another incarnation's row only by the one the assets table holds: the check above reads the table as
            // the statement began, so an asset made again, and its row stored, meanwhile would be replaced.
            'ON CONFLICT (asset_id, at, model_version) DO UPDATE ' +
            'SET value = EXCLUDED.value, modes = EXCLUDED.modes, inputs = EXCLUDED.inputs, incarnation = EXCLUDED.incarnation ' +
            'WHERE (manufacturing_predictions.value, manufacturing_predictions.modes, manufacturing_predictions.inputs, ' +
            'manufacturing_predictions.incarnation) ' +
            'IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.modes, EXCLUDED.inputs, EXCLUDED.incarnation) ' +
            'AND (manufacturing_predictions.incarnation = EXCLUDED.incarnation OR EXISTS (SELECT 1 FROM manufacturing_assets s ' +
            'WHERE s.asset_id = EXCLUDED.asset_id AND s.incarnation = EXCLUDED.incarnation))',
          [
            rows.map((r) => r.assetId),
            rows.map((r) => r.at.toISOString()),
            rows.map((r) => r.modelVersion),
            rows.map((r) => r.value),
            rows.map((r) => (r.modes === null ? null : JSON.stringify(r.modes))),
            // Each row's inputs as an array literal: unnest of a two-dimensional array would flatten it.
            rows.map((r) => (r.inputs ? `{${r.inputs.join(',')}}` : null)),
            rows.map((r) => r.incarnation),
          ],
        );
      },
      {
        onRefused: (refused) => this.deadLetterPredictions(refused),
        // Not dead letters: rows are dropped only while the database refuses their writes, and its
        // dead-letter table with them. The metric and the log are what reach the operator then.
        onDropped: (rows) => {
          this.dropped.inc(rows.length);
          this.logger.error({
            msg: 'predictions dropped: the database refused them for too long',
            ...droppedSummary(rows),
          });
        },
      },
    );
  }

  /**
   * On a PostgreSQL server, fires each time alarms may have been stored by another gateway: one of theirs notified
   * (alarmInsertSql), or the listener (re)started, when what was notified while it did not listen is lost. One
   * connection (LISTEN) per process whoever follows, held while anyone does: none while no alarm stream is open.
   * Where notifications do not reach the listener (a pooler in transaction mode: see notificationsOf), fires every
   * few seconds instead, so another gateway's alarms are still streamed, only later.
   * Undefined on embedded PGlite, which one process owns: every alarm stored is this gateway's.
   */
  alarmsStored(): Observable<void> | undefined {
    return this.stored;
  }

  private otherGatewaysAlarms(): Observable<void> {
    const config = clientConfigOf(this.dataSource.options, 'alarm-listener', this.listenUrl);
    return notificationsOf({ ...config, keepAlive: true }, ALARMS_CHANNEL, this.logger).pipe(
      takeUntil(this.stopping),
      tap((notice) => (this.notifications = alarmNotificationsAfter(this.notifications, notice))),
      finalize(() => (this.notifications = 'not-listening')),
      // Fires on `unheard` too: what may have been notified unheard is read. Not on `dropped`: the `listening` that
      // follows it fires, when what was notified meanwhile can be read.
      filter(
        (notice) =>
          notice.kind !== 'heard' &&
          notice.kind !== 'dropped' &&
          (notice.kind !== 'notified' || notice.payload !== this.source),
      ),
      map(() => undefined),
      share(),
    );
  }

  async onModuleDestroy(): Promise<void> {
    // The listener's connection would hold the process open.
    this.stopping.next();
    this.stopping.complete();
    this.writer.close();
    clearTimeout(this.summaryTimer);
    this.summaryTimer = undefined;
    await this.summaries;
    await this.writeSummaries(true);
  }

  /** Predictions of failed INSERTs not committed yet (written again until the database takes them). */
  get keptPredictions(): number {
    return this.writer.kept;
  }

  /**
   * Whether predictions of the asset's incarnation from failed INSERTs are not committed yet (see
   * PredictionWriter.keeps).
   */
  keepsPredictionsOf(assetId: string, incarnation: string): boolean {
    return this.writer.keeps(assetId, incarnation);
  }

  /** Writes the kept predictions again now (at most once a second); resolves once tried. */
  retryKeptPredictions(): Promise<void> {
    return this.writer.retryNow();
  }

  /** Resolves when the database answers. */
  async ping(): Promise<void> {
    await this.dataSource.query('SELECT 1');
  }

  /** Resolves once the rows are committed; rows written meanwhile by other callers share the INSERT. */
  addPredictions(rows: PredictionRow[]): Promise<void> {
    return this.writer.write(rows);
  }

  /**
   * Deletes predictions and dead letters from before `cutoff`, PURGE_CHUNK rows per statement with a pause
   * between statements, and returns how many of each went. Predictions go asset by asset (each asset's
   * ids found by walking the primary key, asset id first), so that every DELETE is a range of that key.
   */
  async purgeBefore(cutoff: Date): Promise<{ predictions: number; openingRows: number; deadLetters: number }> {
    const assets = await this.dataSource.query<Array<{ asset_id: string }>>(
      `WITH RECURSIVE a AS (
         (SELECT asset_id FROM manufacturing_predictions ORDER BY asset_id LIMIT 1)
         UNION ALL
         SELECT (SELECT p.asset_id FROM manufacturing_predictions p WHERE p.asset_id > a.asset_id ORDER BY p.asset_id LIMIT 1)
           FROM a WHERE a.asset_id IS NOT NULL
       ) SELECT asset_id FROM a WHERE asset_id IS NOT NULL`,
    );
    let predictions = 0;
    for (const { asset_id: assetId } of assets) {
      predictions += await deleteInChunks(
        this.dataSource,
        `DELETE FROM manufacturing_predictions WHERE (asset_id, at, model_version) IN (
           SELECT asset_id, at, model_version FROM manufacturing_predictions
            WHERE asset_id = $1 AND at < $2 ORDER BY at LIMIT ${PURGE_CHUNK})`,
        [assetId, cutoff],
      );
    }
    // A window's length per asset at most: no walk asset by asset.
    const openingRows = await deleteInChunks(
      this.dataSource,
      `DELETE FROM manufacturing_opening_rows WHERE (asset_id, at, model_version) IN (
         SELECT asset_id, at, model_version FROM manufacturing_opening_rows WHERE at < $1 LIMIT ${PURGE_CHUNK})`,
      [cutoff],
    );
    const deadLetters = await deleteInChunks(
      this.dataSource,
      `DELETE FROM manufacturing_dead_letters WHERE id IN (
         SELECT id FROM manufacturing_dead_letters WHERE received_at < $1 ORDER BY received_at LIMIT ${PURGE_CHUNK})`,
      [cutoff],
    );
    return { predictions, openingRows, deadLetters };
  }

  /** Returns the row's id. On a server, the insert holds ALARMS_ORDER_LOCK shared (alarmInsertSql). */
  async addAlarm(row: Omit<AlarmEntity, 'id'>): Promise<string> {
    const [{ id }] = await this.dataSource.query<Array<{ id: string }>>(this.alarmInsert, [
      row.assetId,
      row.state,
      row.metric,
      row.value,
      row.threshold,
      row.at.toISOString(),
      row.site,
      row.line,
      row.modelName,
      row.modelVersion,
      row.reason,
    ]);
    return String(id);
  }

  /**
   * Dead letters hold what a sender sent (a payload with a NUL byte, a field name from it): written as
   * storable text, and cut to their columns (an asset id taken from a topic may be longer than any
   * asset's), since a refused insert would leave an MQTT message unacknowledged, holding one of the
   * broker's in-flight slots and sent again, and its dead letter never written. One array parameter
   * per column (unnest), as for predictions: a request of 10,000 refused readings stays within
   * PostgreSQL's 65,535 parameters per statement, which a row of parameters each would not. Large
   * groups go in several statements, each of a bounded size, all in one transaction. Refused input past
   * its kind's budget (DeadLetterBudget) is counted for the kind's summary dead letter instead.
   */
  async addDeadLetters(rows: DeadLetterRow[]): Promise<void> {
    const { kept, summarised } = this.budget.admit(rows);
    for (const row of summarised) this.summarised.inc({ reason: row.reason });
    if (summarised.length > 0) this.scheduleSummaries();
    await this.insertDeadLetters(kept);
  }

  /**
   * Writes one summary dead letter for each kind counted past its budget (DeadLetterBudget). Should the
   * database refuse them, they are counted on and written with the next (at shutdown: logged as lost).
   */
  private async writeSummaries(closing: boolean): Promise<void> {
    if (!this.budget.pending) return;
    const taken = this.budget.take();
    try {
      await this.insertDeadLetters(taken.map((surplus) => summaryOf(surplus, this.budget.limit)));
    } catch (error) {
      const counted = taken.reduce((n, t) => n + t.count, 0);
      this.logger.warn({
        msg: closing
          ? 'dead-letter summaries not written before shutdown'
          : 'dead-letter summaries not written; kept for the next',
        counted,
        error: String(error),
      });
      if (closing) return;
      this.budget.restore(taken);
      this.scheduleSummaries();
    }
  }

  private scheduleSummaries(): void {
    this.summaryTimer ??= setTimeout(() => {
      this.summaryTimer = undefined;
      this.summaries = this.writeSummaries(false).finally(() => (this.summaries = undefined));
    }, this.budget.windowMs).unref();
  }

  private async insertDeadLetters(rows: DeadLetterRow[]): Promise<void> {
    if (rows.length === 0) return;
    const chunks: Array<typeof rows> = [];
    let chunk: typeof rows = [];
    let bytes = 0;
    for (const row of rows) {
      const size = row.payload.length + row.detail.length;
      if (
        chunk.length > 0 &&
        (chunk.length >= DEAD_LETTERS_PER_STATEMENT || bytes + size > DEAD_LETTER_BYTES_PER_STATEMENT)
      ) {
        chunks.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(row);
      bytes += size;
    }
    chunks.push(chunk);
    await this.dataSource.transaction(async (manager) => {
      for (const part of chunks) {
        // On a server, DEAD_LETTERS_ORDER_LOCK shared (deadLetterInsertSql), taken again by each part: held to the commit.
        await manager.query(this.deadLetterInsert, [
          part.map((row) => row.receivedAt.toISOString()),
          part.map((row) => row.source),
          part.map((row) => storableText(row.channel.slice(0, 512))),
          part.map((row) => (row.assetId === null ? null : storableText(row.assetId.slice(0, 128)))),
          part.map((row) => storableText(row.reason)),
          part.map((row) => storableText(row.detail)),
          part.map((row) => storableText(row.payload)),
        ]);
      }
    });
    // Counted once committed: what the table holds, not what was tried.
    const byReason = new Map<string, number>();
    for (const row of rows) byReason.set(row.reason, (byReason.get(row.reason) ?? 0) + 1);
    for (const [reason, count] of byReason) this.deadLettered.inc({ reason }, count);
  }

  /**
   * Predictions the database refuses for their own content go to the dead-letter table, so that they do
   * not hold the others, with the SQLSTATE (what the database said, which may name its tables, is logged).
   * Should the dead letters be refused too, the log is all that is left of them: it holds each one.
   */
  private async deadLetterPredictions(refused: RefusedPrediction[]): Promise<void> {
    const receivedAt = new Date();
    const logged = refused.map(({ row, error }) => ({ ...predictionOf(row), error: String(error) }));
    try {
      await this.addDeadLetters(
        refused.map(({ row, error }) => {
          const { assetId, ...prediction } = predictionOf(row);
          return {
            receivedAt,
            source: 'storage',
            channel: 'manufacturing_predictions',
            assetId,
            reason: 'prediction-refused',
            detail: `the database refused this prediction (SQLSTATE ${errorCodeOf(error) ?? 'unknown'}) while it took others`,
            payload: JSON.stringify(prediction).slice(0, 4096),
          };
        }),
      );
    } catch (error) {
      this.logger.error({
        msg: 'predictions refused by the database, and their dead letters too: lost but for this log',
        predictions: logged,
        error: String(error),
      });
      return;
    }
    this.logger.error({ msg: 'predictions refused by the database: dead-lettered', predictions: logged });
  }

  /**
   * The asset's predictions as it is now, oldest first (by time, then model version: the key's order); with `after`,
   * only the rows past that one. Only those of the incarnation the assets table holds: an asset removed and made again
   * under the same id is another machine (or the same one started over), and the removed one's rows, kept under the id
   * until the retention purge, are not its history. Read from the table, not a gateway's registry, so that every
   * gateway sharing the database lists the same rows whichever of them made the asset again.
   */
  async predictionsOf(
    assetId: string,
    from: Date,
    to: Date,
    limit: number,
    after?: { at: Date; modelVersion: string },
  ): Promise<PredictionEntity[]> {
    const query = this.predictions
      .createQueryBuilder('p')
      .where('p.assetId = :assetId AND p.at BETWEEN :from AND :to', { assetId, from, to })
      // One primary-key lookup; none (the asset removed meanwhile) lists nothing.
      .andWhere('p.incarnation = (SELECT a.incarnation FROM manufacturing_assets a WHERE a.asset_id = :assetId)');
    if (after) {
      query.andWhere('(p.at, p.modelVersion) > (:afterAt, :afterVersion)', {
        afterAt: after.at,
        afterVersion: after.modelVersion,
      });
    }
    return orUnavailable('the predictions could not be read', () =>
      query.orderBy('p.at', 'ASC').addOrderBy('p.modelVersion', 'ASC').limit(limit).getMany(),
    );
  }

  /**
   * Each asset's last `limit` stored predictions of its incarnation (those of an asset removed before it was made
   * again are not its own, whatever their timestamps), newest first, with the inputs they kept (null in rows stored
   * before they were): what a restart rebuilds the asset's window from (PlantStream). Read along the primary key,
   * asset by asset, never further back than `limit` rows (rows without inputs are not skipped in SQL, which would
   * walk an asset's whole history the first time).
   */
  async recentInputs(limit: number): Promise<Map<string, StoredInputs[]>> {
    const rows = await this.dataSource.query<
      Array<{ asset_id: string; at: Date; model_version: string; inputs: number[] | null; value: number }>
    >(
      'SELECT a.asset_id, p.at, p.model_version, p.inputs, p.value FROM manufacturing_assets a CROSS JOIN LATERAL (' +
        'SELECT at, model_version, inputs, value FROM manufacturing_predictions p ' +
        'WHERE p.asset_id = a.asset_id AND p.incarnation = a.incarnation ' +
        'ORDER BY at DESC, model_version DESC LIMIT $1) p',
      [limit],
    );
    return byAsset(rows, (r) => ({
      at: new Date(r.at).getTime(),
      modelVersion: r.model_version,
      inputs: r.inputs?.map(Number) ?? null,
      value: Number(r.value),
    }));
  }

  /**
   * Keeps an asset's opening rows (see OpeningRowEntity), oldest first, in one statement: the last one marked
   * `first` deletes the asset's rows before it, which it makes needless. One kept already takes the new values
   * (an asset removed and made again may release a reading at the same time again).
   */
  async keepOpening(
    assetId: string,
    incarnation: string,
    modelVersion: string,
    rows: readonly OpeningRow[],
  ): Promise<void> {
    if (rows.length === 0) return;
    await this.dataSource.query(
      'WITH u AS (SELECT * FROM unnest($2::timestamptz[], $3::text[], $4::boolean[]) AS u(t, i, f)), ' +
        'd AS (DELETE FROM manufacturing_opening_rows WHERE asset_id = $1 AND at < (SELECT max(t) FROM u WHERE f)) ' +
        'INSERT INTO manufacturing_opening_rows (asset_id, at, model_version, inputs, first, incarnation) ' +
        'SELECT $1, t, $5, i::real[], f, $6 FROM u ' +
        'ON CONFLICT (asset_id, at, model_version) DO UPDATE ' +
        'SET inputs = EXCLUDED.inputs, first = EXCLUDED.first, incarnation = EXCLUDED.incarnation',
      [
        assetId,
        rows.map((r) => new Date(r.timestamp).toISOString()),
        // An array literal each (NaN for an input never seen): unnest of a two-dimensional array would flatten it.
        rows.map((r) => `{${Array.from(r.row).join(',')}}`),
        rows.map((r) => r.first),
        modelVersion,
        incarnation,
      ],
    );
  }

  /**
   * Forgets a removed asset's opening rows and held readings, within `manager`'s transaction (the one that removes the
   * asset). A restart would take up none of them once the asset is made again (they are of another incarnation), but
   * a window's length of rows and the readings held are needless, and the held ones would be read at every boot.
   */
  async forgetRemoved(manager: EntityManager, assetId: string): Promise<void> {
    await manager.query('DELETE FROM manufacturing_opening_rows WHERE asset_id = $1', [assetId]);
    await manager.query('DELETE FROM manufacturing_held_readings WHERE asset_id = $1', [assetId]);
  }

  /** Each asset's last `limit` opening rows of its incarnation, newest first (as recentInputs). */
  async recentOpening(limit: number): Promise<Map<string, StoredOpening[]>> {
    const rows = await this.dataSource.query<
      Array<{ asset_id: string; at: Date; model_version: string; inputs: Array<number | string>; first: boolean }>
    >(
      'SELECT a.asset_id, o.at, o.model_version, o.inputs, o.first FROM manufacturing_assets a CROSS JOIN LATERAL (' +
        'SELECT at, model_version, inputs, first FROM manufacturing_opening_rows o ' +
        'WHERE o.asset_id = a.asset_id AND o.incarnation = a.incarnation ' +
        'ORDER BY at DESC, model_version DESC LIMIT $1) o',
      [limit],
    );
    return byAsset(rows, (r) => ({
      at: new Date(r.at).getTime(),
      modelVersion: r.model_version,
      inputs: r.inputs.map(Number),
      first: r.first,
    }));
  }

  /**
   * Keeps readings an asset holds (see HeldReadingEntity); one kept already by the same incarnation stays as it is, one
   * of another (an asset removed) is replaced.
   */
  async holdReadings(assetId: string, incarnation: string, readings: readonly ReadingIn[]): Promise<void> {
    if (readings.length === 0) return;
    await this.dataSource.query(
      'INSERT INTO manufacturing_held_readings (asset_id, at, "values", incarnation) ' +
        'SELECT $1, t, v, $4 FROM unnest($2::timestamptz[], $3::jsonb[]) AS u(t, v) ' +
        'ON CONFLICT (asset_id, at) DO UPDATE SET "values" = EXCLUDED."values", incarnation = EXCLUDED.incarnation ' +
        'WHERE manufacturing_held_readings.incarnation <> EXCLUDED.incarnation',
      [
        assetId,
        readings.map((r) => new Date(r.timestamp).toISOString()),
        readings.map((r) => JSON.stringify(r.values)),
        incarnation,
      ],
    );
  }

  /** Forgets an asset's held readings at or before `through` (ms), or all of them. */
  async releaseHeld(assetId: string, through = Infinity): Promise<void> {
    await this.dataSource.query('DELETE FROM manufacturing_held_readings WHERE asset_id = $1 AND at <= $2', [
      assetId,
      through === Infinity ? 'infinity' : new Date(through).toISOString(),
    ]);
  }

  /**
   * Every kept held reading, by asset, oldest first, but those of an incarnation no longer there (kept by an asset
   * removed, even if made again since), which are deleted.
   */
  async heldReadings(): Promise<Map<string, ReadingIn[]>> {
    await this.dataSource.query(
      'DELETE FROM manufacturing_held_readings h WHERE NOT EXISTS (SELECT 1 FROM manufacturing_assets a ' +
        'WHERE a.asset_id = h.asset_id AND a.incarnation = h.incarnation)',
    );
    const rows = await this.dataSource.query<Array<{ asset_id: string; at: Date; values: Record<string, number> }>>(
      'SELECT asset_id, at, "values" FROM manufacturing_held_readings ORDER BY asset_id, at',
    );
    return byAsset(rows, (r) => ({ timestamp: new Date(r.at).getTime(), values: r.values }));
  }

  /** Each asset's last alarm row on each metric: its alarm is still active after a restart if that row raised it. */
  async lastAlarms(): Promise<AlarmEntity[]> {
    return this.alarms
      .createQueryBuilder('a')
      .distinctOn(['a.assetId', 'a.metric'])
      .orderBy('a.assetId')
      .addOrderBy('a.metric')
      .addOrderBy('a.id', 'DESC')
      .getMany();
  }

  /**
   * Alarms with an id greater than `afterId` (and below `beforeId`), newest first, at most `limit` (the alarm stream's
   * replay, and its catch-up of other gateways' alarms below a live one's id). In insert order, as alarmsOf
   * (ALARMS_ORDER_LOCK): the stream moves the client's last event id to the newest id it sends, and a reconnect
   * resumes above it, so an alarm another gateway committed after the read, with an id drawn before the newest it
   * returned, would never be sent.
   */
  async alarmsAfter(afterId: string, limit: number, beforeId?: string): Promise<AlarmEntity[]> {
    return orUnavailable('the alarms could not be read', () =>
      readInInsertOrder(this.dataSource, this.server, ALARMS_ORDER_LOCK, (manager) =>
        manager.getRepository(AlarmEntity).find({
          where: { id: beforeId === undefined ? MoreThan(afterId) : And(MoreThan(afterId), LessThan(beforeId)) },
          order: { id: 'DESC' },
          take: limit,
        }),
      ),
    );
  }

  /**
   * The newest alarm's id, '0' where there is none: where a stream opened without Last-Event-ID starts. In insert
   * order (see alarmsAfter): every alarm with an id below it is committed, so none of them is stored after the stream
   * started and left out of it.
   */
  async newestAlarmId(): Promise<string> {
    const rows = await orUnavailable('the alarms could not be read', () =>
      readInInsertOrder(this.dataSource, this.server, ALARMS_ORDER_LOCK, (manager) =>
        manager.getRepository(AlarmEntity).find({ select: { id: true }, order: { id: 'DESC' }, take: 1 }),
      ),
    );
    return rows.length === 0 ? '0' : rows[0].id;
  }

  /**
   * Newest first; with `beforeId`, only rows older than that one (the next page). On a PostgreSQL server the read
   * holds ALARMS_ORDER_LOCK exclusively (every alarm insert holds it shared): it waits for the inserts in flight (2 s at
   * most, then 503), so that an alarm whose id was drawn before those it lists, committed after them by another
   * gateway (each stores its own one at a time), is not paged past (readInInsertOrder).
   */
  async alarmsOf(assetId: string | undefined, limit: number, beforeId?: string): Promise<AlarmEntity[]> {
    return orUnavailable('the alarms could not be read', () =>
      readInInsertOrder(this.dataSource, this.server, ALARMS_ORDER_LOCK, (manager) =>
        manager.getRepository(AlarmEntity).find({
          where: {
            ...(assetId ? { assetId } : {}),
            ...(beforeId === undefined ? {} : { id: LessThan(beforeId) }),
          },
          order: { id: 'DESC' },
          take: limit,
        }),
      ),
    );
  }

  /** Newest first; with `beforeId`, only rows older than that one (the next page). As alarmsOf, DEAD_LETTERS_ORDER_LOCK. */
  async deadLettersSince(from: Date, limit: number, beforeId?: string): Promise<DeadLetterEntity[]> {
    return orUnavailable('the dead letters could not be read', () =>
      readInInsertOrder(this.dataSource, this.server, DEAD_LETTERS_ORDER_LOCK, (manager) =>
        manager.getRepository(DeadLetterEntity).find({
          where: {
            receivedAt: Between(from, new Date(8.64e15)),
            ...(beforeId === undefined ? {} : { id: LessThan(beforeId) }),
          },
          order: { id: 'DESC' },
          take: limit,
        }),
      ),
    );
  }
}

function predictionOf(row: PredictionRow) {
  return {
    assetId: row.assetId,
    timestamp: row.at.toISOString(),
    modelVersion: row.modelVersion,
    value: row.value,
    modes: row.modes,
  };
}

/** A stored prediction as a restart reads it back (PlantRecordsRepository.recentInputs). */
export interface StoredInputs {
  /** Epoch milliseconds. */
  at: number;
  modelVersion: string;
  /** Null in rows stored before predictions kept their inputs. */
  inputs: number[] | null;
  /** The prediction (a restart takes up the streak of those past the alarm's raiseAt). */
  value: number;
}

/** An opening row as a restart reads it back (PlantRecordsRepository.recentOpening). */
export interface StoredOpening {
  /** Epoch milliseconds. */
  at: number;
  modelVersion: string;
  /** NaN for an input never seen. */
  inputs: number[];
  first: boolean;
}

/** Rows grouped by their asset, in the order read. */
function byAsset<R extends { asset_id: string }, T>(rows: readonly R[], item: (row: R) => T): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const row of rows) {
    const list = out.get(row.asset_id);
    if (list) list.push(item(row));
    else out.set(row.asset_id, [item(row)]);
  }
  return out;
}
