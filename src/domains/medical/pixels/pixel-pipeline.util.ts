/**
 * Stored DICOM pixel values -> the model's input grid, with no Nest and no DICOM library: the caller decodes
 * Pixel Data and hands over numbers. The resize reproduces PIL's `Image.resize(..., BILINEAR)` because the
 * model was trained on images letterboxed that way (training/medical/train_breast_us_lesion.py, `letterbox`).
 */
import { ResizeSource, resizeWithWasm } from './resize-wasm';

/** One decoded frame: values are already sign-extended / masked to Bits Stored by the caller. */
export interface StoredFrame {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  photometric: string;
  /** 0: interleaved (RGBRGB...), 1: planar (RRR...GGG...BBB...). */
  planarConfiguration: number;
  values: ArrayLike<number>;
}

export type VoiFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

export interface VoiWindow {
  center: number;
  width: number;
}

export interface FrameTo01Options {
  slope?: number;
  intercept?: number;
  windowCenter?: number;
  windowWidth?: number;
  /** VOI LUT Function (0028,1056); absent or unknown means LINEAR, the DICOM default. */
  voiFunction?: string;
  bitsStored: number;
  isSigned: boolean;
}

export interface LetterboxTarget {
  width: number;
  height: number;
  /** On the 0-1 scale of the input. */
  padValue: number;
}

export interface Letterboxed {
  data: Float32Array;
  /** Model grid = original * scale (top-left aligned), so original = model / scale. */
  scale: number;
  resizedWidth: number;
  resizedHeight: number;
}

/** The frame's colour model is one the pipeline does not convert; the caller maps it to a 4xx. */
export class UnsupportedPhotometricError extends Error {
  constructor(
    readonly photometric: string,
    detail = 'supported: MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422',
  ) {
    super(`photometric interpretation "${photometric}" is not supported (${detail})`);
    this.name = 'UnsupportedPhotometricError';
  }
}

/**
 * The frame's pre-processed values are not all finite (a modality LUT or window out of float32 range): the model
 * must not run on it, as it would answer NaN and, read as probabilities, no lesion. The caller maps it to a 4xx.
 */
export class NonFinitePixelsError extends Error {
  constructor(
    readonly index: number,
    readonly value: number,
  ) {
    super(`the pre-processed frame holds ${value} at value ${index} of the model grid`);
    this.name = 'NonFinitePixelsError';
  }
}

/** Rescale Slope / Intercept (PS3.3 C.11.1). A missing, non-finite or zero slope means 1. */
export function applyModalityLut(values: ArrayLike<number>, slope = 1, intercept = 0): Float32Array {
  const m = Number.isFinite(slope) && slope !== 0 ? slope : 1;
  const b = Number.isFinite(intercept) ? intercept : 0;
  const out = new Float32Array(values.length);
  for (let i = 0; i < out.length; i++) out[i] = values[i] * m + b;
  return out;
}

/** Whether a window can be applied as given: PS3.3 C.11.2.1.2 requires width >= 1 for LINEAR, > 0 otherwise. */
export function isUsableWindow(center: number, width: number, fn: VoiFunction): boolean {
  if (!Number.isFinite(center) || !Number.isFinite(width)) return false;
  return fn === 'LINEAR' ? width >= 1 : width > 0;
}

/**
 * The window used when the image carries no usable one: the LINEAR window whose ends are exactly the
 * min and max modality values (c - 0.5 -/+ (w - 1) / 2 = min / max), so min -> 0 and max -> 1; for an
 * 8-bit image spanning 0..255 that is pixel / 255, the training scaling. A flat image gets width 1.
 */
export function fallbackWindow(values: ArrayLike<number>): VoiWindow {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!(min <= max)) return { center: 0.5, width: 1 };
  return { center: (min + max + 1) / 2, width: max - min + 1 };
}

