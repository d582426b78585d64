/* OpenAPI documentation of the OIP bodies; requests are validated by oip-request.schema.ts. */
import { ApiProperty } from '@nestjs/swagger';
import { OIP_DATATYPES } from './oip-codec';

export class OipInputTensorDto {
  /** Name of the model input. */
  name!: string;

  /** Dimensions of the tensor; the first is the batch size for batched models. */
  @ApiProperty({ type: [Number], example: [1, 4] })
  shape!: number[];

  @ApiProperty({ enum: OIP_DATATYPES, example: 'FP32' })
  datatype!: string;

  /** Per-tensor parameters: `binary_data_size` (binary extension) sends the values as bytes, not in `data`. */
  parameters?: Record<string, unknown>;

  /** Row-major values, flat or nested to the tensor's shape; absent when `parameters.binary_data_size` is given. */
  @ApiProperty({ type: 'array', items: {}, example: [1, 2, 3, 4], required: false })
  data?: unknown[];
}

export class OipRequestedOutputDto {
  /** Name of an output to return; without `outputs`, or with an empty list, all are returned. */
  name!: string;

  parameters?: Record<string, unknown>;
}

export class OipInferRequestDto {
  /** Echoed in the response. */
  @ApiProperty({ required: false, maxLength: 256 })
  id?: string;

  /** Optional (KServe's client sends it); when given, it must be the model the path names. */
  model_name?: string;

  /** Optional; when given, it must be the version that runs (the path's, else the default one). */
  model_version?: string;

  /** Request parameters; `timeout_ms` bounds how long the request may wait before it is dropped (504). */
  parameters?: Record<string, unknown>;

  @ApiProperty({ type: [OipInputTensorDto] })
  inputs!: OipInputTensorDto[];

  @ApiProperty({ type: [OipRequestedOutputDto], required: false })
  outputs?: OipRequestedOutputDto[];
}

export class OipOutputTensorDto {
  name!: string;
  @ApiProperty({ type: [Number] })
  shape!: number[];
  @ApiProperty({ enum: OIP_DATATYPES })
  datatype!: string;
  /** Absent when the output travels as binary data after the JSON header. */
  @ApiProperty({ type: 'array', items: {}, required: false })
  data?: unknown[];
  /** `binary_data_size` when the output travels as binary data. */
  parameters?: Record<string, unknown>;
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

/** Every error under /v2, as the protocol has it (application/json, whatever the status). */
export class OipErrorDto {
  /** What went wrong, safe to show. */
  error!: string;
}
