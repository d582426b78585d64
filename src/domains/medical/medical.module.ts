import { Module } from '@nestjs/common';
import { RuntimeModule } from '../../runtime/runtime.module';
import { DimseScpService } from './dimse/dimse-scp.service';
import { MedicalFindingsRepository } from './findings/medical-findings.repository';
import { MedicalFindingsRetention } from './findings/medical-findings-retention.service';
import { LesionDetectionController } from './lesion-detection.controller';
import { LesionDetectionService } from './lesion-detection.service';
import { MedicalIntakeService } from './medical-intake.service';
import { StowController } from './stow/stow.controller';
import { StowService } from './stow/stow.service';

/** DICOM in (single instance, STOW-RS, DIMSE), lesion findings out (JSON, DICOM SR), on the medical reference model. */
@Module({
  imports: [RuntimeModule],
  controllers: [LesionDetectionController, StowController],
  providers: [
    LesionDetectionService,
    MedicalIntakeService,
    MedicalFindingsRepository,
    MedicalFindingsRetention,
    StowService,
    DimseScpService,
  ],
  exports: [MedicalIntakeService],
})
export class MedicalModule {}
