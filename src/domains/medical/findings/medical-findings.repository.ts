import { Injectable } from '@nestjs/common';
import { DataSource, Repository } from 'typeorm';
import { MedicalFindingEntity } from './medical-finding.entity';

/** The one place that touches the medical_findings table. */
@Injectable()
export class MedicalFindingsRepository {
  private readonly rows: Repository<MedicalFindingEntity>;

  constructor(dataSource: DataSource) {
    this.rows = dataSource.getRepository(MedicalFindingEntity);
  }

  /** A re-sent instance replaces its earlier findings for the same model version. */
  async save(rows: MedicalFindingEntity[]): Promise<void> {
    if (rows.length === 0) return;
    await this.rows.upsert(rows, ['instanceKey', 'modelName', 'modelVersion']);
  }

  async ofStudy(studyKey: string): Promise<MedicalFindingEntity[]> {
    return this.rows.find({ where: { studyKey }, order: { analysedAt: 'ASC', instanceKey: 'ASC' }, take: 10_000 });
  }
}
