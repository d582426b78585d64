import type { MessageEvent } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import { IsInt, IsObject, IsOptional, Max, Min, ValidateNested } from 'class-validator';
import { DecimalInteger, MatchesPattern } from '../../common/errors/validation';
import { ISO_INSTANT, IsIsoTime } from '../../common/iso-time';
import { IsRowCursor } from '../../common/storable-text';
import type { AlarmStreamItem } from './alarm-resume.util';
import { IDENTIFIER, ListOf } from './assets/asset.dto';
import { ALARM_CLOSE_REASONS, type AlarmCloseReason } from './records/alarm.entity';

export class ReadingDto {
  /** When it was measured (ISO 8601 with Z or an offset; one without would be read in the server's time zone). */
  @IsIsoTime(ISO_INSTANT)
  @ApiProperty({ example: '2026-11-23T10:00:00.000Z' })
  timestamp!: string;

  /**
   * Values by the plant's tag names (as mapped in the asset's sensors). A null is no value for its tag (a sensor
   * offline): the tag keeps its last value; a reading with no value for any of the asset's tags, and one with a value
   * that is not a number, are refused per reading.
   */
  @IsObject()
  @ApiProperty({
    type: 'object',
    additionalProperties: { type: 'number', nullable: true },
    example: { torque: 42.5, speed: 1500, air_temp: null },
  })
  values!: Record<string, unknown>;
}

/** An array in the list stands as null: ValidateNested looks into an inner array rather than refusing it. */
const innerArrayAsNull = ({ value }: { value: unknown }) =>
  Array.isArray(value) ? value.map((item: unknown) => (Array.isArray(item) ? null : item)) : value;

export class ReadingBatchDto {
  @Transform(innerArrayAsNull)
  @ValidateNested({ each: true, message: 'must be an object' })
  @Type(() => ReadingDto)
  @ListOf(1, 10_000)
  readings!: ReadingDto[];
}

export class InvalidReadingDto {
  /** Position of the reading in the request. */
  index!: number;
  reason!: string;
}

export class IngestResultDto {
  received!: number;
  accepted!: number;
  /** Readings with a timestamp already seen for this asset: dropped. */
  duplicates!: number;
  /** Readings older than the tolerance allows: refused, and kept in the dead-letter table. */
  late!: number;
  /** Readings refused for a bad value, with the reason (also in the dead-letter table). */
  invalid!: InvalidReadingDto[];
  /** Predictions made from the readings released by this batch. */
  predictions!: number;
}

/** The most predictions one page holds. */
export const PREDICTIONS_PAGE = 10_000;

/** A page's last prediction, as `<epoch ms>.<model version>`. */
export const PREDICTION_CURSOR = /^(\d{1,15})\.([A-Za-z0-9._-]{1,64})$/;

export class PredictionsQueryDto {
  /** Predictions at or after this time (ISO 8601 with Z or an offset, or a date alone: midnight UTC); default an hour before `to`. */
  @IsOptional()
  @IsIsoTime()
  from?: string;

  /** Predictions at or before this time (as `from`); default now. */
  @IsOptional()
  @IsIsoTime()
  to?: string;

  /** The `nextCursor` of the page before: the predictions after it. */
  @IsOptional()
  @MatchesPattern(PREDICTION_CURSOR, { message: 'cursor must be a nextCursor returned by this endpoint' })
  cursor?: string;

  /** Predictions per page, at most 10,000 (the default). */
  @IsOptional()
  @DecimalInteger()
  @IsInt()
  @Min(1)
  @Max(PREDICTIONS_PAGE)
  @ApiProperty({ type: 'integer', required: false })
  limit?: number;
}

export class AlarmsQueryDto {
  /** Only this asset's alarms. */
  @IsOptional()
  @MatchesPattern(IDENTIFIER, {
    message: 'assetId must be one asset id: 1-128 letters, digits, dots, dashes or underscores',
  })
  assetId?: string;

  /** The `nextCursor` of the page before: the older alarms. */
  @IsOptional()
  @IsRowCursor()
  cursor?: string;
}

export class DeadLettersQueryDto {
  /** Dead letters received at or after this time (ISO 8601 with Z or an offset, or a date alone: midnight UTC); default 24 hours ago. */
  @IsOptional()
  @IsIsoTime()
  from?: string;

  /** The `nextCursor` of the page before: the older dead letters. */
  @IsOptional()
  @IsRowCursor()
  cursor?: string;
}

export class PredictionDto {
  at!: string;
  modelVersion!: string;
  /** Failure probability (machine-failure) or remaining useful life in cycles (turbofan-rul). */
  value!: number;
  modes?: Record<string, number>;
}

