import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuditInputDigester } from '../../src/common/access';
import type { ReadinessService } from '../../src/common/health/readiness.service';
import type {
  InferenceEngine,
  InferenceResult,
  InferOptions,
  ModelVersionInfo,
} from '../../src/runtime/inference-engine.service';
import type { ModelManifest } from '../../src/runtime/model-registry/model-manifest.schema';
import { OipService } from '../../src/runtime/oip/oip.service';
import { Tensor, zeros } from '../../src/runtime/tensor';

const manifest = {
  inputs: [{ name: 'x', dtype: 'float32', shape: [-1, 4] }],
  outputs: [{ name: 'y', dtype: 'float32', shape: [-1, 1] }],
} as unknown as ModelManifest;

const info: ModelVersionInfo = {
  name: 'm',
  version: '1',
  domain: 'generic',
  isDefault: true,
  manifest,
  provider: 'cpu',
  ready: true,
  batching: { batchable: true, maxBatchSize: 8192, maxQueueDelayMs: 1, maxQueueSize: 8, timeoutMs: 1000 },
};

/** An OipService over an engine that calls `running` with the inputs while the request waits for the model. */
function serviceWhere(
  running: (inputs: Record<string, Tensor>, options: InferOptions) => void,
  model: ModelVersionInfo = info,
): OipService {
  const engine = {
    describe: () => model,
    allocate: zeros,
    infer: (
      _name: string,
      _version: string | undefined,
      inputs: Record<string, Tensor>,
      options: InferOptions,
    ): Promise<InferenceResult> => {
      running(inputs, options);
      const rows = inputs.x.dims[0];
      return Promise.resolve({
        model: 'm',
        version: '1',
        provider: 'cpu',
        outputs: { y: { dtype: 'float32', dims: [rows, 1], data: new Float32Array(rows).fill(0.5) } },
        queueMs: 0,
        computeMs: 0,
        batchSize: rows,
      });
    },
  } as unknown as InferenceEngine;
  const digester = { digest: () => 'digest' } as unknown as AuditInputDigester;
  return new OipService(engine, {} as ReadinessService, digester);
}

