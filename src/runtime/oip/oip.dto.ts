import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsIn,
  IsInt,
  IsNotEmpty,
  IsObject,
  IsOptional,
  IsString,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { OIP_DATATYPES } from './oip-codec';

export class OipInputTensorDto {
  /** Name of the model input. */
  @IsString()
  @IsNotEmpty()
  name!: string;

  /** Dimensions of the tensor; the first is the batch size for batched models. */
  @ApiProperty({ type: [Number], example: [1, 4] })
  @IsArray()
  @ArrayMinSize(0)
  @ArrayMaxSize(8)
  @IsInt({ each: true })
  @Min(0, { each: true })
  shape!: number[];

  @ApiProperty({ enum: OIP_DATATYPES, example: 'FP32' })
  @IsString()
  @IsIn(OIP_DATATYPES)
  datatype!: string;

  /** Optional per-tensor parameters (ignored). */
  @IsOptional()
  @IsObject()
  parameters?: Record<string, unknown>;

  /** Row-major values, flat or nested to the tensor's shape. */
  @ApiProperty({ type: 'array', items: {}, example: [1, 2, 3, 4] })
  @IsArray()
  data!: unknown[];
}

export class OipRequestedOutputDto {
  /** Name of an output to return; without `outputs`, all are returned. */
  @IsString()
  @IsNotEmpty()
  name!: string;

  @IsOptional()
  @IsObject()
  parameters?: Record<string, unknown>;
}

export class OipInferRequestDto {
  /** Echoed in the response. */
  @IsOptional()
  @IsString()
  @MaxLength(256)
  id?: string;

  /** Request parameters; `timeout_ms` bounds how long the request may wait before it is dropped (504). */
  @IsOptional()
  @IsObject()
  parameters?: Record<string, unknown>;

  @ApiProperty({ type: [OipInputTensorDto] })
  @IsArray()
  @ArrayMinSize(1)
  @ValidateNested({ each: true })
  @Type(() => OipInputTensorDto)
  inputs!: OipInputTensorDto[];

  @ApiProperty({ type: [OipRequestedOutputDto], required: false })
  @IsOptional()
  @IsArray()
  @ValidateNested({ each: true })
  @Type(() => OipRequestedOutputDto)
  outputs?: OipRequestedOutputDto[];
}

export class OipOutputTensorDto {
  name!: string;
  @ApiProperty({ type: [Number] })
  shape!: number[];
  @ApiProperty({ enum: OIP_DATATYPES })
  datatype!: string;
  @ApiProperty({ type: 'array', items: {} })
  data!: unknown[];
}

export class OipInferResponseDto {
  model_name!: string;
  model_version!: string;
  id?: string;
  /** Gateway extension: the execution provider and timings of this request. */
  parameters?: Record<string, unknown>;
  @ApiProperty({ type: [OipOutputTensorDto] })
  outputs!: OipOutputTensorDto[];
}

export class OipTensorMetadataDto {
  name!: string;
  @ApiProperty({ enum: OIP_DATATYPES })
  datatype!: string;
  @ApiProperty({ type: [Number], description: '-1 marks a dynamic dimension' })
  shape!: number[];
}

export class OipModelMetadataDto {
  name!: string;
  /** Every live version of the model. */
  versions!: string[];
  platform!: string;
  @ApiProperty({ type: [OipTensorMetadataDto] })
  inputs!: OipTensorMetadataDto[];
  @ApiProperty({ type: [OipTensorMetadataDto] })
  outputs!: OipTensorMetadataDto[];
  /** Gateway extensions: which version this metadata describes, and where it runs. */
  parameters!: Record<string, unknown>;
}

export class OipModelSummaryDto {
  name!: string;
  versions!: string[];
  default_version!: string;
  domain!: string;
  platform!: string;
}

export class OipModelListDto {
  @ApiProperty({ type: [OipModelSummaryDto] })
  models!: OipModelSummaryDto[];
}

export class OipServerMetadataDto {
  name!: string;
  version!: string;
  extensions!: string[];
}

export class OipReadyDto {
  name?: string;
  ready!: boolean;
}

export class OipLiveDto {
  live!: boolean;
}
