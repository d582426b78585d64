import { Injectable } from '@nestjs/common';
import { AuditInputDigester } from '../../common/access';
import { AppError } from '../../common/errors/app-error';
import { MedicalFindingEntity } from './findings/medical-finding.entity';
import { MedicalFindingsRepository } from './findings/medical-findings.repository';
import { DicomImage } from './dicom/dicom-parse.util';
import { InstanceFindingsDto, StudyFindingsDto } from './lesion-detection.dto';
import { InstanceAnalysis, LesionDetectionService } from './lesion-detection.service';
import { PatientDataProtector } from './patient-data.util';
import { buildLesionSr, type SrTransferSyntax } from './sr/lesion-sr.util';
import { srSeries } from './sr/sr-series.util';

interface SealedRefs {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  sopClassUID: string;
}

/** Stable for one server secret: the gateway as the SR's observer device. */
const DEVICE_UID_LABEL = 'medical:device-observer:v1';

/**
 * What every way in (single instance, STOW-RS, DIMSE) shares: analyse, keep the findings under
 * pseudonymised keys, summarise for the audit trail without identifiers, and build the SR answer.
 */
@Injectable()
export class MedicalIntakeService {
  readonly protector: PatientDataProtector;
  private readonly deviceUid: string;

  constructor(
    private readonly detector: LesionDetectionService,
    private readonly findings: MedicalFindingsRepository,
    private readonly digester: AuditInputDigester,
  ) {
    this.protector = new PatientDataProtector(digester);
    this.deviceUid = this.protector.pseudonymUid(DEVICE_UID_LABEL);
  }

  modelRef(): { name: string; version: string } {
    return this.detector.modelRef();
  }

  /** HMAC of the instance bytes: proves later which file a decision was made on. */
  digest(body: Uint8Array): string {
    return this.digester.digest([body]);
  }

  /** The same HMAC, worked out off the event loop while the instance is analysed (see AuditInputDigester). */
  digestAsync(body: Uint8Array): Promise<string> {
    return this.digester.digestAsync([body]);
  }

  parse(body: Uint8Array): DicomImage {
    return this.detector.parse(body);
  }

  /** Analyses a parsed instance (the single-instance route: the answer is the findings). */
  async analyse(image: DicomImage): Promise<InstanceAnalysis> {
    return this.detector.analyseImage(image);
  }

  /** Analyses a parsed instance and keeps its findings, under the sender's tenant ('' for none). */
  async analyseAndKeep(image: DicomImage, tenant: string): Promise<InstanceAnalysis> {
    const analysis = await this.detector.analyseImage(image);
    await this.keep([analysis.findings], tenant);
    return analysis;
  }

  async keep(instances: InstanceFindingsDto[], tenant: string): Promise<void> {
    await this.findings.save(
      instances.map((f) => {
        const row = new MedicalFindingEntity();
        row.instanceKey = this.protector.pseudonymUid(f.sopInstanceUID);
        row.studyKey = this.protector.pseudonymUid(f.studyInstanceUID);
        row.seriesKey = this.protector.pseudonymUid(f.seriesInstanceUID);
        row.modelName = f.model.name;
        row.modelVersion = f.model.version;
        row.tenant = tenant;
        row.analysedAt = new Date(f.analysedAt);
        const refs: SealedRefs = {
          studyInstanceUID: f.studyInstanceUID,
          seriesInstanceUID: f.seriesInstanceUID,
          sopInstanceUID: f.sopInstanceUID,
          sopClassUID: f.sopClassUID,
        };
        row.sealedRefs = this.protector.seal(refs);
        const { sopInstanceUID: _s, seriesInstanceUID: _r, studyInstanceUID: _t, sopClassUID: _c, ...rest } = f;
        row.findings = [rest];
        return row;
      }),
    );
  }

  /** A study's kept findings: for a caller whose token names a tenant, only those that tenant sent. */
  async studyFindings(studyInstanceUID: string, tenant: string | undefined): Promise<StudyFindingsDto> {
    const rows = await this.findings.ofStudy(this.protector.pseudonymUid(studyInstanceUID), tenant);
    if (rows.length === 0) throw new AppError('NOT_FOUND', 'no findings are kept for this study');
    return {
      studyInstanceUID,
      instances: rows.map((row) => {
        const refs = this.protector.unseal<SealedRefs>(row.sealedRefs);
        const kept = (row.findings as Array<Omit<InstanceFindingsDto, keyof SealedRefs>>)[0];
        return { ...refs, ...kept };
      }),
    };
  }

  /** The audit trail's view of an analysis: pseudonymised UIDs and numbers, nothing that identifies the patient. */
  auditSummary(findings: InstanceFindingsDto): Record<string, unknown> {
    const lesions = findings.frames.flatMap((f) => f.lesions);
    const malignancy = findings.frames.map((f) => f.malignancyProbability).filter((p): p is number => p !== undefined);
    return {
      study: this.protector.pseudonymUid(findings.studyInstanceUID),
      instance: this.protector.pseudonymUid(findings.sopInstanceUID),
      modality: findings.modality,
      frames: findings.frames.length,
      lesions: lesions.length,
      maxLesionProbability: lesions.length ? Math.max(...lesions.map((l) => l.lesionProbability)) : 0,
      ...(malignancy.length ? { maxMalignancyProbability: Math.max(...malignancy) } : {}),
    };
  }

  /** The DICOM Comprehensive SR (TID 1500) answer for one analysed instance, by default explicit VR little endian. */
  structuredReport(analysis: InstanceAnalysis, transferSyntax?: SrTransferSyntax): Buffer {
    const { image, findings } = analysis;
    const multiFrame = image.numberOfFrames > 1;
    const malignancy = findings.frames.map((f) => f.malignancyProbability).filter((p): p is number => p !== undefined);
    const sr = buildLesionSr(
      {
        studyInstanceUID: image.studyInstanceUID,
        seriesInstanceUID: image.seriesInstanceUID,
        sopInstanceUID: image.sopInstanceUID,
        sopClassUID: image.sopClassUID,
        patient: image.patient,
        study: image.study,
      },
      findings.frames.flatMap((frame) =>
        frame.lesions.map((l) => ({
          box: l.box,
          lesionProbability: l.lesionProbability,
          areaPx: l.areaPx,
          sizeMm: l.sizeMm,
          ...(multiFrame ? { frameNumber: frame.frameNumber } : {}),
        })),
      ),
      {
        model: findings.model,
        malignancyProbability: malignancy.length ? Math.max(...malignancy) : undefined,
        deviceObserverUID: this.deviceUid,
        manufacturer: 'regulated-inference-gateway',
        transferSyntax,
        series: srSeries(
          (parts) => this.digester.digest(parts.map((part) => Buffer.from(part))),
          image.studyInstanceUID,
          image.sopInstanceUID,
          findings.model,
        ),
      },
    );
    return Buffer.from(sr);
  }
}
