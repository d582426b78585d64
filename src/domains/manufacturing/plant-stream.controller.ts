import { Body, Controller, Get, HttpCode, MessageEvent, Param, Post, Query, Req, Res, Sse } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { map, Observable } from 'rxjs';
import { recordAuditBeforeStreaming } from '../../audit/audit.hook';
import { AuditWriter } from '../../audit/audit-writer.service';
import { AuditInputDigester, endAtTokenExpiry, noteAudit, principalOf, RequirePermission } from '../../common/access';
import {
  ApiProblems,
  ApiRetriableProblems,
  JSON_BODY_ERRORS,
  PROTECTED_ROUTE_ERRORS,
} from '../../common/errors/api-error-responses';
import { AppError } from '../../common/errors/app-error';
import { NoQueryDto } from '../../common/http/no-query';
import { checkTimeRange, ISO_INSTANT, isoTimeMs } from '../../common/iso-time';
import { AssetRegistry } from './assets/asset-registry.service';
import { lastEventIdOf, REPLAY_LIMIT } from './alarm-resume.util';
import {
  alarmMessageOf,
  AlarmListDto,
  ALARMS_MISSED_EVENT,
  ALARMS_UNREADABLE_COMMENT,
  AlarmsQueryDto,
  AssetStatusDto,
  DeadLetterListDto,
  DeadLettersQueryDto,
  IngestResultDto,
  PREDICTION_CURSOR,
  PredictionListDto,
  PREDICTIONS_PAGE,
  PredictionsQueryDto,
  ReadingBatchDto,
} from './manufacturing.dto';
import { ApiAssetIdParam } from './assets/asset.dto';
import { PlantStream, streamedAlarmOf } from './plant-stream.service';
import { PlantRecordsRepository } from './records/plant-records.repository';

/** Readings in over HTTP; status, predictions, alarms and dead letters out. */
@ApiTags('manufacturing')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS)
@Controller('manufacturing')
export class PlantStreamController {
  constructor(
    private readonly stream: PlantStream,
    private readonly registry: AssetRegistry,
    private readonly records: PlantRecordsRepository,
    private readonly digester: AuditInputDigester,
    private readonly audit: AuditWriter,
  ) {}

  /** A batch of timestamped readings for one asset (a SCADA historian's push, a gateway's backlog). */
  @Post('assets/:assetId/readings')
  @HttpCode(200)
  @RequirePermission('manufacturing:ingest', 'manufacturing.ingest')
  @ApiAssetIdParam()
  @ApiOkResponse({ type: IngestResultDto })
  @ApiProblems(...JSON_BODY_ERRORS, 404)
  // The runtime past its deadline (504) or failing (500) after the readings were taken in: they are kept.
  @ApiRetriableProblems(
    [500, 504],
    'With Retry-After: the readings were accepted and are kept, and are predicted when the runtime recovers ' +
      "(before the asset's next readings); sent again, they count as duplicates",
  )
  async ingest(
    @Param('assetId') assetId: string,
    @Body() body: ReadingBatchDto,
    @Req() request: FastifyRequest,
  ): Promise<IngestResultDto> {
    const asset = this.registry.get(assetId);
    const model = this.registry.model(asset.kind);
    noteAudit(request, {
      model: { name: model.name, version: model.version },
      inputDigest: this.digester.digest([Buffer.from(JSON.stringify(body.readings))]),
    });
    const summary = await this.stream.ingest(
      assetId,
      body.readings.map((r) => ({ timestamp: isoTimeMs(r.timestamp, ISO_INSTANT), values: r.values })),
      { source: 'http', name: `POST /v1/manufacturing/assets/${assetId}/readings` },
    );
    noteAudit(request, {
      output: {
        assetId,
        received: summary.received,
        accepted: summary.accepted,
        duplicates: summary.duplicates,
        late: summary.late,
        invalid: summary.invalid.length,
        predictions: summary.predictions,
      },
    });
    return summary;
  }

  /** Latest failure and mode probabilities or RUL, alarm state and reading counts. */
  @Get('assets/:assetId/status')
  @RequirePermission('manufacturing:read', 'manufacturing.status')
  @ApiAssetIdParam()
  @ApiOkResponse({ type: AssetStatusDto })
  @ApiProblems(400, 404)
  status(@Param('assetId') assetId: string, @Query() _query: NoQueryDto): AssetStatusDto {
    return this.stream.status(assetId);
  }

