/**
 * Lesion probability map -> lesions, the way the model's validation metrics were computed
 * (training/medical/train_breast_us_lesion.py, `postprocess`): prob >= threshold, connected components
 * (scipy `ndimage.label`, 8-connected there), components with area < minAreaPx dropped.
 */

export interface LesionComponent {
  /** Inclusive pixel bounds on the model grid. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  areaPx: number;
  maxProbability: number;
  meanProbability: number;
}

export interface FindLesionsOptions {
  threshold: number;
  minAreaPx: number;
  connectivity: 4 | 8;
}

/** A box on the original image's pixel grid covering [x, x + width) x [y, y + height); pixel i spans [i, i + 1). */
export interface OriginalBox {
  x: number;
  y: number;
  width: number;
  height: number;
  areaPx: number;
}

export interface PixelCalibration {
  /** Distance between adjacent rows (vertical), mm. */
  rowSpacingMm: number;
  /** Distance between adjacent columns (horizontal), mm. */
  columnSpacingMm: number;
  source: 'PixelSpacing' | 'UltrasoundRegion';
}

export interface PhysicalSize {
  widthMm: number;
  heightMm: number;
  areaMm2: number;
}

/** The subset of a Sequence of Ultrasound Regions item (0018,6011) that calibration needs. */
export interface UltrasoundRegion {
  regionSpatialFormat?: number;
  physicalUnitsX?: number;
  physicalUnitsY?: number;
  physicalDeltaX?: number;
  physicalDeltaY?: number;
  minX0?: number;
  minY0?: number;
  maxX1?: number;
  maxY1?: number;
}

export interface CalibrationAttributes {
  /** Pixel Spacing (0028,0030): [row spacing, column spacing] in mm. */
  pixelSpacing?: number[];
  ultrasoundRegions?: UltrasoundRegion[];
}

const REGION_SPATIAL_FORMAT_2D = 1;
const PHYSICAL_UNITS_CM = 3;

let seenScratch = new Uint8Array(0);
let queueScratch = new Int32Array(0);

/** Connected components of prob >= threshold, area >= minAreaPx, highest maxProbability first. */
export function findLesions(
  prob: Float32Array,
  width: number,
  height: number,
  opts: FindLesionsOptions,
): LesionComponent[] {
  const n = width * height;
  if (prob.length < n) throw new RangeError(`findLesions: ${prob.length} values do not fill ${width}x${height}`);
  // 0: background or not visited yet; 1: visited. One queue serves every component (BFS, no recursion).
  // Both are reused between calls (this function is synchronous): one model grid is the usual size.
  if (seenScratch.length < n) {
    seenScratch = new Uint8Array(n);
    queueScratch = new Int32Array(n);
  } else {
    seenScratch.fill(0, 0, n);
  }
  const seen = seenScratch;
  const queue = queueScratch;
  const diagonal = opts.connectivity === 8;
  const found: LesionComponent[] = [];
  for (let start = 0; start < n; start++) {
    if (seen[start] || !(prob[start] >= opts.threshold)) continue;
    seen[start] = 1;
    queue[0] = start;
    let head = 0;
    let tail = 1;
    let x0 = width;
    let y0 = height;
    let x1 = -1;
    let y1 = -1;
    let max = -Infinity;
    let sum = 0;
    while (head < tail) {
      const p = queue[head++];
      const x = p % width;
      const y = (p - x) / width;
      const v = prob[p];
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      if (v > max) max = v;
      sum += v;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          if ((dx === 0 && dy === 0) || (!diagonal && dx !== 0 && dy !== 0)) continue;
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const q = ny * width + nx;
          if (seen[q] || !(prob[q] >= opts.threshold)) continue;
          seen[q] = 1;
          queue[tail++] = q;
        }
      }
    }
    if (tail < opts.minAreaPx) continue;
    found.push({ x0, y0, x1, y1, areaPx: tail, maxProbability: max, meanProbability: sum / tail });
  }
  // Stable: ties keep raster order of their first pixel.
  return found.sort((a, b) => b.maxProbability - a.maxProbability);
}

/**
 * The part of a model-grid map that holds the image: the letterbox put it at the top-left, `width` x `height`,
 * and padded the rest. What the model says about the padding is no finding (the model card: "map back by
 * cropping the padding"); left in, a blob there became a box outside the image, or grew one's area.
 */
export function cropToImage(prob: Float32Array, gridWidth: number, width: number, height: number): Float32Array {
  if (width === gridWidth) return prob.subarray(0, width * height);
  const cropped = new Float32Array(width * height);
  for (let y = 0; y < height; y++) cropped.set(prob.subarray(y * gridWidth, y * gridWidth + width), y * width);
  return cropped;
}

