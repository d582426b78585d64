import { dirname } from 'node:path';
import type { InferenceDevice } from '../../config/app-config';
import type { ExecutionProviderName } from '../execution-provider/execution-provider';
import type { TensorSpec } from '../model-registry/model-manifest.schema';
import type { Tensor } from '../tensor';

export interface WorkerModel {
  key: string;
  onnxPath: string;
  /** The manifest's sha256 of model.onnx: the bytes a worker reads must have it (checked at every read). */
  sha256: string;
  /**
   * model.onnx as the registry read and checked it at boot (shared memory): loaded as is, not read again.
   * Absent for a worker that replaces one lost later, which reads the file and checks it.
   */
  bytes?: Uint8Array;
  inputs: TensorSpec[];
  /**
   * The manifest's output names: the only ones run and returned. A graph's undeclared outputs (a classifier's
   * string label) are not computed, nor sent back, nor split.
   */
  outputs: string[];
  /** Batch sizes to warm up with (1 and the largest batch the batcher will form). */
  warmupBatchSizes: number[];
}

/**
 * What a worker is started with. `control` is shared with the pool (an Int32Array over it): at CONTROL_RUNS
 * the worker counts its runs under way (from the run message to ONNX Runtime's answer) and its load's calls
 * into ONNX Runtime (a session's creation, a warm-up run), at CONTROL_STOP the pool sets 1 once it has given
 * up on the worker (a run or a replacement's load went past its limit). ONNX Runtime takes the whole process
 * down when its thread is terminated inside a run or a session's creation, so the pool terminates a given-up
 * worker only while CONTROL_RUNS is 0; otherwise the worker stops itself once that call returns.
 */
export interface WorkerInit {
  control: SharedArrayBuffer;
}

export const CONTROL_RUNS = 0;
export const CONTROL_STOP = 1;
export const CONTROL_LENGTH = 2;

export interface LoadMessage {
  type: 'load';
  device: InferenceDevice;
  cudaDeviceId: number;
  intraOpThreads: number;
  models: WorkerModel[];
}

export interface RunMessage {
  type: 'run';
  id: number;
  key: string;
  feeds: Record<string, Tensor>;
}

export type ToWorker = LoadMessage | RunMessage;

export interface LoadedModel {
  key: string;
  provider: ExecutionProviderName;
  fallbackReason?: string;
  warmupMs: number;
}

export type FromWorker =
  /** The worker begins to load this model (its session, then its warm-up): a load that hangs is named by it. */
  | { type: 'loading'; key: string }
  | { type: 'loaded'; models: LoadedModel[] }
  | { type: 'load-failed'; message: string }
  | {
      type: 'result';
      id: number;
      outputs: Record<string, Tensor>;
      computeMs: number;
      /** The run's large input buffers, moved back: nothing reads them any more. */
      returned?: ArrayBuffer[];
    }
  | { type: 'run-failed'; id: number; message: string };

/** Where a model's load is said to fail: its folder, name and version, as the registry's refusals name them. */
export function modelPlace(model: Pick<WorkerModel, 'key' | 'onnxPath'>): string {
  const at = model.key.lastIndexOf('@');
  return `${dirname(model.onnxPath)}: model ${model.key.slice(0, at)} version ${model.key.slice(at + 1)}`;
}
