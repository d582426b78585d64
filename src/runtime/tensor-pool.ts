import type { TensorDtype } from './model-registry/model-manifest.schema';
import { elementCount, Tensor, TYPED_ARRAYS, zeros } from './tensor';

/** Below this a buffer is cloned to a worker, not moved, and not worth keeping (worker-pool's MOVE_FROM_BYTES). */
export const POOLED_FROM_BYTES = 64 * 1024;

/**
 * The buffer size a request of `bytes` is served from: rounded up to one of eight steps per power of
 * two (at most 12.5% more), so that batches of nearby sizes share buffers.
 */
export function sizeClass(bytes: number): number {
  if (bytes < POOLED_FROM_BYTES) return bytes;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

/**
 * Input buffers used again. A large input (a fraud batch's 31,000 occlusion rows are 3.8 MB, an image
 * batch several MB) used to be written into fresh memory and copied to the inference worker, into
 * fresh memory again; on a small VM the page faults of fresh memory cost more than the copy. A tensor
 * from here is given to the engine (`infer(..., { give: true })`), moved to the worker without a
 * copy, and moved back with the result to serve the next request: about 2.4 ms less per 3.8 MB run
 * on the 2-core VM (bench/finance's batch). Bounded: at most `perSize` buffers of one size class and
 * `maxBytes` in all; past that a buffer given back is left to the garbage collector.
 */
export class TensorPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private heldBytes = 0;

  constructor(
    private readonly maxBytes = 64 * 1024 * 1024,
    private readonly perSize = 4,
  ) {}

  /** Bytes held for reuse now. */
  get held(): number {
    return this.heldBytes;
  }

  /** A zero-filled tensor; when large, its buffer may be one used before (the view covers `dims` exactly). */
  allocate(dtype: TensorDtype, dims: number[]): Tensor {
    const length = elementCount(dims);
    const View = TYPED_ARRAYS[dtype];
    const bytes = length * View.BYTES_PER_ELEMENT;
    if (bytes < POOLED_FROM_BYTES) return zeros(dtype, dims);
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    for (let reused = list?.pop(); reused; reused = list?.pop()) {
      this.heldBytes -= size;
      // Moved to a worker since it came back (byteLength 0 once detached): of no use any more, dropped.
      if (reused.byteLength !== size) continue;
      new Uint8Array(reused, 0, bytes).fill(0);
      return { dtype, dims, data: new View(reused, 0, length) };
    }
    return { dtype, dims, data: new View(new ArrayBuffer(size), 0, length) };
  }

  /**
   * Takes back a buffer nothing reads any more (a worker returns its inputs' buffers with the result). A
   * detached one (moved to a worker) has byteLength 0 and is ignored.
   */
  recycle(buffer: ArrayBuffer): void {
    const size = buffer.byteLength;
    // A buffer of another size (one cloned from a caller's own array) would rarely be asked for again.
    if (size < POOLED_FROM_BYTES || sizeClass(size) !== size) return;
    if (this.heldBytes + size > this.maxBytes) return;
    const list = this.free.get(size) ?? [];
    if (list.length >= this.perSize || list.includes(buffer)) return;
    list.push(buffer);
    this.free.set(size, list);
    this.heldBytes += size;
  }
}
