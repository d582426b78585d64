import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../src/common/errors/app-error';
import { decodeOipTensor, encodeOipTensor, oipDataJson } from '../../src/runtime/oip/oip-codec';
import type { Tensor } from '../../src/runtime/tensor';

const invalid = (field: string, pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof AppError);
  assert.equal(error.code, 'INVALID_TENSOR');
  assert.equal(error.fields[0].field, field);
  assert.match(error.fields[0].reason, pattern);
  return true;
};

describe('OIP tensor codec', () => {
  it('accepts flat and nested data alike', () => {
    const flat = decodeOipTensor({ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3, 4] }, 0);
    const nested = decodeOipTensor(
      {
        name: 'x',
        shape: [2, 2],
        datatype: 'FP32',
        data: [
          [1, 2],
          [3, 4],
        ],
      },
      0,
    );
    assert.deepEqual(flat, nested);
    assert.ok(flat.data instanceof Float32Array);
  });

  it('names the input and the reason when the count does not match the shape', () => {
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2] }, 1),
      invalid('inputs[1].data', /needs 6 values, got 2/),
    );
  });

  it('refuses ragged nested data, naming the row, even when the count adds up', () => {
    const rows = (...lengths: number[]) => lengths.map((n) => Array.from({ length: n }, () => 0.5));
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [2, 31], datatype: 'FP32', data: rows(32, 30) }, 0),
      invalid('inputs[0].data[0]', /has 32 values where shape \[2, 31\] needs 31/),
    );
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [4], datatype: 'FP32', data: rows(2, 2) }, 0),
      invalid('inputs[0].data', /has 2 rows where shape \[4\] needs 4/),
    );
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [2, 2], datatype: 'FP32', data: [[1, 2], 3, 4] }, 0),
      invalid('inputs[0].data', /mixes arrays and values/),
    );
    // A last level may hold the rest of the shape flat.
    const partly = decodeOipTensor({ name: 'x', shape: [1, 2, 2], datatype: 'FP32', data: [[1, 2, 3, 4]] }, 0);
    assert.deepEqual([...partly.data], [1, 2, 3, 4]);
  });

  it('refuses non-numbers, out-of-range integers and unsupported datatypes', () => {
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [1], datatype: 'FP32', data: ['1'] }, 0),
      invalid('inputs[0].data', /finite number/),
    );
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [1], datatype: 'UINT8', data: [256] }, 0),
      invalid('inputs[0].data', /integer in \[0, 255\]/),
    );
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [1], datatype: 'INT32', data: [1.5] }, 0),
      invalid('inputs[0].data', /integer/),
    );
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [2], datatype: 'FP32', data: [1, -1e300] }, 0),
      invalid('inputs[0].data', /^element 1 is out of FP32 range$/),
    );
    assert.equal(decodeOipTensor({ name: 'x', shape: [1], datatype: 'FP64', data: [1e300] }, 0).data[0], 1e300);
    assert.throws(
      () => decodeOipTensor({ name: 'x', shape: [1], datatype: 'BYTES', data: ['a'] }, 0),
      invalid('inputs[0].datatype', /unsupported datatype "BYTES"/),
    );
  });

  it('round-trips INT64 and BOOL', () => {
    const i64 = decodeOipTensor({ name: 'a', shape: [2], datatype: 'INT64', data: [1, -2] }, 0);
    assert.deepEqual([...(i64.data as BigInt64Array)], [1n, -2n]);
    assert.deepEqual(encodeOipTensor('a', i64).data, [1, -2]);
    const b = decodeOipTensor({ name: 'b', shape: [2], datatype: 'BOOL', data: [true, false] }, 0);
    assert.deepEqual(encodeOipTensor('b', b), { name: 'b', shape: [2], datatype: 'BOOL', data: [true, false] });
    assert.throws(() => decodeOipTensor({ name: 'b', shape: [1], datatype: 'BOOL', data: [1] }, 0), /true or false/);
  });

  it("writes a tensor's values in pieces as JSON.stringify writes encodeOipTensor's data, for every dtype", () => {
    const odd = [0, -0, 0.1, -1.5, 1e-7, 3.4e38, 1.17549435e-38, 1e-45, 123456.789, -2];
    const float32 = Float32Array.from({ length: 10_000 }, (_, i) => odd[i % odd.length] / (1 + i / 7));
    const tensors: Tensor[] = [
      { dtype: 'float32', dims: [2, 5_000], data: float32 },
      { dtype: 'float64', dims: [odd.length], data: Float64Array.from(odd) },
      { dtype: 'int64', dims: [3], data: BigInt64Array.from([-(2n ** 53n) + 1n, 0n, 2n ** 53n - 1n]) },
      { dtype: 'int32', dims: [3], data: Int32Array.from([-2147483648, 0, 2147483647]) },
      { dtype: 'int8', dims: [2], data: Int8Array.from([-128, 127]) },
      { dtype: 'uint8', dims: [2], data: Uint8Array.from([0, 255]) },
      { dtype: 'bool', dims: [3], data: Uint8Array.from([1, 0, 1]) },
      { dtype: 'float32', dims: [0, 4], data: new Float32Array(0) },
      { dtype: 'float32', dims: [4096], data: new Float32Array(4096).fill(0.25) },
    ];
    for (const tensor of tensors) {
      const pieces = oipDataJson(tensor);
      // Compared as a boolean: the texts run to 200 KB.
      const same = Buffer.concat(pieces).toString() === JSON.stringify(encodeOipTensor('t', tensor).data);
      assert.ok(same, `${tensor.dtype} [${tensor.dims.join(', ')}]`);
      // No piece is one string of the whole: each stays below V8's large-object size.
      for (const piece of pieces) assert.ok(piece.length < 128 * 1024);
    }
    assert.ok(oipDataJson(tensors[0]).length > 2);
  });
});
