import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { orUnavailable } from '../../../database/storage-unavailable';
import { AssetEntity } from './asset.entity';

/** The one place that touches the manufacturing_assets table. */
@Injectable()
export class AssetRepository {
  private readonly rows: Repository<AssetEntity>;

  constructor(private readonly dataSource: DataSource) {
    this.rows = dataSource.getRepository(AssetEntity);
  }

  async all(): Promise<AssetEntity[]> {
    return this.rows.find({ order: { assetId: 'ASC' } });
  }

  /**
   * A database outage is STORAGE_UNAVAILABLE (503): the registry in memory is left as it was. An asset stored already
   * keeps its incarnation: each asset is given the one the database holds, should two PUTs have made it at once.
   */
  async save(assets: AssetEntity[]): Promise<void> {
    const result = await orUnavailable('the asset could not be saved', () =>
      this.rows
        .createQueryBuilder()
        .insert()
        .into(AssetEntity)
        .values(assets)
        .orUpdate(['kind', 'site', 'area', 'line', 'cell', 'sensors', 'constants', 'alarm', 'updated_at'], ['asset_id'])
        .returning(['asset_id', 'incarnation'])
        .execute(),
    );
    const kept = new Map((result.raw as Array<{ asset_id: string; incarnation: string }>).map((r) => [r.asset_id, r]));
    for (const asset of assets) asset.incarnation = kept.get(asset.assetId)?.incarnation ?? asset.incarnation;
  }

  /**
   * Removes the asset and, in the same transaction, does `alongside` (the asset's other rows forgotten): both are
   * committed, or neither (a database outage is STORAGE_UNAVAILABLE, 503, the asset left as it was).
   */
  async remove(assetId: string, alongside?: (manager: EntityManager) => Promise<void>): Promise<boolean> {
    return orUnavailable('the asset could not be removed', () =>
      this.dataSource.transaction(async (manager) => {
        const result = await manager.delete(AssetEntity, { assetId });
        await alongside?.(manager);
        return (result.affected ?? 0) > 0;
      }),
    );
  }
}