export class PredictionListDto {
  assetId!: string;
  /** Oldest first. */
  predictions!: PredictionDto[];
  /** Pass as `cursor` (with the same from and to) for the predictions after these; null on the last page. */
  nextCursor!: string | null;
}

export class AlarmDto {
  /** Row id, the order alarms happened in. */
  id!: string;
  assetId!: string;
  /** The asset's site and line when the alarm was raised; absent for an alarm stored before they were kept. */
  site?: string;
  line?: string;
  state!: 'raised' | 'cleared';
  /** `failure` (probability) or `rul` (cycles). */
  metric!: 'failure' | 'rul';
  /** The prediction that moved the alarm; null on one the gateway closed itself (`reason`). */
  @ApiProperty({ type: 'number', nullable: true })
  value!: number | null;
  /** The asset's threshold it crossed (raiseAt or clearAt); null on one the gateway closed itself (`reason`). */
  @ApiProperty({ type: 'number', nullable: true })
  threshold!: number | null;
  at!: string;
  /**
   * The model (name, version) whose prediction moved it (on one the gateway closed, the one that raised it); absent
   * for an alarm stored before it was kept.
   */
  model?: AssetStatusModelDto;
  /**
   * Only on a raised alarm the gateway cleared itself, since no prediction of its model will: its asset was put as
   * another kind (`asset-kind-changed`) or removed (`asset-removed`). Absent on an alarm a prediction moved.
   */
  @ApiProperty({ enum: ALARM_CLOSE_REASONS, required: false })
  reason?: AlarmCloseReason;
}

export class AlarmListDto {
  /** Newest first. */
  alarms!: AlarmDto[];
  /** Pass as `cursor` for the older alarms; null on the last page. */
  nextCursor!: string | null;
}

export class DeadLetterDto {
  id!: string;
  receivedAt!: string;
  /**
   * `http`, `mqtt` or `sparkplug`; `inference` for an accepted reading its model kept failing on, or that
   * waited too long to be predicted; `storage` for a prediction or an alarm the database refused.
   */
  source!: string;
  /**
   * The MQTT topic or HTTP route it came by; for `inference`, the model and version (`name@version`); for
   * `storage`, the table that refused it.
   */
  channel!: string;
  assetId!: string | null;
  reason!: string;
  detail!: string;
  /** The refused payload, cut to 4 KiB. */
  payload!: string;
}

export class DeadLetterListDto {
  /** Newest first. */
  deadLetters!: DeadLetterDto[];
  /** Pass as `cursor` (with the same from) for the older ones; null on the last page. */
  nextCursor!: string | null;
}

export class AssetLatestDto {
  /** The reading (or window) time of the latest prediction. */
  at!: string;
  failureProbability?: number;
  modes?: Record<string, number>;
  /** Remaining useful life in cycles. */
  rul?: number;
}

export class AssetAlarmStateDto {
  active!: boolean;
  /** When the active alarm was raised. */
  since?: string;
}

export class AssetCountsDto {
  received!: number;
  accepted!: number;
  duplicates!: number;
  late!: number;
  invalid!: number;
  predictions!: number;
}

export class AssetStatusModelDto {
  name!: string;
  version!: string;
}

export class AssetStatusDto {
  assetId!: string;
  kind!: string;
  model!: AssetStatusModelDto;
  /** Absent until the asset's first prediction since the gateway started. */
  latest?: AssetLatestDto;
  alarm!: AssetAlarmStateDto;
  /** Since the gateway started. */
  counts!: AssetCountsDto;
}

/** The event a gap in a resumed alarm stream is sent as. */
export const ALARMS_MISSED_EVENT = 'alarms-missed';

/** The comment the alarm stream ends with when the stored alarms cannot be read (the client reconnects). */
export const ALARMS_UNREADABLE_COMMENT = 'the stored alarms could not be read; reconnect';

/** An item of the alarm stream as a Server-Sent Event. */
export function alarmMessageOf(item: AlarmStreamItem): MessageEvent {
  switch (item.kind) {
    case 'alarm':
      return { type: 'alarm', id: item.id, data: item.alarm };
    case 'position':
      return { id: item.id };
    case 'gap':
      return {
        type: ALARMS_MISSED_EVENT,
        id: item.id,
        data: { reason: item.reason, after: item.after, through: item.id, cursor: item.cursor },
      };
    case 'unreadable':
      return { comment: ALARMS_UNREADABLE_COMMENT };
  }
}
