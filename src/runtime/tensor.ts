import { TensorDtype } from './model-registry/model-manifest.schema';

export type TensorData = Float32Array | Float64Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;

/** A dense row-major tensor, the unit the runtime moves between callers, batcher and workers. */
export interface Tensor {
  dtype: TensorDtype;
  dims: number[];
  data: TensorData;
}

type TypedArrayCtor = {
  new (length: number): TensorData;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): TensorData;
  BYTES_PER_ELEMENT: number;
};

/** The typed array that holds each dtype's elements. */
export const TYPED_ARRAYS: Record<TensorDtype, TypedArrayCtor> = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int32: Int32Array,
  int64: BigInt64Array,
  bool: Uint8Array,
};

export function allocate(dtype: TensorDtype, length: number): TensorData {
  return new TYPED_ARRAYS[dtype](length);
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Makes a zero-filled tensor of dtype and dims: zeros, or TensorPool.allocate (a buffer used before). */
export type MakeTensor = (dtype: TensorDtype, dims: number[]) => Tensor;

export function zeros(dtype: TensorDtype, dims: number[]): Tensor {
  return { dtype, dims, data: allocate(dtype, elementCount(dims)) };
}

/** Stacks tensors of equal trailing dims along axis 0, into a tensor from `make` (zeros: a new one). */
export function concatBatch(parts: Tensor[], make: MakeTensor = zeros): Tensor {
  if (parts.length === 1) return parts[0];
  const first = parts[0];
  const rows = parts.reduce((sum, t) => sum + t.dims[0], 0);
  const dims = [rows, ...first.dims.slice(1)];
  const { data } = make(first.dtype, dims);
  let offset = 0;
  for (const part of parts) {
    (data as Float32Array).set(part.data as Float32Array, offset);
    offset += part.data.length;
  }
  return { dtype: first.dtype, dims, data };
}

/** Splits a tensor along axis 0 into pieces of the given row counts (copies; each piece owns its buffer). */
export function splitBatch(tensor: Tensor, rows: number[]): Tensor[] {
  const total = rows.reduce((a, b) => a + b, 0);
  if (tensor.dims.length === 0 || tensor.dims[0] !== total) {
    throw new Error(`output has leading dimension ${tensor.dims[0]} but the batch has ${total} rows`);
  }
  if (rows.length === 1) return [tensor];
  const rowSize = elementCount(tensor.dims.slice(1));
  const out: Tensor[] = [];
  let start = 0;
  for (const n of rows) {
    const data = tensor.data.slice(start * rowSize, (start + n) * rowSize) as TensorData;
    out.push({ dtype: tensor.dtype, dims: [n, ...tensor.dims.slice(1)], data });
    start += n;
  }
  return out;
}

/**
 * The canonical bytes of named tensors for an audit digest: sorted by name, each as
 * `name\0dtype\0dims` then its raw little-endian data, whatever encoding the request used.
 */
export function canonicalTensorParts(tensors: Record<string, Tensor>): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (const name of Object.keys(tensors).sort()) {
    const { dtype, dims, data } = tensors[name];
    parts.push(
      Buffer.from(`${name}\0${dtype}\0${dims.join(',')}`),
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
  }
  return parts;
}

const SUMMARY_VALUES = 8;

/**
 * What an audit row keeps of outputs: shape, and the values when there are few (scores), else
 * their range and mean (maps, embeddings).
 */
export function summariseTensors(tensors: Record<string, Tensor>): Record<string, unknown> {
  const summary: Record<string, unknown> = {};
  for (const [name, { dtype, dims, data }] of Object.entries(tensors)) {
    const view = data as ArrayLike<number | bigint>;
    if (view.length <= SUMMARY_VALUES) {
      summary[name] = { dtype, dims, values: Array.from(view, Number) };
      continue;
    }
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (let i = 0; i < view.length; i++) {
      const v = Number(view[i]);
      if (v < min) min = v;
      if (v > max) max = v;
      sum += v;
    }
    summary[name] = { dtype, dims, min, max, mean: sum / view.length };
  }
  return summary;
}
