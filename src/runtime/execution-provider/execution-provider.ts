import type { InferenceDevice } from '../../config/app-config';

export type ExecutionProviderName = 'cuda' | 'cpu';

export interface ProviderChoice<S> {
  session: S;
  provider: ExecutionProviderName;
  /** Why `auto` fell back to the CPU, when it did. */
  fallbackReason?: string;
}

export class ExecutionProviderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExecutionProviderError';
  }
}

export const CUDA_INSTALL_HINT =
  'install the CUDA execution provider with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` on a host with CUDA 12 and cuDNN 9, or set INFERENCE_DEVICE=auto or cpu';

/**
 * Creates a session on the provider the configuration asks for: `cpu` on the CPU; `cuda` on CUDA or
 * a startup error; `auto` on CUDA when it starts, else on the CPU with the reason kept for reporting.
 */
export async function createOnProvider<S>(
  device: InferenceDevice,
  create: (provider: ExecutionProviderName) => Promise<S>,
): Promise<ProviderChoice<S>> {
  if (device === 'cpu') return { session: await create('cpu'), provider: 'cpu' };
  try {
    return { session: await create('cuda'), provider: 'cuda' };
  } catch (error) {
    const reason = firstLine(error);
    if (device === 'cuda') {
      throw new ExecutionProviderError(
        `INFERENCE_DEVICE=cuda but the CUDA execution provider could not start (${reason}); ${CUDA_INSTALL_HINT}`,
      );
    }
    return { session: await create('cpu'), provider: 'cpu', fallbackReason: `CUDA unavailable: ${reason}` };
  }
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0].slice(0, 300);
}
