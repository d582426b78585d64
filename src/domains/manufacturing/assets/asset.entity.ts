import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * The incarnation of the assets made before incarnations were kept, and of the rows they kept: they go on as they
 * were. An asset made since (new, or removed and made again) takes a random one.
 */
export const FIRST_INCARNATION = '00000000-0000-0000-0000-000000000000';

export type AssetKind = 'machine-failure' | 'turbofan-rul';

/** Which incoming tag (JSON field or Sparkplug metric name) feeds which model input, and in what unit it arrives. */
export interface SensorMapping {
  /** The model input's `source` in its manifest (e.g. `Torque [Nm]`, `s2`). */
  input: string;
  /** The field or metric name the plant sends. */
  tag: string;
  /** The unit the plant sends it in; converted to the manifest's unit. */
  unit: string;
}

/** Hysteresis: raise after `consecutive` predictions past `raiseAt`, clear once past `clearAt` the other way. */
export interface AlarmThresholds {
  raiseAt: number;
  clearAt: number;
  consecutive: number;
}

/**
 * An asset of the plant: where it is, which model serves it, how its tags map to the model's inputs,
 * and when it raises an alarm. Managed over the API or seeded from a file.
 */
@Entity({ name: 'manufacturing_assets' })
export class AssetEntity {
  @PrimaryColumn({ name: 'asset_id', type: 'varchar', length: 128 })
  assetId!: string;

  @Column({ type: 'varchar', length: 32 })
  kind!: AssetKind;

  @Column({ type: 'varchar', length: 128 })
  site!: string;

  @Column({ type: 'varchar', length: 128 })
  area!: string;

  @Column({ type: 'varchar', length: 128 })
  line!: string;

  @Column({ type: 'varchar', length: 128, nullable: true })
  cell!: string | null;

  @Column({ type: 'jsonb' })
  sensors!: SensorMapping[];

  /** Model inputs that do not come from sensors (e.g. the product quality `Type` of a milling machine). */
  @Column({ type: 'jsonb' })
  constants!: Record<string, string | number>;

  @Column({ type: 'jsonb' })
  alarm!: AlarmThresholds;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  /**
   * Which making of the asset id this is: taken when the asset is made (new, or removed and made again) and kept
   * while it is put again. The rows it keeps for a restart (predictions, opening rows, held readings) carry it, and a
   * restart takes up only those of the asset as it is, whatever their timestamps.
   */
  @Column({ type: 'uuid', default: FIRST_INCARNATION })
  incarnation!: string;
}
