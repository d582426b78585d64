import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  applyModalityLut,
  applyVoiWindow,
  fallbackWindow,
  frameTo01,
  invertMonochrome1,
  letterbox,
  letterboxFrame,
  NonFinitePixelsError,
  normalise,
  roundHalfEven,
  StoredFrame,
  toGrayscale,
  UnsupportedPhotometricError,
} from '../../src/domains/medical/pixels/pixel-pipeline.util';
import { RESIZE_KERNEL_WASM } from '../../src/domains/medical/pixels/resize-kernel.wasm';
import {
  resizeWithWasm,
  useWasmResize,
  WASM_RESIZE_MAX_BYTES,
  wasmResizeAvailable,
} from '../../src/domains/medical/pixels/resize-wasm';
import { seededRandom } from '../fixtures/random';
import { assembleKernel, KERNEL_TS, kernelModuleSource } from '../tools/resize-kernel.build';

function assertClose(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `[${i}] ${actual[i]} vs ${expected[i]}`);
  }
}

/** The deterministic test image the PIL reference values were computed from, scaled to 0-1. */
function pattern(w: number, h: number): Float32Array {
  const a = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) a[y * w + x] = ((x * 37 + y * 91 + ((x * y) % 13) * 11) % 256) / 255;
  }
  return a;
}

function frame(photometric: string, rows: number, columns: number, values: number[], extra = {}): StoredFrame {
  const samplesPerPixel = photometric.startsWith('MONOCHROME') ? 1 : 3;
  return { rows, columns, samplesPerPixel, photometric, planarConfiguration: 0, values, ...extra };
}

const BITS8 = { bitsStored: 8, isSigned: false };

describe('medical pixels: modality and VOI', () => {
  it('applies rescale slope and intercept, with 1 / 0 as defaults', () => {
    assertClose(applyModalityLut([0, 100, -5], 2, -1024), [-1024, -824, -1034]);
    assertClose(applyModalityLut(Int16Array.from([-3, 7])), [-3, 7]);
  });

  it('LINEAR follows PS3.3 C.11.2.1.2 (center - 0.5, width - 1): c 128 w 256 is exactly x / 255', () => {
    assertClose(applyVoiWindow([0, 51, 255], 128, 256, 'LINEAR'), [0, 0.2, 1]);
    // c 40 w 400: the ramp runs over (-160, 239]
    assertClose(applyVoiWindow([-160, -159, 40, 238, 239], 40, 400, 'LINEAR'), [0, 1 / 399, 0.5012531, 0.9974937, 1]);
  });

  it('LINEAR_EXACT and SIGMOID hit their defined points', () => {
    assertClose(applyVoiWindow([0, 100, 150, 200, 201], 100, 200, 'LINEAR_EXACT'), [0, 0.5, 0.75, 1, 1]);
    // y = 1 / (1 + exp(-4 (x - c) / w)): 0.5 at c, 1 / (1 + e^-1) at c + w / 4
    assertClose(applyVoiWindow([100, 112.5, 87.5], 100, 50, 'SIGMOID'), [0.5, 0.7310586, 0.2689414]);
  });

  it('falls back to the min/max window when the given one is unusable', () => {
    assert.deepEqual(fallbackWindow([30, 10, 20]), { center: 20.5, width: 21 });
    assert.deepEqual(fallbackWindow([7, 7]), { center: 7.5, width: 1 });
    assertClose(applyVoiWindow([10, 20, 30], 20, 0.5, 'LINEAR'), [0, 0.5, 1]);
    assertClose(applyVoiWindow([10, 20, 30], 20, 0, 'SIGMOID'), [0, 0.5, 1]);
    assertClose(applyVoiWindow([7, 7], NaN, NaN, 'LINEAR'), [0, 0]);
  });

  it('inverts MONOCHROME1 in place', () => {
    const v = Float32Array.from([0, 0.25, 1]);
    assert.equal(invertMonochrome1(v), v);
    assertClose(v, [1, 0.75, 0]);
  });

  it('frameTo01: modality LUT, then the given window, then MONOCHROME1 inversion', () => {
    const ct = frame('MONOCHROME2', 1, 3, [24, 1024, 2024]);
    const opts = { ...BITS8, bitsStored: 12, intercept: -1024, windowCenter: 0, windowWidth: 2000 };
    assertClose(frameTo01(ct, { ...opts, voiFunction: 'LINEAR_EXACT' }), [0, 0.5, 1]);
    assertClose(
      frameTo01(frame('MONOCHROME1', 1, 2, [0, 255]), { ...BITS8, windowCenter: 128, windowWidth: 256 }),
      [1, 0],
    );
    // no window in the file: min/max of the modality values
    assertClose(frameTo01(frame('MONOCHROME2 ', 1, 3, [50, 100, 150]), BITS8), [0, 0.5, 1]);
  });
});