  /**
   * Predictions over a time range (default: the last hour), oldest first, in pages of at most 10,000 (`cursor`): the
   * asset's as it is now (an asset removed and made again lists its own, not the removed asset's).
   */
  @Get('assets/:assetId/predictions')
  @RequirePermission('manufacturing:read', 'manufacturing.predictions')
  @ApiAssetIdParam()
  @ApiOkResponse({ type: PredictionListDto })
  @ApiProblems(400, 404)
  async predictions(
    @Param('assetId') assetId: string,
    @Query() query: PredictionsQueryDto,
  ): Promise<PredictionListDto> {
    this.registry.get(assetId);
    const to = query.to ? new Date(isoTimeMs(query.to)) : new Date();
    const from = query.from ? new Date(isoTimeMs(query.from)) : new Date(to.getTime() - 3_600_000);
    checkTimeRange(from, to);
    const after = query.cursor ? PREDICTION_CURSOR.exec(query.cursor) : null;
    const limit = query.limit ?? PREDICTIONS_PAGE;
    // One row past the page says whether there is another.
    const rows = await this.records.predictionsOf(
      assetId,
      from,
      to,
      limit + 1,
      after ? { at: new Date(Number(after[1])), modelVersion: after[2] } : undefined,
    );
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      assetId,
      predictions: page.map((r) => ({
        at: r.at.toISOString(),
        modelVersion: r.modelVersion,
        value: r.value,
        ...(r.modes ? { modes: r.modes } : {}),
      })),
      nextCursor: rows.length > limit ? `${last.at.getTime()}.${last.modelVersion}` : null,
    };
  }

  /** Alarms raised and cleared (of one asset with `assetId`), newest first, 1,000 a page, paged by `cursor`. */
  @Get('alarms')
  @RequirePermission('manufacturing:read', 'manufacturing.alarms')
  @ApiOkResponse({ type: AlarmListDto })
  @ApiProblems(400)
  async alarms(@Query() query: AlarmsQueryDto): Promise<AlarmListDto> {
    const rows = await this.records.alarmsOf(query.assetId, ALARMS_PAGE, query.cursor);
    return {
      // As the stream sends them: a dashboard that pages the alarms a resume could not replay gets the same JSON.
      alarms: rows.map(streamedAlarmOf),
      nextCursor: rows.length === ALARMS_PAGE ? rows[rows.length - 1].id : null,
    };
  }

  /**
   * Alarms as they happen, for dashboards: Server-Sent Events, one `alarm` event each, until the token expires; with
   * `Last-Event-ID`, those missed since first.
   */
  @Sse('alarms/stream')
  @RequirePermission('manufacturing:read', 'manufacturing.alarms-stream')
  @ApiHeader({
    name: 'Last-Event-ID',
    required: false,
    description:
      'The id of the last event received (an EventSource sends it when it reconnects): the alarms stored since ' +
      `are sent first, in order (at most the newest ${REPLAY_LIMIT}), then the live ones. A whole number from 0 ` +
      '(every stored alarm) to 9223372036854775807; anything else is refused with 400',
  })
  @ApiOkResponse({
    description:
      'Server-Sent Events: one `alarm` event per alarm raised or cleared, its `data` the alarm as JSON ' +
      '(assetId, site, line, state, metric, value, threshold, at, model {name, version}; on a raised alarm the ' +
      'gateway cleared itself, its asset put as another kind or removed, `reason`: asset-kind-changed | ' +
      'asset-removed, with value and threshold null) and its `id` the ' +
      "alarm's row id (GET /v1/manufacturing/alarms). A stream opened without Last-Event-ID starts with an id " +
      "alone (no event): the newest stored alarm's, so that a reconnect resumes from there. With Last-Event-ID, " +
      `the alarms stored after it come first, oldest first, at most the newest ${REPLAY_LIMIT}: past that, or ` +
      'when Last-Event-ID is past the newest stored alarm (a database reset), an `' +
      ALARMS_MISSED_EVENT +
      '` event comes first, its `data` {reason: too-many | unknown-id, after, through, cursor}: the alarms with ' +
      'an id above `after` up to `through` are not sent, and GET /v1/manufacturing/alarms?cursor=<cursor> pages ' +
      'them. An alarm sent on this connection is never sent twice, nor does its id go below one sent before: ' +
      'one stored after a newer one was sent (by another gateway: a gateway sends its own in id order), or one ' +
      'the database refused (kept in the dead letters, never replayed), carries the id sent before it. When the ' +
      'token expires the ' +
      'stream ends with the comment `: token expired; reconnect with a fresh token`; when the stored alarms ' +
      `cannot be read, with \`: ${ALARMS_UNREADABLE_COMMENT}\`. Live alarms are every gateway's that shares the ` +
      "database: on a PostgreSQL server another gateway's are sent as it notifies them (a read of the stored " +
      "alarms after the last event id sent), or, should no notification come, before this gateway's next alarm " +
      "or by the replay of the next reconnect (late, never skipped); a replay holds every gateway's. Every alarm " +
      'stored with an id at or below the last event id sent has been sent, once, but those an alarms-missed event ' +
      'names and those the database refused',
    content: { 'text/event-stream': { schema: { type: 'string' } } },
  })
  @ApiProblems(400)
  async alarmStream(
    @Query() _query: NoQueryDto,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<Observable<MessageEvent>> {
    const caller = principalOf(request);
    if (!caller) throw new Error('the alarm stream was reached without a verified caller');
    const resume = lastEventIdOf(request.headers['last-event-id']);
    if ('reason' in resume) {
      throw new AppError('VALIDATION_FAILED', `Last-Event-ID ${resume.reason}`, {
        fields: [{ field: 'Last-Event-ID', reason: resume.reason }],
      });
    }
    if (resume.after !== undefined) noteAudit(request, { output: { lastEventId: String(resume.after) } });
    // The stream is written to the raw response, past the audit hook: its row is committed first.
    await recordAuditBeforeStreaming(this.audit, request, reply);
    return this.stream.alarmsAfter(resume.after).pipe(map(alarmMessageOf), endAtTokenExpiry(caller));
  }

  /** Refused readings and messages with their reasons, newest first (since `from`, default 24 h ago), paged by `cursor`. */
  @Get('dead-letters')
  @RequirePermission('manufacturing:read', 'manufacturing.dead-letters')
  @ApiOkResponse({ type: DeadLetterListDto })
  @ApiProblems(400)
  async deadLetters(@Query() query: DeadLettersQueryDto): Promise<DeadLetterListDto> {
    const since = query.from === undefined ? new Date(Date.now() - 86_400_000) : new Date(isoTimeMs(query.from));
    const rows = await this.records.deadLettersSince(since, DEAD_LETTERS_PAGE, query.cursor);
    return {
      deadLetters: rows.map((r) => ({ ...r, receivedAt: r.receivedAt.toISOString() })),
      nextCursor: rows.length === DEAD_LETTERS_PAGE ? rows[rows.length - 1].id : null,
    };
  }
}

const DEAD_LETTERS_PAGE = 1000;
const ALARMS_PAGE = 1000;
