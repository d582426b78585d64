import { Column, Entity, PrimaryColumn } from 'typeorm';
import { FIRST_INCARNATION } from '../assets/asset.entity';

/**
 * An accepted reading an asset holds, with MANUFACTURING_LATE_TOLERANCE_MS above 0, until newer ones put it in
 * its place: kept here before the reading is acknowledged (its MQTT message or HTTP request answered), deleted
 * once it is released and its prediction stored, and read back at boot, so that a crash loses none of them.
 */
@Entity({ name: 'manufacturing_held_readings' })
export class HeldReadingEntity {
  @PrimaryColumn({ name: 'asset_id', type: 'varchar', length: 128 })
  assetId!: string;

  /** The reading's own timestamp. */
  @PrimaryColumn({ type: 'timestamptz' })
  at!: Date;

  /** Its values by model input, in the model's units (as the asset's window holds them). */
  @Column({ type: 'jsonb' })
  values!: Record<string, number>;

  /** The asset's incarnation that kept it (AssetEntity.incarnation): a restart takes up only the asset's own. */
  @Column({ type: 'uuid', default: FIRST_INCARNATION })
  incarnation!: string;
}