describe('OipService', () => {
  it("runs with tritonclient's parameters.timeout (microseconds) as its deadline, the smaller when timeout_ms is given too", async () => {
    // It was ignored: a tritonclient caller's deadline was the model's timeoutMs.
    const deadlineOf = async (parameters: Record<string, unknown>): Promise<number | undefined> => {
      let timeoutMs: number | undefined = -1;
      const oip = serviceWhere((_inputs, options) => (timeoutMs = options.timeoutMs));
      const inputs = [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }];
      await oip.infer('m', undefined, { parameters, inputs }, undefined, () => undefined);
      return timeoutMs;
    };
    assert.equal(await deadlineOf({ timeout: 250_000 }), 250);
    assert.equal(await deadlineOf({ timeout: 500 }), 1);
    assert.equal(await deadlineOf({ timeout: 250_000, timeout_ms: 100 }), 100);
    assert.equal(await deadlineOf({ timeout: 50_000, timeout_ms: 100 }), 50);
    assert.equal(await deadlineOf({}), undefined);
    // 0 is no timeout, as Triton reads it: the model's deadline, or timeout_ms's.
    assert.equal(await deadlineOf({ timeout: 0 }), undefined);
    assert.equal(await deadlineOf({ timeout: 0, timeout_ms: 100 }), 100);
  });

  it('refuses a parameters.timeout that is neither 0 nor a positive integer of microseconds within a timer, naming it', async () => {
    const oip = serviceWhere(() => undefined);
    // A fresh body each time: the service lets go of an input's data once it is decoded.
    const infer = (timeout: unknown) => {
      const inputs = [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }];
      return oip.infer('m', undefined, { parameters: { timeout }, inputs }, undefined, () => {});
    };
    for (const timeout of [-1, 1.5, '1000', (2 ** 31 - 1) * 1000 + 1]) {
      await assert.rejects(infer(timeout), {
        message:
          'VALIDATION_FAILED: parameters.timeout: must be 0 (no timeout) or a positive integer of microseconds, ' +
          'at most 2147483647000',
      });
    }
    await infer(0);
    await infer((2 ** 31 - 1) * 1000);
  });

  it("refuses an input given twice by its place, and one of the model's not given naming inputs", async () => {
    // Two inputs to a model of two: their count is no refusal, their names are.
    const inputs = [
      { name: 'a', dtype: 'float32', shape: [-1, 4] },
      { name: 'b', dtype: 'float32', shape: [-1, 4] },
    ];
    const oip = serviceWhere(() => undefined, {
      ...info,
      manifest: { ...manifest, inputs } as unknown as ModelManifest,
    });
    const infer = (...names: string[]) =>
      oip.infer(
        'm',
        undefined,
        { inputs: names.map((name) => ({ name, shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] })) },
        undefined,
        () => {},
      );
    await assert.rejects(infer('a', 'a'), {
      message: 'INVALID_TENSOR: inputs[1].name: "a" is given twice; inputs: must contain an input named "b"',
    });
    await assert.rejects(infer('a', 'b', 'c'), {
      message: 'INVALID_TENSOR: inputs: the model takes 2 inputs ("a", "b"), got 3',
    });
  });

  it("lets go of a JSON input's parsed values once they are decoded, before the request waits for the model", async () => {
    // The parsed body is Fastify's request.body, held until the answer: its values took about four times the
    // bytes the upload budget counts, for as long as the request was queued.
    const body = {
      id: 'r1',
      inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8] as unknown[] | undefined }],
    };
    let heldWhileRunning: unknown = 'not run';
    let decoded: number[] = [];
    const oip = serviceWhere((inputs) => {
      heldWhileRunning = body.inputs[0].data;
      decoded = Array.from(inputs.x.data as Float32Array);
    });
    const answer = await oip.infer('m', undefined, body, undefined, () => undefined);
    assert.equal(heldWhileRunning, undefined);
    assert.deepEqual(decoded, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(answer.kind, 'json');
    assert.deepEqual(JSON.parse(answer.body.toString()).outputs, [
      { name: 'y', shape: [2, 1], datatype: 'FP32', data: [0.5, 0.5] },
    ]);
  });

  it("answers JSON as bytes written a piece at a time, the same JSON as before, in a binary answer's header too", async () => {
    // 5,000 rows: the output's 5,000 values take two pieces.
    const rows = 5_000;
    const x = { name: 'x', shape: [rows, 4], datatype: 'FP32', data: Array<number>(rows * 4).fill(1) };
    const oip = serviceWhere(() => undefined);
    const answer = await oip.infer('m', undefined, { id: 'r2', inputs: [x] }, undefined, () => undefined);
    assert.equal(answer.kind, 'json');
    assert.ok(Buffer.isBuffer(answer.body));
    assert.equal(
      answer.body.toString(),
      JSON.stringify({
        model_name: 'm',
        model_version: '1',
        id: 'r2',
        parameters: { execution_provider: 'cpu', queue_ms: 0, compute_ms: 0, batch_size: rows },
        outputs: [{ name: 'y', shape: [rows, 1], datatype: 'FP32', data: Array<number>(rows).fill(0.5) }],
      }),
    );
    const binary = await oip.infer(
      'm',
      undefined,
      { inputs: [{ ...x, shape: [1, 4], data: [1, 2, 3, 4] }], parameters: { binary_data_output: true } },
      undefined,
      () => undefined,
    );
    assert.equal(binary.kind, 'binary');
    const header = JSON.parse(binary.body.subarray(0, binary.kind === 'binary' ? binary.headerLength : 0).toString());
    assert.deepEqual(header.outputs, [
      { name: 'y', shape: [1, 1], datatype: 'FP32', parameters: { binary_data_size: 4 } },
    ]);
  });
});
