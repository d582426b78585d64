import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** An alarm raised or cleared for an asset, as published to the plant. */
@Entity({ name: 'manufacturing_alarms' })
@Index('manufacturing_alarms_asset_at', ['assetId', 'at'])
export class AlarmEntity {
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  @Column({ name: 'asset_id', type: 'varchar', length: 128 })
  assetId!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: 'raised' | 'cleared';

  /** `failure` (probability) or `rul` (cycles). */
  @Column({ type: 'varchar', length: 16 })
  metric!: 'failure' | 'rul';

  @Column({ type: 'double precision' })
  value!: number;

  @Column({ type: 'double precision' })
  threshold!: number;

  @Column({ type: 'timestamptz' })
  at!: Date;
}