describe('medical pixels: colour to grayscale', () => {
  const rgb = [200, 100, 50, 10, 250, 30, 255, 255, 255, 0, 0, 255];
  // PIL convert("L") of those four colours
  const pilL = [124, 153, 255, 29];

  it('RGB interleaved and planar give PIL convert("L") luma', () => {
    assertClose(toGrayscale(frame('RGB', 2, 2, rgb)), pilL, 0.5);
    const planar = [0, 1, 2].flatMap((c) => [0, 1, 2, 3].map((p) => rgb[p * 3 + c]));
    assertClose(toGrayscale(frame('RGB', 2, 2, planar, { planarConfiguration: 1 })), pilL, 0.5);
    assertClose(frameTo01(frame('RGB', 2, 2, rgb), BITS8), [124.2 / 255, 153.16 / 255, 1, 29.07 / 255]);
  });

  it('the fused 8-bit RGB path gives what the general path gives', () => {
    const rgb = Array.from({ length: 3 * 40 }, (_, i) => (i * 37) % 256);
    const general = frameTo01({ ...frame('RGB', 5, 8, []), values: Uint16Array.from(rgb) }, BITS8);
    const fused = frameTo01({ ...frame('RGB', 5, 8, []), values: Uint8Array.from(rgb) }, BITS8);
    assertClose(fused, Array.from(general));
  });

  it('letterboxes into a caller buffer (one image of a batch), overwriting what was there', () => {
    const src = Float32Array.from({ length: 40 * 30 }, (_, i) => (i % 17) / 16);
    const target = { width: 16, height: 16, padValue: 0 };
    const batch = new Float32Array(2 * 256).fill(7);
    const boxed = letterbox(src, 40, 30, target, batch.subarray(256));
    assertClose(batch.subarray(256), Array.from(letterbox(src, 40, 30, target).data));
    assert.equal(boxed.scale, 0.4);
    assert.ok(
      batch.subarray(0, 256).every((v) => v === 7),
      'the other image is untouched',
    );
  });

  it('YBR_FULL and YBR_FULL_422 take the Y channel in every layout', () => {
    assertClose(toGrayscale(frame('YBR_FULL', 1, 2, [90, 1, 2, 180, 3, 4])), [90, 180]);
    assertClose(toGrayscale(frame('YBR_FULL', 1, 2, [90, 180, 1, 2, 3, 4], { planarConfiguration: 1 })), [90, 180]);
    // native 4:2:2: Y1 Y2 Cb Cr per pixel pair
    assertClose(toGrayscale(frame('YBR_FULL_422', 2, 2, [10, 20, 128, 128, 30, 40, 128, 128])), [10, 20, 30, 40]);
    // decompressed 4:2:2 arrives with three samples per pixel
    assertClose(toGrayscale(frame('YBR_FULL_422', 1, 2, [10, 128, 128, 20, 128, 128])), [10, 20]);
  });

  it('refuses other photometric interpretations by name', () => {
    const palette = frame('PALETTE COLOR', 1, 1, [3]);
    assert.throws(() => toGrayscale(palette), UnsupportedPhotometricError);
    assert.throws(() => frameTo01(palette, BITS8), /"PALETTE COLOR"/);
    assert.throws(() => toGrayscale(frame('YBR_PARTIAL_420', 1, 1, [1, 2, 3])), /YBR_PARTIAL_420/);
    assert.throws(() => frameTo01(frame('RGB', 1, 1, [1, 2, 3]), { bitsStored: 8, isSigned: true }), /"RGB".*unsigned/);
  });
});

