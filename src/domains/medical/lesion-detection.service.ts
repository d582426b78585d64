import { Injectable, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { InferenceEngine } from '../../runtime/inference-engine.service';
import { DicomImage, parseDicomImage, ParseLimits } from './dicom/dicom-parse.util';
import { DicomRejected } from './dicom/dicom-rejected';
import { attributeName } from './dicom/dicom-dictionary';
import { decodeFrame, initialisePixelCodecs, selectFrames } from './dicom/pixel-decode.util';
import { FrameFindingsDto, InstanceFindingsDto, LesionDto } from './lesion-detection.dto';
import {
  calibrationFrom,
  cropToImage,
  findLesions,
  physicalSize,
  toOriginalGrid,
} from './lesions/lesion-postprocess.util';
import {
  FrameTo01Options,
  letterboxFrame,
  NonFinitePixelsError,
  UnsupportedPhotometricError,
} from './pixels/pixel-pipeline.util';

/** What the domain reads from the lesion model's manifest. */
export interface LesionModel {
  name: string;
  version: string;
  modalities: string[];
  width: number;
  height: number;
  mean: number;
  std: number;
  padValue: number;
  threshold: number;
  minAreaPx: number;
  connectivity: 4 | 8;
  maxBatchSize: number;
  hasMalignancy: boolean;
}

/**
 * The pixel pipeline's options for an image: its own modality LUT and VOI window. 8-bit grey images
 * without a window (most ultrasound) keep their full stored range, as in training (pixel / 255);
 * stretching them to min..max would change their contrast.
 */
export function frameOptionsOf(image: DicomImage): FrameTo01Options {
  // A palette's frames are decoded to the 8-bit RGB it gives, whatever its stored values' bits.
  if (image.palette) return { bitsStored: 8, isSigned: false };
  const fullRange = image.windowCenter === undefined && image.bitsStored <= 8 && image.pixelRepresentation === 0;
  const top = 2 ** image.bitsStored - 1;
  return {
    slope: image.rescaleSlope,
    intercept: image.rescaleIntercept,
    windowCenter: fullRange ? (top + 1) / 2 : image.windowCenter,
    windowWidth: fullRange ? top + 1 : image.windowWidth,
    voiFunction: image.voiLutFunction,
    bitsStored: image.bitsStored,
    isSigned: image.pixelRepresentation === 1,
  };
}

/** One analysed instance: the parsed image (for the SR answer) and its findings. */
export interface InstanceAnalysis {
  image: DicomImage;
  findings: InstanceFindingsDto;
}

function num(block: Record<string, unknown> | undefined, key: string, where: string): number {
  const v = block?.[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where}: manifest value ${key} is missing`);
  return v;
}

/** Reads and checks the manifest once: a lesion model the domain cannot feed stops the boot. */
export function lesionModelOf(info: ReturnType<InferenceEngine['describe']>): LesionModel {
  const m = info.manifest;
  const where = `${info.name}@${info.version}`;
  const pre = m.preprocessing;
  const post = m.postprocessing;
  const size = pre?.inputSize;
  if (!Array.isArray(size) || size.length !== 2) throw new Error(`${where}: preprocessing.inputSize [w, h] is missing`);
  const modalities = pre?.modalities;
  if (!Array.isArray(modalities) || modalities.length === 0)
    throw new Error(`${where}: preprocessing.modalities is missing`);
  const connectivity = post?.connectivity === 4 ? 4 : 8;
  return {
    name: info.name,
    version: info.version,
    modalities: modalities.map((x) => String(x).toUpperCase()),
    width: Number(size[0]),
    height: Number(size[1]),
    mean: num(pre, 'mean', where),
    std: num(pre, 'std', where),
    padValue: num(pre, 'padValue', where),
    threshold: num(post, 'threshold', where),
    minAreaPx: num(post, 'minAreaPx', where),
    connectivity,
    maxBatchSize: info.batching.maxBatchSize,
    hasMalignancy: m.outputs.some((o) => o.name === 'malignancy_probability'),
  };
}

/**
 * DICOM bytes in, lesion findings out: parse and validate, decode the chosen frames, run the pixel
 * pipeline into the model's letterboxed grid, one batched runtime call, then probability maps to
 * boxes on the original pixel grid. Every refusal is a DicomRejected with its reason.
 */
@Injectable()
export class LesionDetectionService implements OnModuleInit {
  private model?: LesionModel;
  private readonly limits: ParseLimits;

  constructor(
    private readonly engine: InferenceEngine,
    private readonly config: AppConfig,
  ) {
    this.limits = {
      maxInflatedBytes: config.MEDICAL_MAX_BODY_BYTES * 4,
      maxRows: config.MEDICAL_MAX_IMAGE_SIDE,
      maxColumns: config.MEDICAL_MAX_IMAGE_SIDE,
      maxPixels: config.MEDICAL_MAX_PIXELS,
      maxAnalysedFrames: config.MEDICAL_FRAME_POLICY === 'all' ? config.MEDICAL_MAX_FRAMES : 1,
    };
  }

  async onModuleInit(): Promise<void> {
    await initialisePixelCodecs();
    const name = this.config.medicalModel;
    if (this.engine.versionsOf(name).length > 0) {
      this.model = lesionModelOf(this.engine.describe(name));
    } else if (this.config.MEDICAL_MODEL !== undefined) {
      // Named on purpose, so a misspelt name stops the boot rather than leaving the medical routes 404.
      throw new Error(`MEDICAL_MODEL: no model named ${name} in MODELS_DIR`);
    }
  }

  /** The serving model, or MODEL_NOT_FOUND when the gateway was started without one. */
  modelRef(): { name: string; version: string } {
    const m = this.lesionModel();
    return { name: m.name, version: m.version };
  }

  private lesionModel(): LesionModel {
    // describe() throws the runtime's MODEL_NOT_FOUND when the model is absent.
    this.model ??= lesionModelOf(this.engine.describe(this.config.medicalModel));
    return this.model;
  }

  /** Parses and checks an instance without running the model (STOW uses it to check the study first). */
  parse(body: Uint8Array): DicomImage {
    const image = parseDicomImage(body, this.limits);
    const model = this.lesionModel();
    if (!model.modalities.includes(image.modality)) {
      throw new DicomRejected(
        'MODALITY_NOT_ACCEPTED',
        `modality ${image.modality} is not accepted by ${model.name} version ${model.version} (accepts ${model.modalities.join(', ')})`,
        attributeName('Modality'),
      ).withSop(image.sopClassUID, image.sopInstanceUID);
    }
    return image;
  }

  async analyse(body: Uint8Array): Promise<InstanceAnalysis> {
    return this.analyseImage(this.parse(body));
  }

  async analyseImage(image: DicomImage): Promise<InstanceAnalysis> {
    try {
      return await this.run(image);
    } catch (error) {
      if (error instanceof DicomRejected) throw error.withSop(image.sopClassUID, image.sopInstanceUID);
      throw error;
    }
  }

  private async run(image: DicomImage): Promise<InstanceAnalysis> {
    const model = this.lesionModel();
    const frames = selectFrames(image.numberOfFrames, this.config.MEDICAL_FRAME_POLICY, this.config.MEDICAL_MAX_FRAMES);
    const plane = model.width * model.height;
    const results: FrameFindingsDto[] = [];
    for (let start = 0; start < frames.length; start += model.maxBatchSize) {
      const chunk = frames.slice(start, start + model.maxBatchSize);
      // Given to the engine below: it moves to the worker without a copy, in a buffer used before.
      const input = this.engine.allocate('float32', [chunk.length, 1, model.height, model.width]);
      const batch = input.data as Float32Array;
      const placements: Placement[] = [];
      // Settled at once, unless a trap in another decode discarded the codecs and they are loading again.
      await initialisePixelCodecs();
      chunk.forEach((frame, i) => {
        placements.push(this.preprocess(image, frame, model, batch.subarray(i * plane, (i + 1) * plane)));
      });
      const result = await this.engine.infer(model.name, model.version, { image: input }, { give: true });
      const maps = result.outputs.lesion_probability.data as Float32Array;
      const malignancy = result.outputs.malignancy_probability?.data as Float32Array | undefined;
      chunk.forEach((frame, i) => {
        const prob = maps.subarray(i * plane, (i + 1) * plane);
        results.push({
          frameNumber: frame + 1,
          lesions: this.lesions(prob, placements[i], image, model),
          ...(malignancy ? { malignancyProbability: round(malignancy[i]) } : {}),
        });
      });
    }
    return {
      image,
      findings: {
        sopInstanceUID: image.sopInstanceUID,
        seriesInstanceUID: image.seriesInstanceUID,
        studyInstanceUID: image.studyInstanceUID,
        sopClassUID: image.sopClassUID,
        modality: image.modality,
        columns: image.columns,
        rows: image.rows,
        frames: results,
        model: { name: model.name, version: model.version },
        analysedAt: new Date().toISOString(),
      },
    };
  }

  /** Decodes one frame and writes it, letterboxed and normalised, into its place in the batch; returns where it went. */
  private preprocess(image: DicomImage, frame: number, model: LesionModel, into: Float32Array): Placement {
    const stored = decodeFrame(image, frame);
    try {
      const { scale, resizedWidth, resizedHeight } = letterboxFrame(
        stored,
        frameOptionsOf(image),
        { width: model.width, height: model.height, padValue: model.padValue },
        into,
        { mean: model.mean, std: model.std },
      );
      return { scale, resizedWidth, resizedHeight };
    } catch (error) {
      if (error instanceof UnsupportedPhotometricError) {
        throw new DicomRejected('UNSUPPORTED_PIXEL_FORMAT', error.message, attributeName('PhotometricInterpretation'));
      }
      if (error instanceof NonFinitePixelsError) {
        throw new DicomRejected(
          'UNSUPPORTED_PIXEL_FORMAT',
          `frame ${frame + 1} is not analysed: ${error.message}, from its pixel data through RescaleSlope ${image.rescaleSlope ?? 1}, RescaleIntercept ${image.rescaleIntercept ?? 0} and WindowCenter / WindowWidth ${image.windowCenter ?? '-'} / ${image.windowWidth ?? '-'}`,
          attributeName('PixelData'),
        );
      }
      // The pixel functions throw RangeError when decoded samples do not fit the image attributes.
      if (error instanceof RangeError) {
        throw new DicomRejected(
          'UNSUPPORTED_PIXEL_FORMAT',
          `the decoded pixels do not fit the image attributes (${error.message})`,
          attributeName('PixelData'),
        );
      }
      throw error;
    }
  }

  private lesions(prob: Float32Array, placement: Placement, image: DicomImage, model: LesionModel): LesionDto[] {
    const { scale, resizedWidth, resizedHeight } = placement;
    const onImage = cropToImage(prob, model.width, resizedWidth, resizedHeight);
    const components = findLesions(onImage, resizedWidth, resizedHeight, {
      threshold: model.threshold,
      minAreaPx: model.minAreaPx,
      connectivity: model.connectivity,
    });
    return components.map((c) => {
      const box = toOriginalGrid(c, scale, image.columns, image.rows);
      const calibration = calibrationFrom(
        { pixelSpacing: image.pixelSpacing, ultrasoundRegions: image.ultrasoundRegions },
        box,
      );
      const size = physicalSize(box, calibration);
      return {
        box: { x: round(box.x), y: round(box.y), width: round(box.width), height: round(box.height) },
        lesionProbability: round(c.maxProbability),
        meanProbability: round(c.meanProbability),
        areaPx: round(box.areaPx),
        ...(size && calibration
          ? {
              sizeMm: {
                widthMm: round(size.widthMm),
                heightMm: round(size.heightMm),
                areaMm2: round(size.areaMm2),
                source: calibration.source,
              },
            }
          : {}),
      };
    });
  }
}

/** Where the letterbox put a frame on the model grid: at the top-left, scaled by `scale`, the rest padding. */
interface Placement {
  scale: number;
  resizedWidth: number;
  resizedHeight: number;
}

function round(v: number): number {
  return Math.round(v * 10_000) / 10_000;
}
