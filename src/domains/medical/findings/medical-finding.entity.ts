import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * The findings of one analysed instance, kept so that `GET /v1/medical/studies/{uid}/findings` can
 * answer later. Keyed by pseudonymised UIDs (keyed hash): the table holds no identifier in clear.
 * The real UIDs, which the PACS needs to link a finding to its image, are stored encrypted.
 */
@Entity({ name: 'medical_findings' })
@Index('medical_findings_study_key', ['studyKey'])
/** For MEDICAL_FINDINGS_RETENTION_DAYS: the purge finds the oldest rows by it. */
@Index('medical_findings_analysed_at', ['analysedAt'])
export class MedicalFindingEntity {
  /** Pseudonymised SOP Instance UID. */
  @PrimaryColumn({ name: 'instance_key', type: 'varchar', length: 64 })
  instanceKey!: string;

  @PrimaryColumn({ name: 'model_name', type: 'varchar', length: 128 })
  modelName!: string;

  @PrimaryColumn({ name: 'model_version', type: 'varchar', length: 64 })
  modelVersion!: string;

  /**
   * The tenant claim of the token that sent the instance ('' for none, and for DIMSE, which has no
   * token): a caller whose token names a tenant reads only that tenant's findings, and two tenants
   * sending the same instance each keep their own.
   */
  @PrimaryColumn({ type: 'varchar', length: 256, default: '' })
  tenant!: string;

  /** Pseudonymised Study Instance UID. */
  @Column({ name: 'study_key', type: 'varchar', length: 64 })
  studyKey!: string;

  /** Pseudonymised Series Instance UID. */
  @Column({ name: 'series_key', type: 'varchar', length: 64 })
  seriesKey!: string;

  /** AES-256-GCM sealed JSON of the real study, series and SOP instance UIDs and the SOP class. */
  @Column({ name: 'sealed_refs', type: 'bytea' })
  sealedRefs!: Buffer;

  /** The findings (boxes, probabilities, sizes), which identify no one. */
  @Column({ type: 'jsonb' })
  findings!: object[];

  @Column({ name: 'analysed_at', type: 'timestamptz' })
  analysedAt!: Date;
}