describe('medical pixels: letterbox and normalisation (PIL reference)', () => {
  // Reference: PIL 9.4 Image.resize(BILINEAR) on mode "F" images of pattern(); mode "L" differs by < 1/255.
  it('downscales with PIL antialiased bilinear, top-left, padded, scale 0.4', () => {
    const r = letterbox(pattern(40, 30), 40, 30, { width: 16, height: 16, padValue: 0.25 });
    assert.deepEqual([r.scale, r.resizedWidth, r.resizedHeight, r.data.length], [0.4, 16, 12, 256]);
    const at = (x: number, y: number) => r.data[y * 16 + x];
    assertClose(
      [at(0, 0), at(1, 0), at(7, 0), at(15, 0), at(5, 3), at(8, 6), at(0, 11), at(15, 11)],
      [0.4372387, 0.5219608, 0.5736756, 0.53339, 0.4300737, 0.4940863, 0.5638956, 0.6407146],
    );
    assert.ok(r.data.subarray(12 * 16).every((v) => v === 0.25));
  });

  it('upscales with plain bilinear', () => {
    const r = letterbox(pattern(7, 5), 7, 5, { width: 16, height: 16, padValue: 0 });
    assert.deepEqual([r.resizedWidth, r.resizedHeight], [16, 11]);
    const at = (x: number, y: number) => r.data[y * 16 + x];
    assertClose([at(0, 0), at(1, 0), at(8, 5), at(15, 10), at(3, 7)], [0, 0.0226716, 0.4545343, 0.7647059, 0.4016823]);
    assert.equal(at(15, 11), 0);
  });

  it('matches PIL on a 640x480 and a 320x229 image to 256x256', () => {
    const a = letterbox(pattern(640, 480), 640, 480, { width: 256, height: 256, padValue: 0 });
    assert.deepEqual([a.scale, a.resizedWidth, a.resizedHeight], [0.4, 256, 192]);
    const atA = (x: number, y: number) => a.data[y * 256 + x];
    assertClose([atA(100, 50), atA(255, 191), atA(128, 96)], [0.5854996, 0.522152, 0.5467294]);
    const b = letterbox(pattern(320, 229), 320, 229, { width: 256, height: 256, padValue: 0 });
    assert.deepEqual([b.resizedWidth, b.resizedHeight], [256, 183]);
    const atB = (x: number, y: number) => b.data[y * 256 + x];
    assertClose([atB(0, 0), atB(200, 182), atB(77, 100)], [0.1285205, 0.384475, 0.6791717]);
  });

  it('rounds the resized size half to even, like Python round()', () => {
    assert.deepEqual(
      [roundHalfEven(2.5), roundHalfEven(3.5), roundHalfEven(192.5), roundHalfEven(4.2667)],
      [2, 4, 192, 4],
    );
    // 4x1 to 10x10: scale 2.5, height 2.5 -> 2 (Math.round would say 3)
    const r = letterbox(pattern(4, 1), 4, 1, { width: 10, height: 10, padValue: 0 });
    assert.deepEqual([r.resizedWidth, r.resizedHeight], [10, 2]);
    assertClose([r.data[13], r.data[19]], [0.1305882, 0.4352941]);
  });

  it('letterboxFrame gives, bit for bit, frameTo01 then letterbox then normalise', () => {
    const norm = { mean: 0.21, std: 0.27 };
    // Down- and upscaling, and a width that does not change (only the vertical pass runs).
    const sizes: Array<[number, number, number, number]> = [
      [41, 23, 16, 16],
      [5, 7, 16, 16],
      [16, 40, 16, 16],
    ];
    const frames = (rows: number, columns: number): StoredFrame[] => {
      const n = rows * columns;
      const rgb = Uint8Array.from({ length: 3 * n }, (_, i) => (i * 131 + ((i * i) % 29)) % 256);
      const grey = Uint16Array.from({ length: n }, (_, i) => (i * 977) % 4096);
      return [
        { ...frame('RGB', rows, columns, []), values: rgb },
        { ...frame('RGB', rows, columns, []), values: Uint16Array.from(rgb) },
        { ...frame('MONOCHROME1', rows, columns, []), values: grey },
      ];
    };
    for (const [columns, rows, width, height] of sizes) {
      for (const f of frames(rows, columns)) {
        const opts = f.photometric === 'RGB' ? BITS8 : { bitsStored: 12, isSigned: false };
        const target = { width, height, padValue: 0.3 };
        const expected = letterbox(frameTo01(f, opts), columns, rows, target);
        normalise(expected.data, norm.mean, norm.std);
        const into = new Float32Array(width * height).fill(9);
        const actual = letterboxFrame(f, opts, target, into, norm);
        assert.equal(actual.data, into);
        assert.equal(actual.scale, expected.scale);
        assert.deepEqual(Array.from(actual.data), Array.from(expected.data), `${f.photometric} ${columns}x${rows}`);
      }
    }
  });

  it('letterboxFrame refuses a frame whose pre-processed values are not all finite, rather than give NaN', () => {
    // Found in review: a RescaleSlope of 1e300 made the modality values Infinity, the fallback window NaN, and the
    // model answered no lesion. The parser refuses such a slope; this is the net under it.
    const grey = { ...frame('MONOCHROME2', 4, 4, []), values: Uint16Array.from({ length: 16 }, (_, i) => i * 100) };
    const target = { width: 8, height: 8, padValue: 0 };
    const opts = { bitsStored: 12, isSigned: false };
    assert.throws(() => letterboxFrame(grey, { ...opts, slope: 1e300 }, target), NonFinitePixelsError);
    assert.throws(() => letterboxFrame(grey, { ...opts, intercept: -1e300 }, target), /holds NaN at value 0/);
    const near = letterboxFrame(grey, { ...opts, slope: 1e34 }, target);
    assert.ok(near.data.every(Number.isFinite), 'within float32 the window still maps to 0..1');
  });

  it('letterboxFrame refuses an 8-bit RGB frame that is shorter than its size', () => {
    const short = { ...frame('RGB', 4, 4, []), values: new Uint8Array(3 * 15) };
    assert.throws(() => letterboxFrame(short, BITS8, { width: 8, height: 8, padValue: 0 }), RangeError);
  });

  it('normalises ((x - mean) / std) in place', () => {
    const v = Float32Array.from([0, 1]);
    assert.equal(normalise(v, 0.25, 0.5), v);
    assertClose(v, [-0.5, 1.5]);
    assert.throws(() => normalise(v, 0, 0), /std/);
  });
});

