/**
 * JSON Schema of `models/<domain>/<name>/<version>/model.json`, the contract between the training
 * code that writes a model and the runtime that serves it. Strict at the top level so that a typo
 * in a field name is refused at load rather than silently ignored.
 */
/**
 * The longest deadline a request may have: the longest delay a Node.js timer takes (about 24.8 days).
 * A longer one would fire after 1 ms, with a warning, and drop the request at once.
 */
export const MAX_TIMEOUT_MS = 2_147_483_647;

export const TENSOR_DTYPES = ['float32', 'float64', 'int8', 'uint8', 'int32', 'int64', 'bool'] as const;
export type TensorDtype = (typeof TENSOR_DTYPES)[number];

const tensorSpec = {
  type: 'object',
  required: ['name', 'dtype', 'shape'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1 },
    dtype: { enum: TENSOR_DTYPES },
    shape: { type: 'array', minItems: 1, items: { type: 'integer', minimum: -1 } },
    description: { type: 'string' },
  },
} as const;

/** An input may also say what shape to warm up with (checked against `shape` by the registry). */
const inputSpec = {
  ...tensorSpec,
  properties: {
    ...tensorSpec.properties,
    warmupShape: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 1 } },
  },
} as const;

export const MODEL_MANIFEST_SCHEMA = {
  $id: 'https://gateway.local/schemas/model-manifest.json',
  type: 'object',
  required: ['schemaVersion', 'name', 'version', 'domain', 'task', 'inputs', 'outputs', 'provenance', 'sha256'],
  additionalProperties: false,
  properties: {
    schemaVersion: { const: 1 },
    name: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' },
    version: { type: 'string', pattern: '^[1-9][0-9]{0,8}$' },
    domain: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,31}$' },
    task: { type: 'string', minLength: 1 },
    description: { type: 'string' },
    default: { type: 'boolean' },
    createdAt: { type: 'string' },
    inputs: { type: 'array', minItems: 1, items: inputSpec },
    outputs: { type: 'array', minItems: 1, items: tensorSpec },
    preprocessing: { type: 'object' },
    postprocessing: { type: 'object' },
    labels: { type: ['array', 'object'] },
    thresholds: { type: 'object' },
    provenance: {
      type: 'object',
      required: ['dataset'],
      properties: { dataset: { type: 'string', minLength: 1 } },
    },
    metrics: { type: 'object' },
    batching: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxBatchSize: { type: 'integer', minimum: 1, maximum: 65536 },
        maxQueueDelayMs: { type: 'number', minimum: 0, maximum: 10000 },
        maxQueueSize: { type: 'integer', minimum: 1 },
        timeoutMs: { type: 'integer', minimum: 1, maximum: MAX_TIMEOUT_MS },
      },
    },
    sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
  },
} as const;

export interface TensorSpec {
  name: string;
  dtype: TensorDtype;
  /** -1 marks a dynamic dimension; a dynamic first dimension is the batch axis. */
  shape: number[];
  /**
   * Inputs only: the shape the warm-up runs on zeros of (its batch axis set to each warm-up batch size), for a
   * model whose dynamic dimensions cannot all be 1 (a convolution over an image of any size). Default: 1 for each.
   */
  warmupShape?: number[];
  description?: string;
}

export interface BatchingOptions {
  maxBatchSize: number;
  maxQueueDelayMs: number;
  maxQueueSize: number;
  timeoutMs: number;
}

export interface ModelManifest {
  schemaVersion: 1;
  name: string;
  version: string;
  domain: string;
  task: string;
  description?: string;
  default?: boolean;
  createdAt?: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  preprocessing?: Record<string, unknown>;
  postprocessing?: Record<string, unknown>;
  labels?: unknown[] | Record<string, unknown>;
  thresholds?: Record<string, unknown>;
  provenance: { dataset: string } & Record<string, unknown>;
  metrics?: Record<string, unknown>;
  batching?: Partial<BatchingOptions>;
  sha256: string;
}

/** Batching where neither the environment nor model.json says otherwise. */
export const DEFAULT_BATCHING: BatchingOptions = {
  maxBatchSize: 32,
  maxQueueDelayMs: 1,
  maxQueueSize: 1024,
  timeoutMs: 10_000,
};

/** Whether requests to the model can be stacked: every input and output has a dynamic batch axis. */
export function isBatchable(m: ModelManifest): boolean {
  return [...m.inputs, ...m.outputs].every((t) => t.shape[0] === -1);
}