/** VOI window to [0, 1] (PS3.3 C.11.2.1.2 / C.11.2.1.3.1); an unusable window falls back to {@link fallbackWindow}. */
export function applyVoiWindow(
  values: ArrayLike<number>,
  center: number,
  width: number,
  fn: VoiFunction,
): Float32Array {
  let f = fn;
  let c = center;
  let w = width;
  if (!isUsableWindow(c, w, f)) {
    ({ center: c, width: w } = fallbackWindow(values));
    f = 'LINEAR';
  }
  const out = new Float32Array(values.length);
  const n = out.length;
  switch (f) {
    case 'LINEAR': {
      const lo = c - 0.5 - (w - 1) / 2;
      const hi = c - 0.5 + (w - 1) / 2;
      for (let i = 0; i < n; i++) {
        const x = values[i];
        out[i] = x <= lo ? 0 : x > hi ? 1 : (x - (c - 0.5)) / (w - 1) + 0.5;
      }
      break;
    }
    case 'LINEAR_EXACT': {
      const lo = c - w / 2;
      const hi = c + w / 2;
      for (let i = 0; i < n; i++) {
        const x = values[i];
        out[i] = x <= lo ? 0 : x > hi ? 1 : (x - c) / w + 0.5;
      }
      break;
    }
    case 'SIGMOID':
      for (let i = 0; i < n; i++) out[i] = 1 / (1 + Math.exp((-4 * (values[i] - c)) / w));
      break;
  }
  return out;
}

/** MONOCHROME1 shows low values bright; the model was trained on MONOCHROME2-like images. In place. */
export function invertMonochrome1(values01: Float32Array): Float32Array {
  for (let i = 0; i < values01.length; i++) values01[i] = 1 - values01[i];
  return values01;
}

/**
 * One sample per pixel in the frame's own value scale. RGB uses PIL `convert("L")` weights (ITU-R 601
 * luma, what training did); YBR_FULL's Y is that same luma, so it is taken as is.
 */
export function toGrayscale(frame: StoredFrame): Float32Array {
  const photometric = frame.photometric.trim().toUpperCase();
  const n = pixelCount(frame);
  const v = frame.values;
  const out = new Float32Array(n);
  switch (photometric) {
    case 'MONOCHROME1':
    case 'MONOCHROME2':
      requireSamples(frame, 1, n);
      for (let i = 0; i < n; i++) out[i] = v[i];
      return out;
    case 'RGB':
      requireSamples(frame, 3, 3 * n);
      if (frame.planarConfiguration === 1) {
        for (let i = 0; i < n; i++) out[i] = 0.299 * v[i] + 0.587 * v[n + i] + 0.114 * v[2 * n + i];
      } else {
        for (let i = 0, j = 0; i < n; i++, j += 3) out[i] = 0.299 * v[j] + 0.587 * v[j + 1] + 0.114 * v[j + 2];
      }
      return out;
    case 'YBR_FULL_422':
      // Native 4:2:2 stores Y1 Y2 Cb Cr per pixel pair; a decompressed one (JPEG) arrives as full YBR.
      if (frame.samplesPerPixel === 3 && v.length < 3 * n) {
        requireLength(frame, 2 * n);
        for (let i = 0; i < n; i++) out[i] = v[(i >> 1) * 4 + (i & 1)];
        return out;
      }
      return yChannel(frame, n, out);
    case 'YBR_FULL':
      return yChannel(frame, n, out);
    default:
      throw new UnsupportedPhotometricError(photometric);
  }
}

/**
 * Stored frame -> [0, 1] per pixel (rows * columns). Greyscale: modality LUT, VOI window (the given one when
 * usable, else the min/max fallback), then MONOCHROME1 inversion. Colour (ultrasound RGB / YBR): luma divided by
 * the largest stored value, which for 8-bit data is the training's pixel / 255; no VOI applies to colour.
 */
export function frameTo01(frame: StoredFrame, opts: FrameTo01Options): Float32Array {
  const photometric = frame.photometric.trim().toUpperCase();
  if (isRgb8Interleaved(frame, opts)) {
    // The common ultrasound case, fused into one monomorphic pass (no intermediate grey image).
    const n = pixelCount(frame);
    requireSamples(frame, 3, 3 * n);
    return rgb8To01(frame.values, n);
  }
  if (photometric === 'MONOCHROME1' || photometric === 'MONOCHROME2') {
    const modality = applyModalityLut(toGrayscale(frame), opts.slope, opts.intercept);
    const fn = voiFunctionOf(opts.voiFunction);
    const window =
      opts.windowCenter !== undefined && opts.windowWidth !== undefined
        ? { center: opts.windowCenter, width: opts.windowWidth }
        : fallbackWindow(modality);
    const out = applyVoiWindow(modality, window.center, window.width, fn);
    return photometric === 'MONOCHROME1' ? invertMonochrome1(out) : out;
  }
  if (opts.isSigned) throw new UnsupportedPhotometricError(photometric, 'colour samples must be unsigned');
  if (!(opts.bitsStored >= 1 && opts.bitsStored <= 16)) throw new RangeError(`bits stored ${opts.bitsStored}`);
  const gray = toGrayscale(frame);
  const max = 2 ** opts.bitsStored - 1;
  for (let i = 0; i < gray.length; i++) {
    const x = gray[i] / max;
    gray[i] = x < 0 ? 0 : x > 1 ? 1 : x;
  }
  return gray;
}

