import { Injectable } from '@nestjs/common';
import { DataSource, Repository } from 'typeorm';
import { deleteInChunks, PURGE_CHUNK } from '../../../database/chunked-delete';
import { orUnavailable } from '../../../database/storage-unavailable';
import { MedicalFindingEntity } from './medical-finding.entity';

/** The one place that touches the medical_findings table. */
@Injectable()
export class MedicalFindingsRepository {
  private readonly rows: Repository<MedicalFindingEntity>;

  constructor(private readonly dataSource: DataSource) {
    this.rows = dataSource.getRepository(MedicalFindingEntity);
  }

  /**
   * A re-sent instance replaces its earlier findings for the same model version and tenant. A database
   * outage is STORAGE_UNAVAILABLE (503): the sender sends the instance again.
   */
  async save(rows: MedicalFindingEntity[]): Promise<void> {
    if (rows.length === 0) return;
    await orUnavailable('the findings could not be kept', () =>
      this.rows.upsert(rows, ['instanceKey', 'modelName', 'modelVersion', 'tenant']),
    );
  }

  /** A study's findings: a tenant's own, or every tenant's when `tenant` is undefined (a token that names none). */
  async ofStudy(studyKey: string, tenant: string | undefined): Promise<MedicalFindingEntity[]> {
    return orUnavailable('the findings could not be read', () =>
      this.rows.find({
        where: tenant === undefined ? { studyKey } : { studyKey, tenant },
        order: { analysedAt: 'ASC', instanceKey: 'ASC' },
        take: 10_000,
      }),
    );
  }

  /** Deletes the findings analysed before `cutoff`, PURGE_CHUNK rows per statement; resolves with how many went. */
  purgeBefore(cutoff: Date): Promise<number> {
    return deleteInChunks(
      this.dataSource,
      `DELETE FROM medical_findings WHERE (instance_key, model_name, model_version, tenant) IN (
         SELECT instance_key, model_name, model_version, tenant FROM medical_findings
          WHERE analysed_at < $1 ORDER BY analysed_at LIMIT ${PURGE_CHUNK})`,
      [cutoff],
    );
  }
}
