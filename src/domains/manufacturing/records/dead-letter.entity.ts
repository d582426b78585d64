import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** A reading or message that was refused, kept with its reason so the plant can see what it lost and why. */
@Entity({ name: 'manufacturing_dead_letters' })
@Index('manufacturing_dead_letters_received_at', ['receivedAt'])
export class DeadLetterEntity {
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  @Column({ name: 'received_at', type: 'timestamptz' })
  receivedAt!: Date;

  /**
   * `http`, `mqtt` or `sparkplug`; `inference` for an accepted reading its model kept failing on, or that
   * waited too long to be predicted; `storage` for a prediction or an alarm the database refused.
   */
  @Column({ type: 'varchar', length: 16 })
  source!: string;

  /**
   * The MQTT topic or HTTP route it came by; for `inference`, the model and version (`name@version`); for
   * `storage`, the table that refused it.
   */
  @Column({ type: 'varchar', length: 512 })
  channel!: string;

  @Column({ name: 'asset_id', type: 'varchar', length: 128, nullable: true })
  assetId!: string | null;

  @Column({ type: 'varchar', length: 64 })
  reason!: string;

  @Column({ type: 'text' })
  detail!: string;

  /** The refused payload, cut to 4 KiB. */
  @Column({ type: 'text' })
  payload!: string;
}