function isRgb8Interleaved(frame: StoredFrame, opts: FrameTo01Options): frame is StoredFrame & { values: Uint8Array } {
  return (
    frame.photometric.trim().toUpperCase() === 'RGB' &&
    frame.planarConfiguration !== 1 &&
    frame.values instanceof Uint8Array &&
    opts.bitsStored === 8 &&
    !opts.isSigned
  );
}

const LUMA_R = 0.299 / 255;
const LUMA_G = 0.587 / 255;
const LUMA_B = 0.114 / 255;
const LUMA = [LUMA_R, LUMA_G, LUMA_B] as const;

function rgb8To01(v: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  rgb8RowTo01(v, 0, n, out);
  return out;
}

/** `n` pixels of interleaved 8-bit RGB from byte `from` -> PIL luma on [0, 1], into `out`. */
function rgb8RowTo01(v: Uint8Array, from: number, n: number, out: Float32Array): void {
  for (let i = 0, j = from; i < n; i++, j += 3) out[i] = LUMA_R * v[j] + LUMA_G * v[j + 1] + LUMA_B * v[j + 2];
}

/** `(x - mean) / std` applied as the letterbox writes, as {@link normalise} would afterwards. */
export interface Normalisation {
  mean: number;
  std: number;
}

/**
 * Letterbox like the training script: scale = min(targetW / w, targetH / h), size rounded half-to-even
 * (Python's `round`), PIL-compatible bilinear resize, image at the top-left, the rest padValue. With
 * `normalisation`, every value written (padding included) is normalised on the way, bit for bit what
 * {@link normalise} gives on the result.
 */
export function letterbox(
  gray01: Float32Array,
  width: number,
  height: number,
  target: LetterboxTarget,
  /** Where to write the target grid (e.g. one image of a batch tensor); a new array when absent. */
  into?: Float32Array,
  normalisation?: Normalisation,
): Letterboxed {
  if (!(width >= 1 && height >= 1) || gray01.length < width * height) {
    throw new RangeError(`letterbox: ${gray01.length} values do not fill a ${width}x${height} image`);
  }
  return letterboxRows(
    (y) => gray01.subarray(y * width, y * width + width),
    width,
    height,
    target,
    into,
    normalisation,
    { kind: 'gray', values: gray01 },
  );
}

/**
 * Stored frame -> letterboxed, normalised model grid in one go: {@link frameTo01}, then {@link letterbox}
 * with `normalisation`, with the same result. The common ultrasound case (8-bit interleaved RGB) never
 * builds the full-size grey image: each row's luma is computed just before the resize reads it, which
 * spares a 4-byte-per-pixel array per frame and a pass over it.
 */
export function letterboxFrame(
  frame: StoredFrame,
  opts: FrameTo01Options,
  target: LetterboxTarget,
  into?: Float32Array,
  normalisation?: Normalisation,
): Letterboxed {
  if (isRgb8Interleaved(frame, opts)) {
    const n = pixelCount(frame);
    const w = frame.columns;
    const h = frame.rows;
    requireSamples(frame, 3, 3 * n);
    const v = frame.values;
    const rowAt = (y: number, row: Float32Array): Float32Array => {
      rgb8RowTo01(v, y * w * 3, w, row);
      return row;
    };
    return letterboxRows(rowAt, w, h, target, into, normalisation, { kind: 'rgb8', values: v, luma: LUMA });
  }
  return requireFinite(letterbox(frameTo01(frame, opts), frame.columns, frame.rows, target, into, normalisation));
}

/** The safety net under the parser's modality LUT check: greyscale values pass a LUT and a window, colour none. */
function requireFinite(result: Letterboxed): Letterboxed {
  const data = result.data;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new NonFinitePixelsError(i, data[i]);
  }
  return result;
}

