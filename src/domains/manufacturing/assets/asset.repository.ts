import { Injectable } from '@nestjs/common';
import { DataSource, Repository } from 'typeorm';
import { orUnavailable } from '../../../database/storage-unavailable';
import { AssetEntity } from './asset.entity';

/** The one place that touches the manufacturing_assets table. */
@Injectable()
export class AssetRepository {
  private readonly rows: Repository<AssetEntity>;

  constructor(dataSource: DataSource) {
    this.rows = dataSource.getRepository(AssetEntity);
  }

  async all(): Promise<AssetEntity[]> {
    return this.rows.find({ order: { assetId: 'ASC' } });
  }

  /** A database outage is STORAGE_UNAVAILABLE (503): the registry in memory is left as it was. */
  async save(assets: AssetEntity[]): Promise<void> {
    await orUnavailable('the asset could not be saved', () => this.rows.upsert(assets, ['assetId']));
  }

  async remove(assetId: string): Promise<boolean> {
    const result = await orUnavailable('the asset could not be removed', () => this.rows.delete({ assetId }));
    return (result.affected ?? 0) > 0;
  }
}
