import * as ort from 'onnxruntime-node';
import type { InferenceDevice } from '../../config/app-config';
import { createOnProvider, ExecutionProviderName, ProviderChoice } from '../execution-provider/execution-provider';
import type { TensorSpec } from '../model-registry/model-manifest.schema';
import type { GraphSignature, GraphTensor } from '../model-registry/model-registry';
import { zeros, type Tensor, type TensorData } from '../tensor';

/**
 * ORT log severity "fatal". At "error" ORT wrote its own coloured line on stderr (`[E:onnxruntime:, sequential_executor.cc
 * ...] Non-zero status code ...`) for every run it refused, a warm-up at boot included, beside the gateway's structured
 * line: the error it throws carries the same message, which the gateway logs (or answers) in its own words.
 * onnxruntime-node takes no log sink of ours, so ORT's lines cannot be routed into the JSON log, only kept quiet.
 */
const QUIET = 4;
// The `auto` probe's failure to load the CUDA provider is expected on CPU hosts; the gateway reports
// it in its own words (logs, readiness, metadata), so ORT's own logger stays at fatal.
ort.env.logLevel = 'fatal';

export function sessionOptions(
  provider: ExecutionProviderName,
  intraOpThreads: number,
  cudaDeviceId: number,
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId: cudaDeviceId }] : ['cpu'],
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: QUIET,
    // Spinning intra-op threads would take the cores the event loop and the other workers need.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

export function createSession(
  model: string | Uint8Array,
  device: InferenceDevice,
  intraOpThreads: number,
  cudaDeviceId: number,
): Promise<ProviderChoice<ort.InferenceSession>> {
  return createOnProvider(device, (provider) =>
    typeof model === 'string'
      ? ort.InferenceSession.create(model, sessionOptions(provider, intraOpThreads, cudaDeviceId))
      : ort.InferenceSession.create(unshared(model), sessionOptions(provider, intraOpThreads, cudaDeviceId)),
  );
}

/**
 * Warm-up input dims: the input's `warmupShape` where model.json gives one, else 1 for each dynamic dimension
 * (too small for, say, a 3x3 convolution over an image of any size); a dynamic batch axis is set to `batch`.
 */
export function warmupDims(spec: TensorSpec, batch: number): number[] {
  const base = spec.warmupShape ?? spec.shape.map((d) => (d >= 0 ? d : 1));
  return base.map((d, i) => (i === 0 && spec.shape[0] === -1 ? batch : d));
}

/** The largest batch a model is warmed up with: larger ones are rare, and each costs boot time. */
const MAX_WARMUP_BATCH = 64;

/** The batch sizes a model is warmed up with: 1, and its largest batch up to MAX_WARMUP_BATCH. */
export function warmupBatchSizes(maxBatchSize: number): number[] {
  return [...new Set([1, Math.min(MAX_WARMUP_BATCH, maxBatchSize)])];
}

/**
 * Runs the session once on zeros for each batch size (`call` wraps each run, as the worker counts its calls
 * into ORT). A failed run says what it was fed and how to feed another shape.
 */
export async function warmUp(
  session: ort.InferenceSession,
  inputs: TensorSpec[],
  /** The outputs model.json declares: the only ones run, as in serving. */
  outputs: readonly string[],
  batchSizes: number[],
  call: <T>(run: () => Promise<T>) => Promise<T> = (run) => run(),
): Promise<void> {
  for (const batch of batchSizes) {
    const feeds: Record<string, ort.Tensor> = {};
    const shapes: string[] = [];
    for (const spec of inputs) {
      const dims = warmupDims(spec, batch);
      shapes.push(`${spec.name} [${dims.join(', ')}]`);
      feeds[spec.name] = toOrtTensor(zeros(spec.dtype, dims));
    }
    try {
      await call(() => session.run(feeds, outputs));
    } catch (error) {
      throw new Error(
        `warm-up run on zeros of ${shapes.join(', ')} failed (give the inputs a warmupShape in model.json ` +
          `that the model takes): ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
}

/** Reads the graph's declared inputs and outputs on the CPU (cheap; the session is released at once). */
export async function inspectGraph(onnx: Uint8Array): Promise<GraphSignature> {
  const session = await ort.InferenceSession.create(unshared(onnx), {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    logSeverityLevel: QUIET,
  });
  try {
    const toGraph = (m: ort.InferenceSession.ValueMetadata): GraphTensor =>
      m.isTensor
        ? { name: m.name, type: m.type, shape: [...m.shape] }
        : { name: m.name, type: 'non-tensor', shape: [] };
    return { inputs: session.inputMetadata.map(toGraph), outputs: session.outputMetadata.map(toGraph) };
  } finally {
    await session.release();
  }
}

/** ORT takes a model only from unshared memory: a copy of one model at a time, dropped once its session is made. */
function unshared(bytes: Uint8Array): Uint8Array {
  return bytes.buffer instanceof SharedArrayBuffer ? bytes.slice() : bytes;
}

export function toOrtTensor(t: Tensor): ort.Tensor {
  return new ort.Tensor(t.dtype, t.data, t.dims);
}

export function fromOrtTensor(t: ort.Tensor): Tensor {
  return { dtype: t.type as Tensor['dtype'], dims: [...t.dims], data: t.data as TensorData };
}