function letterboxRows(
  rowAt: RowSource,
  width: number,
  height: number,
  target: LetterboxTarget,
  into: Float32Array | undefined,
  normalisation: Normalisation | undefined,
  /** The whole image, for the WebAssembly resize; rowAt gives the same rows to the JavaScript one. */
  whole: ResizeSource,
): Letterboxed {
  const scale = Math.min(target.width / width, target.height / height);
  const resizedWidth = Math.min(target.width, Math.max(1, roundHalfEven(width * scale)));
  const resizedHeight = Math.min(target.height, Math.max(1, roundHalfEven(height * scale)));
  const data = into ?? new Float32Array(target.width * target.height);
  if (data.length !== target.width * target.height) throw new RangeError('letterbox: output is not the target size');
  const mean = normalisation ? normalisation.mean : 0;
  const std = normalisation ? positiveStd(normalisation.std) : 1;
  const pad = normalisation ? (Math.fround(target.padValue) - mean) / std : target.padValue;
  if (into || pad !== 0) data.fill(pad);
  // The kernel declines (and the JavaScript loops run) where an axis keeps its size, among other cases.
  const inWasm = resizeWithWasm(
    whole,
    width,
    height,
    axisFilter(width, resizedWidth),
    axisFilter(height, resizedHeight),
    resizedWidth,
    resizedHeight,
    data,
    target.width,
    mean,
    std,
  );
  if (!inWasm) resizeBilinearInto(rowAt, width, height, data, resizedWidth, resizedHeight, target.width, mean, std);
  return { data, scale, resizedWidth, resizedHeight };
}

/** `std` when it is a usable divisor; a RangeError otherwise. */
function positiveStd(std: number): number {
  if (!(std > 0)) throw new RangeError(`normalise: std must be > 0, got ${std}`);
  return std;
}

/** ((x - mean) / std), in place. */
export function normalise(data: Float32Array, mean: number, std: number): Float32Array {
  positiveStd(std);
  for (let i = 0; i < data.length; i++) data[i] = (data[i] - mean) / std;
  return data;
}

/** Python 3 `round()` on a double: ties go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

interface AxisFilter {
  /**
   * Per output index: the first input index read. Every output reads `taps` inputs from there; where the
   * filter has fewer taps (at the edges, or where the support covers fewer pixels) the extra weights are 0.
   */
  first: Int32Array;
  /** `taps` weights per output index. */
  weights: Float64Array;
  taps: number;
}

/**
 * Input row y on the 0-1 scale, as an array of the row's values: either a view of a whole image, or
 * `row` (a scratch buffer at least as long as a row) filled with them.
 */
type RowSource = (y: number, row: Float32Array) => Float32Array;

/**
 * PIL's `precompute_coeffs` (Resample.c) for the triangle filter: when shrinking, the support widens with the
 * scale factor, so every input pixel contributes (antialiased); when enlarging it is plain bilinear.
 */
const filterCache = new Map<string, AxisFilter>();

/** Filters depend only on the two sizes, and a PACS sends few distinct sizes: keep the last few dozen. */
function axisFilter(inSize: number, outSize: number): AxisFilter {
  const key = `${inSize}:${outSize}`;
  let filter = filterCache.get(key);
  if (!filter) {
    if (filterCache.size >= 64) filterCache.clear();
    filter = computeAxisFilter(inSize, outSize);
    filterCache.set(key, filter);
  }
  return filter;
}

/** Scratch buffers, reused between calls (the resize is synchronous): the horizontal pass's output and one input row. */
let scratch = new Float32Array(0);
let rowScratch = new Float32Array(0);

function computeAxisFilter(inSize: number, outSize: number): AxisFilter {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // triangle support 1
  const ksize = Math.ceil(support) * 2 + 1;
  const xmins = new Int32Array(outSize);
  const counts = new Int32Array(outSize);
  const pil = new Float64Array(outSize * ksize);
  const inv = 1 / filterScale;
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    // C casts truncate toward zero; the clamp makes the sign irrelevant.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let k = 0; k < xmax; k++) {
      const t = Math.abs((k + xmin - center + 0.5) * inv);
      const w = t < 1 ? 1 - t : 0;
      pil[o * ksize + k] = w;
      total += w;
    }
    if (total !== 0) for (let k = 0; k < xmax; k++) pil[o * ksize + k] /= total;
    xmins[o] = xmin;
    counts[o] = Math.max(0, xmax);
  }
  // One tap count for every output (the widest), so the resize loops run a fixed count: an output with fewer
  // taps reads its neighbours with weight 0, starting earlier where its own taps end at the image's edge. A
  // sum that adds 0 * v (v finite) before or after its own terms is the same double, so the result is PIL's.
  const taps = Math.max(1, ...counts);
  const first = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  for (let o = 0; o < outSize; o++) {
    first[o] = Math.max(0, Math.min(xmins[o], inSize - taps));
    const shift = xmins[o] - first[o];
    for (let k = 0; k < counts[o]; k++) weights[o * taps + shift + k] = pil[o * ksize + k];
  }
  return { first, weights, taps };
}

