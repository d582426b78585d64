import { ApiParam, ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  IsDefined,
  IsIn,
  IsInt,
  IsNumber,
  IsObject,
  IsOptional,
  IsString,
  Max,
  MaxLength,
  Min,
  ValidateBy,
  ValidateNested,
  ValidationArguments,
} from 'class-validator';
import { AsSent, MatchesPattern, PLAIN_REASONS } from '../../../common/errors/validation';
import type { AssetKind } from './asset.entity';

export const ASSET_KINDS = ['machine-failure', 'turbofan-rul'] as const;
const FINITE = { allowNaN: false, allowInfinity: false };
/** An asset id, sensor name or tag: 1-128 letters, digits, dots, dashes or underscores. */
export const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The `{assetId}` path parameter, documented with the pattern every asset id the registry holds matches. */
export const ApiAssetIdParam = (): MethodDecorator =>
  ApiParam({ name: 'assetId', description: 'An asset id', schema: { type: 'string', pattern: IDENTIFIER.source } });

/**
 * A list of `min` to `max` items. ArrayMinSize and ArrayMaxSize both fail on a list that is not there, answering
 * that it holds too many and too few; this says it is required.
 */
export function ListOf(min: number, max: number): PropertyDecorator {
  const check = ValidateBy({
    name: 'listOf',
    constraints: [min, max],
    validator: {
      validate: (value: unknown) => Array.isArray(value) && value.length >= min && value.length <= max,
      defaultMessage: ({ property, value }: ValidationArguments) =>
        value === undefined
          ? `${property} is required`
          : Array.isArray(value)
            ? `${property} must hold ${min} to ${max} items, not ${value.length}`
            : `${property} ${PLAIN_REASONS.array}`,
    },
  });
  const doc = ApiProperty({ minItems: min, maxItems: max });
  return (target, property) => {
    check(target, property);
    doc(target, property);
  };
}

export class SensorMappingDto {
  /** The model input this tag feeds: its `source` in the model's manifest (e.g. `Torque [Nm]`, `s2`). */
  @IsString()
  @MaxLength(128)
  input!: string;

  /** The JSON field or Sparkplug metric name the plant sends. */
  @IsString()
  @MaxLength(256)
  tag!: string;

  /** The unit the plant sends it in (converted to the model's unit), e.g. `degC`, `K`, `rpm`, `Nm`, `psia`. */
  @IsString()
  @MaxLength(32)
  unit!: string;
}

export class AlarmThresholdsDto {
  /**
   * Failure probability at or above which (or RUL at or below which) a prediction counts towards an alarm; within
   * the values the model outputs (a probability's [0, 1], the RUL model's [0, 125] cycles).
   */
  @IsNumber(FINITE)
  raiseAt!: number;

  /** Failure probability below which (or RUL above which) a raised alarm clears (the gap is the hysteresis); within the same range. */
  @IsNumber(FINITE)
  clearAt!: number;

  /** Successive predictions past `raiseAt` needed to raise. */
  @IsInt()
  @Min(1)
  @Max(1000)
  @ApiProperty({ type: 'integer', minimum: 1, maximum: 1000 })
  consecutive!: number;
}

/** An asset and how the gateway serves it. */
export class AssetDto {
  @MatchesPattern(IDENTIFIER, { message: 'assetId must be 1-128 letters, digits, dots, dashes or underscores' })
  assetId!: string;

  /** Which model serves it: `machine-failure` per reading, `turbofan-rul` per window. */
  @IsIn(ASSET_KINDS)
  @ApiProperty({ enum: ASSET_KINDS })
  kind!: AssetKind;

  @MatchesPattern(IDENTIFIER)
  site!: string;

  @MatchesPattern(IDENTIFIER)
  area!: string;

  @MatchesPattern(IDENTIFIER)
  line!: string;

  @IsOptional()
  @MatchesPattern(IDENTIFIER)
  cell?: string;

  @ValidateNested({ each: true })
  @Type(() => SensorMappingDto)
  @ListOf(1, 64)
  sensors!: SensorMappingDto[];

  /** Model inputs set per asset rather than measured, e.g. `{ "Type": "M" }` for a milling machine's product quality. */
  @IsOptional()
  @IsObject()
  // As sent, `toString` and `constructor` among its keys: the registry refuses every key its model does not take.
  @AsSent()
  @ApiProperty({ type: 'object', additionalProperties: { oneOf: [{ type: 'string' }, { type: 'number' }] } })
  constants?: Record<string, string | number>;

  @IsDefined({ message: 'alarm is required' })
  @ValidateNested()
  @Type(() => AlarmThresholdsDto)
  alarm!: AlarmThresholdsDto;
}

export class AssetListDto {
  assets!: AssetDto[];
}
