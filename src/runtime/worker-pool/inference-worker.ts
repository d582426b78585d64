/* Worker thread entry: owns ONNX Runtime sessions so that run() never blocks the event loop. */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import type { InferenceSession } from 'onnxruntime-node';
import { elementCount } from '../tensor';
import { POOLED_FROM_BYTES } from '../tensor-pool';
import { createSession, fromOrtTensor, toOrtTensor, warmUp } from './ort-session';
import { CONTROL_RUNS, CONTROL_STOP, modelPlace } from './worker-protocol';
import type {
  FromWorker,
  LoadedModel,
  LoadMessage,
  RunMessage,
  ToWorker,
  WorkerInit,
  WorkerModel,
} from './worker-protocol';

const sessions = new Map<string, InferenceSession>();
/** Each model's declared output names: the fetches of its runs (undeclared outputs are neither run nor returned). */
const fetches = new Map<string, string[]>();
const control = new Int32Array((workerData as WorkerInit).control);

/**
 * The pool has given up on this worker (a run went past its limit) and could not terminate it, a run being
 * under way: it stops here, where ONNX Runtime is not on its stack, rather than run again or answer.
 */
function stopIfGivenUp(): void {
  if (Atomics.load(control, CONTROL_STOP) === 1) process.exit(0);
}

function post(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(message, transfer);
}

/**
 * The bytes of model.onnx, for a worker that replaces one lost after boot (at boot, the registry's checked
 * bytes come with the load), checked against the manifest's sha256 here, where they are loaded: the file
 * may have changed since, and a session made from the path would read whatever is there then.
 */
async function verifiedBytes(model: WorkerModel): Promise<Uint8Array> {
  const bytes = await readFile(model.onnxPath);
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== model.sha256) {
    throw new Error(
      `${model.onnxPath}: sha256 mismatch: model.json says ${model.sha256}, file is ${digest} (changed since the gateway started); not loaded`,
    );
  }
  return bytes;
}

/**
 * A load's call into ONNX Runtime (a session's creation, a warm-up run), counted at CONTROL_RUNS as a run is,
 * so that the pool, giving up on a load that took too long, never terminates the thread inside it; the
 * thread stops here instead once the call returns.
 */
async function inOrt<T>(call: () => Promise<T>): Promise<T> {
  Atomics.add(control, CONTROL_RUNS, 1);
  try {
    stopIfGivenUp();
    return await call();
  } finally {
    Atomics.sub(control, CONTROL_RUNS, 1);
    stopIfGivenUp();
  }
}

/** A model's session and warm-up; a failure names the model, its version and its folder, as the registry's do. */
async function loadOne(model: WorkerModel, msg: LoadMessage): Promise<LoadedModel> {
  const named = modelPlace(model);
  post({ type: 'loading', key: model.key });
  let choice: Awaited<ReturnType<typeof createSession>>;
  try {
    const bytes = model.bytes ?? (await verifiedBytes(model));
    choice = await inOrt(() => createSession(bytes, msg.device, msg.intraOpThreads, msg.cudaDeviceId));
  } catch (error) {
    throw new Error(`${named}: cannot be loaded: ${(error as Error).message}`, { cause: error });
  }
  sessions.set(model.key, choice.session);
  fetches.set(model.key, model.outputs);
  const started = performance.now();
  try {
    await warmUp(choice.session, model.inputs, model.outputs, model.warmupBatchSizes, inOrt);
  } catch (error) {
    throw new Error(`${named}: ${(error as Error).message}`, { cause: error });
  }
  return {
    key: model.key,
    provider: choice.provider,
    fallbackReason: choice.fallbackReason,
    warmupMs: performance.now() - started,
  };
}

async function load(msg: LoadMessage): Promise<void> {
  const loaded: LoadedModel[] = [];
  for (const model of msg.models) loaded.push(await loadOne(model, msg));
  stopIfGivenUp();
  post({ type: 'loaded', models: loaded });
}

async function run(msg: RunMessage): Promise<void> {
  // Counted before the pool's STOP is read (and the pool sets STOP before it reads the count), so that
  // either this run sees STOP and never enters ONNX Runtime, or the pool sees the run and does not terminate.
  Atomics.add(control, CONTROL_RUNS, 1);
  let results: InferenceSession.ReturnType;
  let computeMs: number;
  try {
    stopIfGivenUp();
    const session = sessions.get(msg.key);
    if (!session) throw new Error(`model ${msg.key} is not loaded in this worker`);
    const feeds: Record<string, ReturnType<typeof toOrtTensor>> = {};
    for (const [name, tensor] of Object.entries(msg.feeds)) feeds[name] = toOrtTensor(tensor);
    const started = performance.now();
    results = await session.run(feeds, fetches.get(msg.key)!);
    computeMs = performance.now() - started;
  } finally {
    Atomics.sub(control, CONTROL_RUNS, 1);
  }
  stopIfGivenUp();
  const outputs: FromWorker & { type: 'result' } = { type: 'result', id: msg.id, outputs: {}, computeMs };
  const transfer: ArrayBuffer[] = [];
  for (const [name, value] of Object.entries(results)) {
    const tensor = fromOrtTensor(value);
    // Own the bytes before transferring them: ORT may hand out views into larger buffers.
    const owned = tensor.data.slice() as typeof tensor.data;
    if (owned.length !== elementCount(tensor.dims)) throw new Error(`output ${name} has an inconsistent shape`);
    outputs.outputs[name] = { ...tensor, data: owned };
    transfer.push(owned.buffer as ArrayBuffer);
  }
  // The inputs' large buffers go back too, for the main thread's TensorPool to serve the next request.
  const returned = new Set<ArrayBuffer>();
  for (const tensor of Object.values(msg.feeds)) {
    const buffer = tensor.data.buffer as ArrayBuffer;
    if (buffer.byteLength >= POOLED_FROM_BYTES) returned.add(buffer);
  }
  outputs.returned = [...returned];
  post(outputs, [...transfer, ...returned]);
}

parentPort!.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'load':
      load(msg).catch((error: unknown) => post({ type: 'load-failed', message: (error as Error).message }));
      break;
    case 'run':
      run(msg).catch((error: unknown) => post({ type: 'run-failed', id: msg.id, message: (error as Error).message }));
      break;
  }
});
