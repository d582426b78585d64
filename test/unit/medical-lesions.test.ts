import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  calibrationFrom,
  cropToImage,
  findLesions,
  LesionComponent,
  physicalSize,
  toOriginalGrid,
} from '../../src/domains/medical/lesions/lesion-postprocess.util';

/** A width x height map with the given pixels set to their probabilities. */
function probMap(width: number, height: number, pixels: Array<[number, number, number]>): Float32Array {
  const p = new Float32Array(width * height);
  for (const [x, y, v] of pixels) p[y * width + x] = v;
  return p;
}

describe('medical lesions: components', () => {
  const diagonal = probMap(4, 4, [
    [0, 0, 0.9],
    [1, 1, 0.8],
  ]);

  it('joins a diagonal pair with 8-connectivity and splits it with 4', () => {
    const eight = findLesions(diagonal, 4, 4, { threshold: 0.5, minAreaPx: 0, connectivity: 8 });
    assert.deepEqual(
      eight.map((c) => [c.x0, c.y0, c.x1, c.y1, c.areaPx]),
      [[0, 0, 1, 1, 2]],
    );
    const four = findLesions(diagonal, 4, 4, { threshold: 0.5, minAreaPx: 0, connectivity: 4 });
    assert.deepEqual(
      four.map((c) => [c.x0, c.y0, c.areaPx]),
      [
        [0, 0, 1],
        [1, 1, 1],
      ],
    );
  });

  it('counts prob == threshold as lesion and drops components below minAreaPx', () => {
    const p = probMap(6, 3, [
      [0, 0, 0.6],
      [1, 0, 0.7],
      [1, 1, 0.65],
      [5, 2, 0.99],
      [3, 0, 0.59],
    ]);
    const kept = findLesions(p, 6, 3, { threshold: 0.6, minAreaPx: 2, connectivity: 8 });
    assert.equal(kept.length, 1);
    assert.deepEqual(kept[0], {
      x0: 0,
      y0: 0,
      x1: 1,
      y1: 1,
      areaPx: 3,
      maxProbability: kept[0].maxProbability,
      meanProbability: kept[0].meanProbability,
    });
    assert.ok(Math.abs(kept[0].maxProbability - 0.7) < 1e-6);
    assert.ok(Math.abs(kept[0].meanProbability - 0.65) < 1e-6);
    assert.equal(findLesions(p, 6, 3, { threshold: 0.6, minAreaPx: 1, connectivity: 8 }).length, 2);
  });

  it('gives the same lesions whatever ran before it (its scratch buffers are reused)', () => {
    const small = probMap(6, 3, [
      [0, 0, 0.6],
      [1, 0, 0.7],
      [5, 2, 0.99],
    ]);
    const full = new Float32Array(8 * 8).fill(0.9);
    const opts = { threshold: 0.6, minAreaPx: 1, connectivity: 8 as const };
    const first = findLesions(small, 6, 3, opts);
    assert.equal(findLesions(full, 8, 8, opts)[0].areaPx, 64);
    assert.deepEqual(findLesions(small, 6, 3, opts), first);
    assert.equal(first.length, 2);
  });

  it('orders lesions by maximum probability, not position', () => {
    const p = probMap(8, 8, [
      [0, 0, 0.7],
      [1, 0, 0.7],
      [6, 6, 0.95],
      [6, 7, 0.9],
      [7, 7, 0.9],
    ]);
    const found = findLesions(p, 8, 8, { threshold: 0.5, minAreaPx: 2, connectivity: 8 });
    assert.deepEqual(
      found.map((c) => [c.x0, c.y0, c.x1, c.y1, c.areaPx]),
      [
        [6, 6, 7, 7, 3],
        [0, 0, 1, 0, 2],
      ],
    );
  });

  it('finds nothing in the letterbox padding, and measures a lesion that runs into it on the image only', () => {
    // A 4x2 image letterboxed at the top-left of a 6x4 grid: a blob in the right padding, one across the bottom edge.
    const grid = probMap(6, 4, [
      [5, 0, 0.9],
      [5, 1, 0.9],
      [1, 1, 0.8],
      [1, 2, 0.8],
      [1, 3, 0.8],
    ]);
    const opts = { threshold: 0.5, minAreaPx: 1, connectivity: 8 as const };
    assert.equal(findLesions(grid, 6, 4, opts).length, 2);
    const onImage = cropToImage(grid, 6, 4, 2);
    assert.deepEqual(
      findLesions(onImage, 4, 2, opts).map(({ x0, y0, x1, y1, areaPx }) => ({ x0, y0, x1, y1, areaPx })),
      [{ x0: 1, y0: 1, x1: 1, y1: 1, areaPx: 1 }],
    );
  });

  it('labels one large blob without recursion', () => {
    const p = new Float32Array(256 * 256).fill(0.9);
    const [c] = findLesions(p, 256, 256, { threshold: 0.6, minAreaPx: 192, connectivity: 8 });
    assert.deepEqual([c.x0, c.y0, c.x1, c.y1, c.areaPx], [0, 0, 255, 255, 65536]);
  });
});