/**
 * Horizontal pass then vertical pass, as PIL does; an axis whose size does not change is copied. Values
 * are written as `(v - mean) / std` (1 and 0 leave them as they are). Each output is a sum over a fixed
 * number of taps in input order, four at a time, with no per-output accumulator array: 5-10% faster than a
 * loop over each output's own taps, with the same doubles.
 */
function resizeBilinearInto(
  rowAt: RowSource,
  w: number,
  h: number,
  dst: Float32Array,
  ow: number,
  oh: number,
  dstStride: number,
  mean: number,
  std: number,
): void {
  if (scratch.length < ow * h) scratch = new Float32Array(ow * h);
  if (rowScratch.length < w) rowScratch = new Float32Array(w);
  const tmp = scratch;
  if (ow !== w) {
    const { first, weights, taps } = axisFilter(w, ow);
    for (let y = 0; y < h; y++) {
      const src = rowAt(y, rowScratch);
      const out = y * ow;
      for (let x = 0, kb = 0; x < ow; x++, kb += taps) {
        const base = first[x];
        let s = 0;
        let k = 0;
        for (; k + 4 <= taps; k += 4) {
          s += src[base + k] * weights[kb + k];
          s += src[base + k + 1] * weights[kb + k + 1];
          s += src[base + k + 2] * weights[kb + k + 2];
          s += src[base + k + 3] * weights[kb + k + 3];
        }
        for (; k < taps; k++) s += src[base + k] * weights[kb + k];
        tmp[out + x] = s;
      }
    }
  } else {
    for (let y = 0; y < h; y++) tmp.set(rowAt(y, rowScratch), y * w);
  }
  const plain = mean === 0 && std === 1;
  if (oh === h) {
    for (let y = 0; y < oh; y++) {
      const o = y * dstStride;
      const t = y * ow;
      if (plain) dst.set(tmp.subarray(t, t + ow), o);
      else for (let x = 0; x < ow; x++) dst[o + x] = (tmp[t + x] - mean) / std;
    }
    return;
  }
  const { first, weights, taps } = axisFilter(h, oh);
  for (let y = 0; y < oh; y++) {
    const kb = y * taps;
    const row0 = first[y] * ow;
    const o = y * dstStride;
    for (let x = 0; x < ow; x++) {
      let s = 0;
      let k = 0;
      let r = row0 + x;
      for (; k + 4 <= taps; k += 4, r += 4 * ow) {
        s += tmp[r] * weights[kb + k];
        s += tmp[r + ow] * weights[kb + k + 1];
        s += tmp[r + 2 * ow] * weights[kb + k + 2];
        s += tmp[r + 3 * ow] * weights[kb + k + 3];
      }
      for (; k < taps; k++, r += ow) s += tmp[r] * weights[kb + k];
      dst[o + x] = plain ? s : (Math.fround(s) - mean) / std;
    }
  }
}

function yChannel(frame: StoredFrame, n: number, out: Float32Array): Float32Array {
  requireSamples(frame, 3, 3 * n);
  const v = frame.values;
  if (frame.planarConfiguration === 1) {
    for (let i = 0; i < n; i++) out[i] = v[i];
  } else {
    for (let i = 0; i < n; i++) out[i] = v[3 * i];
  }
  return out;
}

function voiFunctionOf(value: string | undefined): VoiFunction {
  const v = value?.trim().toUpperCase();
  return v === 'LINEAR_EXACT' || v === 'SIGMOID' ? v : 'LINEAR';
}

function pixelCount(frame: StoredFrame): number {
  if (!(Number.isInteger(frame.rows) && Number.isInteger(frame.columns) && frame.rows > 0 && frame.columns > 0)) {
    throw new RangeError(`frame size ${frame.rows}x${frame.columns} is not a positive integer size`);
  }
  return frame.rows * frame.columns;
}

function requireSamples(frame: StoredFrame, samples: number, length: number): void {
  if (frame.samplesPerPixel !== samples) {
    throw new RangeError(`${frame.photometric} needs ${samples} samples per pixel, got ${frame.samplesPerPixel}`);
  }
  requireLength(frame, length);
}

function requireLength(frame: StoredFrame, length: number): void {
  if (frame.values.length < length) {
    throw new RangeError(`frame has ${frame.values.length} values, ${length} needed`);
  }
}
