import { Injectable } from '@nestjs/common';
import { DataSource, Repository } from 'typeorm';
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

  async save(assets: AssetEntity[]): Promise<void> {
    await this.rows.upsert(assets, ['assetId']);
  }

  async remove(assetId: string): Promise<boolean> {
    const result = await this.rows.delete({ assetId });
    return (result.affected ?? 0) > 0;
  }
}
