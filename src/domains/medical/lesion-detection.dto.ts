import { ApiProperty } from '@nestjs/swagger';

export class LesionBoxDto {
  /** Left edge, in pixels of the original image (columns); the box covers [x, x + width). */
  x!: number;
  /** Top edge, in pixels of the original image (rows); the box covers [y, y + height). */
  y!: number;
  width!: number;
  height!: number;
}

export class LesionSizeDto {
  widthMm!: number;
  heightMm!: number;
  areaMm2!: number;
  /** Where the calibration came from. */
  @ApiProperty({ enum: ['PixelSpacing', 'UltrasoundRegion'] })
  source!: 'PixelSpacing' | 'UltrasoundRegion';
}

export class LesionDto {
  box!: LesionBoxDto;
  /** Highest lesion probability inside the region (0-1). */
  lesionProbability!: number;
  /** Mean lesion probability over the region (0-1). */
  meanProbability!: number;
  /** Area of the region in original image pixels. */
  areaPx!: number;
  /** Physical size, when Pixel Spacing or an ultrasound calibration region gives one. */
  sizeMm?: LesionSizeDto;
}

export class FrameFindingsDto {
  /** 1-based frame number (1 for single-frame images). */
  @ApiProperty({ type: 'integer' })
  frameNumber!: number;
  lesions!: LesionDto[];
  /** Image-level probability of a malignant lesion, when the model gives one. */
  malignancyProbability?: number;
}

export class ModelRefDto {
  name!: string;
  version!: string;
}

export class InstanceFindingsDto {
  /** The SOP Instance UID the findings refer to. */
  sopInstanceUID!: string;
  seriesInstanceUID!: string;
  studyInstanceUID!: string;
  sopClassUID!: string;
  modality!: string;
  /** Image size in pixels (columns). */
  columns!: number;
  /** Image size in pixels (rows). */
  rows!: number;
  frames!: FrameFindingsDto[];
  model!: ModelRefDto;
  analysedAt!: string;
}

export class LesionDetectionDto extends InstanceFindingsDto {
  requestId!: string;
}

export class StudyFindingsDto {
  studyInstanceUID!: string;
  instances!: InstanceFindingsDto[];
}