describe('medical lesions: original grid and physical size', () => {
  // 640x480 letterboxed to 256x256: scale 0.4, image rows 0..191 on the model grid.
  const lesion: LesionComponent = {
    x0: 10,
    y0: 20,
    x1: 29,
    y1: 39,
    areaPx: 400,
    maxProbability: 0.9,
    meanProbability: 0.8,
  };

  it('maps a model-grid box back to the 640x480 original', () => {
    const box = toOriginalGrid(lesion, 0.4, 640, 480);
    assert.deepEqual([box.x, box.y, box.width, box.height], [25, 50, 50, 50]);
    assert.ok(Math.abs(box.areaPx - 2500) < 1e-9, String(box.areaPx)); // 400 model px / 0.4²
  });

  it('clamps a box that runs into the padding', () => {
    const edge = { ...lesion, x0: 250, x1: 255, y0: 180, y1: 200 };
    const box = toOriginalGrid(edge, 0.4, 640, 480);
    assert.deepEqual([box.x, box.y, box.width, box.height], [625, 450, 15, 30]);
  });

  it('sizes a box from Pixel Spacing [row, column]', () => {
    const box = toOriginalGrid(lesion, 0.4, 640, 480);
    const cal = calibrationFrom({ pixelSpacing: [0.1, 0.2] }, box);
    assert.deepEqual(cal, { rowSpacingMm: 0.1, columnSpacingMm: 0.2, source: 'PixelSpacing' });
    const size = physicalSize(box, cal);
    assert.ok(size);
    assert.ok(Math.abs(size.widthMm - 10) < 1e-9 && Math.abs(size.heightMm - 5) < 1e-9);
    assert.ok(Math.abs(size.areaMm2 - 50) < 1e-9);
  });

  it('sizes a box from the 2D ultrasound region in cm that contains it', () => {
    const box = toOriginalGrid(lesion, 0.4, 640, 480);
    const cal = calibrationFrom(
      {
        ultrasoundRegions: [
          // M-mode strip: not a 2D region
          { regionSpatialFormat: 2, physicalUnitsX: 4, physicalUnitsY: 3, physicalDeltaX: 0.001, physicalDeltaY: 0.01 },
          // 2D but in the other half of a dual view
          {
            regionSpatialFormat: 1,
            physicalUnitsX: 3,
            physicalUnitsY: 3,
            physicalDeltaX: 0.5,
            physicalDeltaY: 0.5,
            minX0: 320,
            minY0: 0,
            maxX1: 639,
            maxY1: 479,
          },
          {
            regionSpatialFormat: 1,
            physicalUnitsX: 3,
            physicalUnitsY: 3,
            physicalDeltaX: 0.02,
            physicalDeltaY: -0.01,
            minX0: 0,
            minY0: 0,
            maxX1: 319,
            maxY1: 479,
          },
        ],
      },
      box,
    );
    assert.deepEqual(cal, { rowSpacingMm: 0.1, columnSpacingMm: 0.2, source: 'UltrasoundRegion' });
    const size = physicalSize(box, cal);
    assert.ok(size && Math.abs(size.widthMm - 10) < 1e-9 && Math.abs(size.areaMm2 - 50) < 1e-9);
  });

  it('gives no size without a usable calibration', () => {
    const box = toOriginalGrid(lesion, 0.4, 640, 480);
    const unitless = {
      regionSpatialFormat: 1,
      physicalUnitsX: 0,
      physicalUnitsY: 0,
      physicalDeltaX: 1,
      physicalDeltaY: 1,
    };
    assert.equal(calibrationFrom({}), undefined);
    assert.equal(calibrationFrom({ pixelSpacing: [0, 0], ultrasoundRegions: [unitless] }, box), undefined);
    assert.equal(physicalSize(box, undefined), undefined);
  });

  it('treats a spacing outside 0.1 µm..10 cm a pixel as no calibration, and leaves out sizes that are not finite', () => {
    // Found in review: PixelSpacing 1e300\1e300 gave widths of 3e301 mm and an area past a double (an SR 500).
    const box = toOriginalGrid(lesion, 0.4, 640, 480);
    const region = (delta: number, x0 = 0) => ({
      regionSpatialFormat: 1,
      physicalUnitsX: 3,
      physicalUnitsY: 3,
      physicalDeltaX: delta,
      physicalDeltaY: delta,
      minX0: x0,
      minY0: 0,
      maxX1: 639,
      maxY1: 479,
    });
    assert.equal(calibrationFrom({ pixelSpacing: [1e300, 1e300] }, box), undefined);
    assert.equal(calibrationFrom({ pixelSpacing: [0.1, 100.5] }, box), undefined);
    assert.equal(calibrationFrom({ pixelSpacing: [1e-5, 0.1] }, box), undefined);
    assert.equal(calibrationFrom({ ultrasoundRegions: [region(1e300)] }, box), undefined);
    assert.equal(calibrationFrom({ ultrasoundRegions: [region(11)] }, box), undefined, '11 cm is 110 mm');
    // The bounds themselves are plausible; an implausible Pixel Spacing leaves the ultrasound region to size it.
    assert.equal(calibrationFrom({ pixelSpacing: [100, 1e-4] }, box)?.source, 'PixelSpacing');
    assert.deepEqual(calibrationFrom({ pixelSpacing: [1e300, 1e300], ultrasoundRegions: [region(0.01)] }, box), {
      rowSpacingMm: 0.1,
      columnSpacingMm: 0.1,
      source: 'UltrasoundRegion',
    });
    // A calibration handed over as it is, whose products overflow: no size rather than Infinity.
    const overflow = { rowSpacingMm: 1e300, columnSpacingMm: 1e300 };
    assert.equal(physicalSize(box, overflow), undefined);
  });
});
