import { AppError, FieldError } from '../../common/errors/app-error';
import type { TensorDtype } from '../model-registry/model-manifest.schema';
import { elementCount, MakeTensor, Tensor, zeros } from '../tensor';

/** Open Inference Protocol datatypes the gateway's tensors can carry. */
export const OIP_DATATYPES = ['BOOL', 'UINT8', 'INT8', 'INT32', 'INT64', 'FP32', 'FP64'] as const;
export type OipDatatype = (typeof OIP_DATATYPES)[number];

const TO_DTYPE: Record<OipDatatype, TensorDtype> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  INT8: 'int8',
  INT32: 'int32',
  INT64: 'int64',
  FP32: 'float32',
  FP64: 'float64',
};
const TO_OIP = Object.fromEntries(Object.entries(TO_DTYPE).map(([k, v]) => [v, k])) as Record<TensorDtype, OipDatatype>;

const INT_RANGE: Partial<Record<TensorDtype, [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  int32: [-2147483648, 2147483647],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

export function fromOipDatatype(datatype: OipDatatype): TensorDtype {
  return TO_DTYPE[datatype];
}

export function toOipDatatype(dtype: TensorDtype): OipDatatype {
  return TO_OIP[dtype];
}

export interface OipTensorJson {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown[];
}

function flatten(data: unknown[], out: unknown[]): void {
  for (const item of data) {
    if (Array.isArray(item)) flatten(item, out);
    else out.push(item);
  }
}

/**
 * Where nested `data` does not follow `shape`: each level of arrays must have as many members as its
 * dimension, all arrays or all values; a level of values may hold the rest of the shape flat (so
 * `[[1, 2, 3, 4]]` fits [1, 2, 2]). Rows of 32 and 30 values add up to [2, 31] but are not its rows.
 */
function raggedness(data: unknown[], shape: readonly number[]): { path: string; reason: string } | undefined {
  const stack: Array<{ node: unknown[]; level: number; path: string }> = [{ node: data, level: 0, path: '' }];
  while (stack.length > 0) {
    const { node, level, path } = stack.pop()!;
    const arrays = node.filter(Array.isArray).length;
    if (arrays === 0) {
      const rest = elementCount(shape.slice(level));
      if (level > 0 && node.length !== rest) {
        return { path, reason: `has ${node.length} values where shape [${shape.join(', ')}] needs ${rest}` };
      }
      continue;
    }
    if (arrays !== node.length) return { path, reason: 'mixes arrays and values' };
    if (level >= shape.length) return { path, reason: `nests deeper than shape [${shape.join(', ')}]` };
    if (node.length !== shape[level]) {
      return { path, reason: `has ${node.length} rows where shape [${shape.join(', ')}] needs ${shape[level]}` };
    }
    for (let i = node.length - 1; i >= 0; i--) {
      stack.push({ node: node[i] as unknown[], level: level + 1, path: `${path}[${i}]` });
    }
  }
  return undefined;
}

/**
 * Decodes one OIP JSON tensor (flat or nested `data`) into a typed tensor; field errors name `inputs[i]`.
 * `make` gives the tensor the values are written into (zeros: a new one; the service's, one from the runtime's pool).
 */
export function decodeOipTensor(input: OipTensorJson, index: number, make: MakeTensor = zeros): Tensor {
  const field = `inputs[${index}]`;
  const fail = (suffix: string, reason: string): never => {
    const fields: FieldError[] = [{ field: `${field}${suffix}`, reason }];
    throw new AppError('INVALID_TENSOR', `${field}${suffix}: ${reason}`, { fields });
  };
  if (!(OIP_DATATYPES as readonly string[]).includes(input.datatype)) {
    fail('.datatype', `unsupported datatype "${input.datatype}" (supported: ${OIP_DATATYPES.join(', ')})`);
  }
  const dtype = TO_DTYPE[input.datatype as OipDatatype];
  // Flat data (the common case, and what clients send for images) is read in place; only nested data is copied.
  let values: unknown[] = input.data;
  if (values.some(Array.isArray)) {
    const ragged = raggedness(input.data, input.shape);
    if (ragged) fail(`.data${ragged.path}`, ragged.reason);
    values = [];
    flatten(input.data, values);
  }
  const expected = elementCount(input.shape);
  if (values.length !== expected) {
    fail('.data', `shape [${input.shape.join(', ')}] needs ${expected} values, got ${values.length}`);
  }
  const { data } = make(dtype, [...input.shape]);
  const range = INT_RANGE[dtype];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (dtype === 'bool') {
      if (typeof v !== 'boolean') fail('.data', `element ${i} must be true or false`);
      data[i] = v ? 1 : 0;
    } else if (typeof v !== 'number' || !Number.isFinite(v)) {
      fail('.data', `element ${i} must be a finite number`);
    } else if (range) {
      if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
        fail('.data', `element ${i} must be an integer in [${range[0]}, ${range[1]}] for ${input.datatype}`);
      }
      if (dtype === 'int64') (data as BigInt64Array)[i] = BigInt(v);
      else data[i] = v;
    } else {
      data[i] = v;
      // A double past float32's range becomes Infinity there (the binary path refuses those as not finite).
      if (dtype === 'float32' && !Number.isFinite(data[i])) fail('.data', `element ${i} is out of FP32 range`);
    }
  }
  return { dtype, dims: [...input.shape], data };
}

export function encodeOipTensor(name: string, tensor: Tensor): OipTensorJson {
  return { name, shape: tensor.dims, datatype: toOipDatatype(tensor.dtype), data: oipValues(tensor) };
}

/** A tensor's values as the protocol's JSON `data` holds them: INT64 as numbers, BOOL as booleans. */
function oipValues(tensor: Tensor): unknown[] {
  if (tensor.dtype === 'int64') return Array.from(tensor.data as BigInt64Array, (v) => Number(v));
  if (tensor.dtype === 'bool') return Array.from(tensor.data as Uint8Array, (v) => v !== 0);
  return Array.from(tensor.data as Float32Array);
}

/** Values written per piece: a piece's text (at most 24 characters a value) stays below V8's large-object size (128 KB). */
const VALUES_PER_PIECE = 4096;

/**
 * The JSON text of a tensor's values, `[v,...]` as JSON.stringify writes encodeOipTensor's `data`, as UTF-8
 * pieces of VALUES_PER_PIECE values each. The answer was a JS array of every value, stringified whole: an 8-image
 * lesion map (524,288 values) took about 4 MB of V8 heap as the array and 11 MB as the answer's string, held until
 * the answer was audited and written, so that 100 such answers took a 1 GB heap out of memory. The pieces are
 * Buffers, outside the heap. An INT64 tensor must hold only safe integers (representableInJson).
 */
export function oipDataJson(tensor: Tensor): Buffer[] {
  const pieces: Buffer[] = [];
  const length = tensor.data.length;
  for (let start = 0; start < length || start === 0; start += VALUES_PER_PIECE) {
    // JSON.stringify of a small array of numbers is V8's own fast path; only its brackets are moved.
    const json = JSON.stringify(oipValues({ ...tensor, data: tensor.data.subarray(start, start + VALUES_PER_PIECE) }));
    const first = start === 0;
    const last = start + VALUES_PER_PIECE >= length;
    pieces.push(Buffer.from(`${first ? '' : ','}${json.slice(first ? 0 : 1, last ? json.length : -1)}`));
  }
  return pieces;
}
