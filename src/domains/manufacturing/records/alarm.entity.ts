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
  metric!: AlarmMetric;

  /** The prediction that moved the alarm and the threshold it crossed; null on one the gateway closed (`reason`). */
  @Column({ type: 'double precision', nullable: true })
  value!: number | null;

  @Column({ type: 'double precision', nullable: true })
  threshold!: number | null;

  @Column({ type: 'timestamptz' })
  at!: Date;

  /**
   * Where the asset stood and the model version whose prediction moved the alarm, as streamed, so that the alarm
   * stream can send it again on a reconnect (Last-Event-ID) as it first did. Null on rows stored before they were
   * kept.
   */
  @Column({ type: 'varchar', length: 128, nullable: true })
  site!: string | null;

  @Column({ type: 'varchar', length: 128, nullable: true })
  line!: string | null;

  @Column({ name: 'model_name', type: 'varchar', length: 128, nullable: true })
  modelName!: string | null;

  @Column({ name: 'model_version', type: 'varchar', length: 64, nullable: true })
  modelVersion!: string | null;

  /**
   * Why the gateway closed a raised alarm no prediction will clear (`asset-kind-changed`, `asset-removed`); null on
   * an alarm a prediction moved.
   */
  @Column({ type: 'varchar', length: 32, nullable: true })
  reason!: AlarmCloseReason | null;
}

/** What an alarm is on: a machine-failure model's failure probability, or a turbofan model's remaining useful life. */
export const ALARM_METRICS = ['failure', 'rul'] as const;
export type AlarmMetric = (typeof ALARM_METRICS)[number];

/** Why the gateway cleared a raised alarm itself: its asset was put as another kind (another model), or removed. */
export const ALARM_CLOSE_REASONS = ['asset-kind-changed', 'asset-removed'] as const;
export type AlarmCloseReason = (typeof ALARM_CLOSE_REASONS)[number];
