/*
 * OpenAPI documentation of the OIP bodies. Requests are validated by oip-request.schema.ts; their documentation takes
 * its limits from that schema's pieces (an e2e test compares the two keyword by keyword).
 */
import { ApiProperty } from '@nestjs/swagger';
import { MAX_TIMEOUT_MS } from '../model-registry/model-manifest.schema';
import { OIP_DATATYPES } from './oip-codec';
import { OIP_INFER_REQUEST_SCHEMA } from './oip-request.schema';

const REQUEST = OIP_INFER_REQUEST_SCHEMA.properties;
const INPUT = REQUEST.inputs.items.properties;
const OUTPUT = REQUEST.outputs.items.properties;

export class OipInputTensorDto {
  /** Name of the model input. */
  @ApiProperty(INPUT.name)
  name!: string;

  /** Dimensions of the tensor; the first is the batch size for batched models. */
  @ApiProperty({ ...INPUT.shape, example: [1, 4] })
  shape!: number[];

  @ApiProperty({ enum: OIP_DATATYPES, example: 'FP32' })
  datatype!: string;

  /** Per-tensor parameters: `binary_data_size` (binary extension) sends the values as bytes, not in `data`. */
  @ApiProperty({ ...INPUT.parameters, selfRequired: false })
  parameters?: Record<string, unknown>;

  /** Row-major values, flat or nested to the tensor's shape; absent when `parameters.binary_data_size` is given. */
  @ApiProperty({ type: 'array', items: {}, example: [1, 2, 3, 4], required: false })
  data?: unknown[];
}

export class OipRequestedOutputDto {
  /** Name of an output to return; without `outputs`, or with an empty list, all are returned. */
  @ApiProperty(OUTPUT.name)
  name!: string;

  /** `binary_data`: this output as binary data after the JSON header (it wins over `binary_data_output`). */
  @ApiProperty({ ...OUTPUT.parameters, selfRequired: false })
  parameters?: Record<string, unknown>;
}

export class OipInferRequestDto {
  /** Echoed in the response. */
  @ApiProperty({ ...REQUEST.id, required: false })
  id?: string;

  /** Optional (KServe's client sends it); when given, it must be the model the path names. */
  model_name?: string;

  /**
   * Optional; when given, it must be the version that runs (the path's, else the default one). Empty, it names
   * none, as in the protocol's gRPC form: the version that runs is the path's, else the default one.
   */
  model_version?: string;

  /**
   * Request parameters: `timeout_ms` bounds how long the request may wait before it is dropped (504);
   * `timeout` does the same in microseconds, as tritonclient sends it (rounded up to whole milliseconds; the smaller
   * deadline when both are given; 0 is none, as Triton reads it); `binary_data_output` asks for every output as
   * binary data.
   */
  @ApiProperty({
    type: 'object',
    properties: {
      ...REQUEST.parameters.properties,
      timeout_ms: { type: 'integer', minimum: 1, maximum: MAX_TIMEOUT_MS },
      timeout: { type: 'integer', minimum: 0, maximum: MAX_TIMEOUT_MS * 1000 },
    },
    selfRequired: false,
  })
  parameters?: Record<string, unknown>;

  /** The model's inputs, each once: at most as many as its metadata lists (more are refused by their count). */
  @ApiProperty({ type: [OipInputTensorDto], minItems: REQUEST.inputs.minItems })
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
