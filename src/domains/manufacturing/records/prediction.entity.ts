import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** One model output for an asset: failure and mode probabilities per reading, or RUL per window. */
@Entity({ name: 'manufacturing_predictions' })
@Index('manufacturing_predictions_asset_at', ['assetId', 'at'])
export class PredictionEntity {
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  @Column({ name: 'asset_id', type: 'varchar', length: 128 })
  assetId!: string;

  /** The reading's (or the window's last reading's) timestamp. */
  @Column({ type: 'timestamptz' })
  at!: Date;

  @Column({ name: 'model_version', type: 'varchar', length: 64 })
  modelVersion!: string;

  /** Failure probability, or remaining useful life in cycles. */
  @Column({ type: 'double precision' })
  value!: number;

  /** Per-mode probabilities (machine-failure), absent for RUL. */
  @Column({ type: 'jsonb', nullable: true })
  modes!: Record<string, number> | null;
}