/**
 * Model-grid component -> original pixel grid. The letterbox put the image at the top-left scaled by `scale`,
 * so original = model / scale; the box is clamped to the image. Area counts model pixels times 1 / scale².
 */
export function toOriginalGrid(
  c: LesionComponent,
  scale: number,
  originalWidth: number,
  originalHeight: number,
): OriginalBox {
  const clampX = (v: number) => Math.min(Math.max(v, 0), originalWidth);
  const clampY = (v: number) => Math.min(Math.max(v, 0), originalHeight);
  const x = clampX(c.x0 / scale);
  const y = clampY(c.y0 / scale);
  return {
    x,
    y,
    width: clampX((c.x1 + 1) / scale) - x,
    height: clampY((c.y1 + 1) / scale) - y,
    areaPx: c.areaPx / (scale * scale),
  };
}

/**
 * The pixel sizes a calibration may give, in mm per pixel: from 0.1 µm to 10 cm, far past what any imaging modality
 * uses (ultrasound and mammography some hundredths to tenths of a mm, nuclear medicine a few mm). A value outside
 * it is no calibration: the image is treated as uncalibrated and its sizes in mm are left out, as a reader would
 * not trust a ruler of 1e300 mm a pixel (seen in review: widths of 3e301 mm, an area past a double, an SR 500).
 */
export const PLAUSIBLE_SPACING_MM = { min: 1e-4, max: 100 } as const;

/** Box size in mm; undefined when the image carries no usable calibration, or the sizes would not be finite. */
export function physicalSize(
  box: Pick<OriginalBox, 'width' | 'height' | 'areaPx'>,
  calibration: Pick<PixelCalibration, 'rowSpacingMm' | 'columnSpacingMm'> | undefined,
): PhysicalSize | undefined {
  if (!calibration) return undefined;
  const size = {
    widthMm: box.width * calibration.columnSpacingMm,
    heightMm: box.height * calibration.rowSpacingMm,
    areaMm2: box.areaPx * calibration.rowSpacingMm * calibration.columnSpacingMm,
  };
  return Object.values(size).every(Number.isFinite) ? size : undefined;
}

/**
 * Pixel Spacing wins; otherwise the first ultrasound region (PS3.3 C.8.5.5.1) that is 2D, measured in cm on
 * both axes and, when a box is given, contains it. Anything else (M-mode, Doppler, unitless regions, a spacing
 * outside PLAUSIBLE_SPACING_MM) gives no calibration rather than a wrong one.
 */
export function calibrationFrom(
  attrs: CalibrationAttributes,
  box?: Pick<OriginalBox, 'x' | 'y' | 'width' | 'height'>,
): PixelCalibration | undefined {
  const ps = attrs.pixelSpacing;
  if (ps && ps.length >= 2 && isPlausibleSpacing(ps[0]) && isPlausibleSpacing(ps[1])) {
    return { rowSpacingMm: ps[0], columnSpacingMm: ps[1], source: 'PixelSpacing' };
  }
  for (const r of attrs.ultrasoundRegions ?? []) {
    if (r.regionSpatialFormat !== REGION_SPATIAL_FORMAT_2D) continue;
    if (r.physicalUnitsX !== PHYSICAL_UNITS_CM || r.physicalUnitsY !== PHYSICAL_UNITS_CM) continue;
    // The sign of a delta gives the axis direction, not a size.
    const dx = Math.abs(r.physicalDeltaX ?? NaN) * 10;
    const dy = Math.abs(r.physicalDeltaY ?? NaN) * 10;
    if (!isPlausibleSpacing(dx) || !isPlausibleSpacing(dy)) continue;
    if (box && !regionContains(r, box)) continue;
    return { rowSpacingMm: dy, columnSpacingMm: dx, source: 'UltrasoundRegion' };
  }
  return undefined;
}

/** Region bounds are inclusive pixel indices, so the region spans [minX0, maxX1 + 1); no bounds, no match. */
function regionContains(r: UltrasoundRegion, box: Pick<OriginalBox, 'x' | 'y' | 'width' | 'height'>): boolean {
  if (r.minX0 === undefined || r.minY0 === undefined || r.maxX1 === undefined || r.maxY1 === undefined) return false;
  return box.x >= r.minX0 && box.y >= r.minY0 && box.x + box.width <= r.maxX1 + 1 && box.y + box.height <= r.maxY1 + 1;
}

function isPlausibleSpacing(mm: number): boolean {
  return mm >= PLAUSIBLE_SPACING_MM.min && mm <= PLAUSIBLE_SPACING_MM.max;
}
