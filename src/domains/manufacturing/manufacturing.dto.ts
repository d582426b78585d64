import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsISO8601, IsObject, IsOptional, ValidateNested } from 'class-validator';

export class ReadingDto {
  /** When it was measured (ISO 8601 with an offset). */
  @IsISO8601({ strict: true })
  @ApiProperty({ example: '2026-11-23T10:00:00.000Z' })
  timestamp!: string;

  /** Values by the plant's tag names (as mapped in the asset's sensors); non-numbers are refused per reading. */
  @IsObject()
  @ApiProperty({ type: 'object', additionalProperties: { type: 'number' }, example: { torque: 42.5, speed: 1500 } })
  values!: Record<string, unknown>;
}

export class ReadingBatchDto {
  @ValidateNested({ each: true })
  @Type(() => ReadingDto)
  @ArrayMinSize(1)
  @ArrayMaxSize(10_000)
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

export class PredictionsQueryDto {
  @IsOptional()
  @IsISO8601({ strict: true })
  from?: string;

  @IsOptional()
  @IsISO8601({ strict: true })
  to?: string;
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
  predictions!: PredictionDto[];
}
