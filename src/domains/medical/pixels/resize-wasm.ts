import { RESIZE_KERNEL_WASM } from './resize-kernel.wasm';

/**
 * The letterbox's two-pass resize run by the WebAssembly SIMD kernel in resize-kernel.wat: the same
 * doubles as pixel-pipeline.util.ts's JavaScript loops (checked bit for bit by the unit tests), in about
 * a third of the time for an ultrasound frame. Where WebAssembly SIMD is missing, or an axis keeps its
 * size, the caller runs the JavaScript version.
 */

/** Per output index: the first input read, and `taps` weights (see pixel-pipeline.util.ts, AxisFilter). */
export interface ResizeAxis {
  first: Int32Array;
  weights: Float64Array;
  taps: number;
}

/** The whole input image: 8-bit interleaved RGB (luma taken with `luma`'s weights) or grey values. */
export type ResizeSource =
  | { kind: 'rgb8'; values: Uint8Array; luma: readonly [number, number, number] }
  | { kind: 'gray'; values: Float32Array };

/** The part of the WebAssembly API used here (TypeScript declares it only with the DOM libraries). */
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: object };
};

interface Kernel {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  pairRgb8(a: number, b: number, w: number, pair: number, lr: number, lg: number, lb: number): void;
  pairF32(a: number, b: number, w: number, pair: number): void;
  horizontal(pair: number, first: number, weights: number, taps: number, ow: number, outA: number, outB: number): void;
  vertical(
    tmp: number,
    ow: number,
    oh: number,
    first: number,
    weights: number,
    taps: number,
    out: number,
    mean: number,
    std: number,
    plain: number,
  ): void;
}

let kernel: Kernel | null | undefined;
let enabled = true;

function loadKernel(): Kernel | null {
  if (kernel === undefined) {
    try {
      const module = new WebAssembly.Module(Buffer.from(RESIZE_KERNEL_WASM, 'base64'));
      kernel = new WebAssembly.Instance(module).exports as unknown as Kernel;
    } catch {
      kernel = null; // no WebAssembly SIMD here: the JavaScript resize serves
    }
  }
  return kernel;
}

/** Whether the WebAssembly resize serves (tests switch it off to compare with the JavaScript one). */
export function useWasmResize(on: boolean): void {
  enabled = on;
}

export function wasmResizeAvailable(): boolean {
  return loadKernel() !== null;
}

const align = (n: number): number => (n + 15) & ~15;

/**
 * The most memory the kernel takes for one frame (a 1024x768 RGB ultrasound frame needs about 3 MiB).
 * WebAssembly memory never shrinks, so a larger frame is resized by the JavaScript loops instead of leaving
 * the process holding its size for good.
 */
export const WASM_RESIZE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Resizes `source` (w x h) to ow x oh with the two filters and writes row y of the result, as
 * `(v - mean) / std` (1 and 0: as it is), at `dst[y * dstStride]`. False, with nothing written, when
 * the kernel does not serve this case (no SIMD, an axis that keeps its size, more than `maxBytes` of
 * memory needed); the caller then runs the JavaScript resize.
 */
export function resizeWithWasm(
  source: ResizeSource,
  w: number,
  h: number,
  horizontal: ResizeAxis,
  vertical: ResizeAxis,
  ow: number,
  oh: number,
  dst: Float32Array,
  dstStride: number,
  mean: number,
  std: number,
  maxBytes = WASM_RESIZE_MAX_BYTES,
): boolean {
  const k = enabled && ow !== w && oh !== h ? loadKernel() : null;
  if (!k) return false;
  const sourceBytes = source.kind === 'rgb8' ? w * h * 3 : w * h * 4;
  const src = 0;
  const pair = align(src + sourceBytes);
  const hFirst = align(pair + w * 16);
  const hWeights = align(hFirst + ow * 4);
  const vFirst = align(hWeights + ow * horizontal.taps * 8);
  const vWeights = align(vFirst + oh * 4);
  const tmp = align(vWeights + oh * vertical.taps * 8);
  // One float32 of slack after tmp and out: the vertical pass reads and writes two columns at a time.
  const out = align(tmp + (ow * h + 2) * 4);
  const end = out + (ow * oh + 2) * 4;
  if (end > maxBytes) return false;
  const have = k.memory.buffer.byteLength;
  if (have < end) k.memory.grow(Math.ceil((end - have) / 65536));
  const memory = k.memory.buffer;
  if (source.kind === 'rgb8') new Uint8Array(memory, src, sourceBytes).set(source.values.subarray(0, sourceBytes));
  else new Float32Array(memory, src, w * h).set(source.values.subarray(0, w * h));
  new Int32Array(memory, hFirst, ow).set(horizontal.first);
  new Float64Array(memory, hWeights, ow * horizontal.taps).set(horizontal.weights);
  new Int32Array(memory, vFirst, oh).set(vertical.first);
  new Float64Array(memory, vWeights, oh * vertical.taps).set(vertical.weights);

  const rowBytes = source.kind === 'rgb8' ? w * 3 : w * 4;
  for (let y = 0; y < h; y += 2) {
    // An odd last row pairs with itself; both lanes then write the same value to the same place.
    const yb = y + 1 < h ? y + 1 : y;
    if (source.kind === 'rgb8') {
      const [lr, lg, lb] = source.luma;
      k.pairRgb8(src + y * rowBytes, src + yb * rowBytes, w, pair, lr, lg, lb);
    } else {
      k.pairF32(src + y * rowBytes, src + yb * rowBytes, w, pair);
    }
    k.horizontal(pair, hFirst, hWeights, horizontal.taps, ow, tmp + y * ow * 4, tmp + yb * ow * 4);
  }
  const plain = mean === 0 && std === 1;
  k.vertical(tmp, ow, oh, vFirst, vWeights, vertical.taps, out, mean, std, plain ? 1 : 0);
  const result = new Float32Array(memory, out, ow * oh);
  for (let y = 0; y < oh; y++) dst.set(result.subarray(y * ow, y * ow + ow), y * dstStride);
  return true;
}
