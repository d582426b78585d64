import Ajv, { ErrorObject } from 'ajv';
import { AppError, FieldError, summariseFields } from '../../common/errors/app-error';
import { OIP_DATATYPES } from './oip-codec';

/** The OIP infer request body, as validated; tensor `data` is checked element by element by the codec. */
export interface OipInferRequest {
  id?: string;
  model_name?: string;
  model_version?: string;
  parameters?: Record<string, unknown>;
  inputs: Array<{
    name: string;
    shape: number[];
    datatype: string;
    parameters?: Record<string, unknown>;
    data?: unknown[];
  }>;
  outputs?: Array<{ name: string; parameters?: Record<string, unknown> }>;
}

/** The body as checked; OipInferRequestDto documents it from these pieces, and a test holds the two together. */
export const OIP_INFER_REQUEST_SCHEMA = {
  type: 'object',
  required: ['inputs'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', maxLength: 256 },
    // KServe's Python client puts these in every body it sends (InferRequest.to_rest); the path decides which model runs.
    model_name: { type: 'string' },
    model_version: { type: 'string' },
    // The binary extension's switches are booleans: "no" is truthy, and would have asked for binary.
    parameters: { type: 'object', properties: { binary_data_output: { type: 'boolean' } } },
    inputs: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['name', 'shape', 'datatype'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1 },
          // A dimension past 2^53 is no exact integer: [1e300, 1e300, 0] was told it "needs NaN values".
          shape: {
            type: 'array',
            maxItems: 8,
            items: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
          },
          datatype: { enum: OIP_DATATYPES },
          parameters: {
            type: 'object',
            properties: { binary_data_size: { type: 'integer', minimum: 0 } },
          },
          data: { type: 'array' },
        },
      },
    },
    outputs: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1 },
          parameters: { type: 'object', properties: { binary_data: { type: 'boolean' } } },
        },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: true }).compile<OipInferRequest>(OIP_INFER_REQUEST_SCHEMA);

function fieldOf(error: ErrorObject): FieldError {
  const path = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join('')
    .replace(/^\./, '');
  const extra = error.keyword === 'additionalProperties' ? ` (${String(error.params.additionalProperty)})` : '';
  const allowed = error.keyword === 'enum' ? ` (${OIP_DATATYPES.join(', ')})` : '';
  return { field: path || 'body', reason: `${error.message ?? 'is invalid'}${extra}${allowed}` };
}

/**
 * Validates an OIP infer body with a compiled JSON schema. Unlike the class-transformer pipe it
 * never copies tensor data element by element, which for an image-sized body costs more than the model.
 */
export function parseOipInferRequest(value: unknown): OipInferRequest {
  if (validate(value)) return value;
  const fields = (validate.errors ?? []).map(fieldOf);
  throw new AppError('VALIDATION_FAILED', summariseFields(fields), { fields });
}
