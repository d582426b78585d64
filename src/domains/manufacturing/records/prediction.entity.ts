import { Column, Entity, PrimaryColumn } from 'typeorm';
import { FIRST_INCARNATION } from '../assets/asset.entity';

/**
 * One model output for an asset: failure and mode probabilities per reading, or RUL per window.
 * Keyed by what it is the prediction of (asset, reading time, model version): a reading the broker
 * delivers again after a crash is stored once, the prediction of an asset made again (or put as another
 * kind) at the time of one of the old asset's replaces it, and the key is the only index
 * (range queries per asset read it), which keeps each stored prediction cheap at sensor rates.
 */
@Entity({ name: 'manufacturing_predictions' })
export class PredictionEntity {
  @PrimaryColumn({ name: 'asset_id', type: 'varchar', length: 128 })
  assetId!: string;

  /** The reading's (or the window's last reading's) timestamp. */
  @PrimaryColumn({ type: 'timestamptz' })
  at!: Date;

  @PrimaryColumn({ name: 'model_version', type: 'varchar', length: 64 })
  modelVersion!: string;

  /** Failure probability, or remaining useful life in cycles. */
  @Column({ type: 'double precision' })
  value!: number;

  /** Per-mode probabilities (machine-failure), absent for RUL. */
  @Column({ type: 'jsonb', nullable: true })
  modes!: Record<string, number> | null;

  /**
   * The reading's values by the model's sensor inputs, in the model's order and units (for a windowed model,
   * the window's newest row): what a restart rebuilds the asset's window, and its last tag values, from.
   * Null in rows stored before they were kept.
   */
  @Column({ type: 'real', array: true, nullable: true })
  inputs!: number[] | null;

  /** The asset's incarnation that kept it (AssetEntity.incarnation): a restart takes up only the asset's own. */
  @Column({ type: 'uuid', default: FIRST_INCARNATION })
  incarnation!: string;
}