describe('medical pixels: the WebAssembly resize', () => {
  it('is assembled from resize-kernel.wat as committed (npm run wasm:build writes it)', async () => {
    const bytes = await assembleKernel();
    assert.equal(Buffer.from(RESIZE_KERNEL_WASM, 'base64').toString('hex'), bytes.toString('hex'));
    assert.equal(readFileSync(KERNEL_TS, 'utf8'), kernelModuleSource(bytes));
  });

  it('loads here (Node has WebAssembly SIMD), so the letterbox does not fall back to JavaScript unseen', () => {
    assert.equal(wasmResizeAvailable(), true);
  });

  it('gives, bit for bit, what the JavaScript resize gives, for RGB and grey, odd and even sizes, up and down', () => {
    const random = seededRandom(11);
    const sizes: Array<[number, number]> = [
      [640, 480],
      [320, 229],
      [37, 23],
      [23, 37],
      [1, 5],
      [5, 1],
      [255, 257],
      [300, 17],
      [129, 64],
      [7, 300],
    ];
    const targets = [
      { width: 256, height: 256, padValue: 0 },
      { width: 64, height: 48, padValue: 0.1 },
    ];
    let compared = 0;
    try {
      for (const [columns, rows] of sizes) {
        const rgb = Uint8Array.from({ length: 3 * columns * rows }, () => Math.floor(random() * 256));
        const rgbFrame = { ...frame('RGB', rows, columns, []), values: rgb };
        const grey = Float32Array.from({ length: columns * rows }, () => random() * 1.5 - 0.25);
        for (const target of targets) {
          for (const norm of [undefined, { mean: 0.265, std: 0.236 }]) {
            const runs = [
              (): Float32Array => letterboxFrame(rgbFrame, BITS8, target, undefined, norm).data,
              (): Float32Array => letterbox(grey, columns, rows, target, undefined, norm).data,
            ];
            for (const run of runs) {
              useWasmResize(false);
              const js = run();
              useWasmResize(true);
              const wasm = run();
              const label = `${columns}x${rows} -> ${target.width}x${target.height}${norm ? ' normalised' : ''}`;
              assert.ok(
                js.every((v, i) => Object.is(v, wasm[i])),
                label,
              );
              compared++;
            }
          }
        }
      }
    } finally {
      useWasmResize(true);
    }
    assert.equal(compared, sizes.length * targets.length * 2 * 2);
  });

  it('leaves a frame that needs more memory than its cap to the JavaScript resize, writing nothing', () => {
    // A 2:1 box filter on both axes of a 64x48 grey image (about 40 KB of kernel memory).
    const halve = (size: number) => ({
      first: Int32Array.from({ length: size }, (_, i) => 2 * i),
      weights: new Float64Array(2 * size).fill(0.5),
      taps: 2,
    });
    const source = { kind: 'gray' as const, values: new Float32Array(64 * 48).fill(0.75) };
    const dst = new Float32Array(32 * 24).fill(-1);
    assert.equal(resizeWithWasm(source, 64, 48, halve(32), halve(24), 32, 24, dst, 32, 0, 1, 4096), false);
    assert.ok(dst.every((v) => v === -1));
    assert.ok(WASM_RESIZE_MAX_BYTES >= 16 * 1024 * 1024);
    assert.equal(resizeWithWasm(source, 64, 48, halve(32), halve(24), 32, 24, dst, 32, 0, 1), true);
    assert.ok(dst.every((v) => v === 0.75));
  });
});
