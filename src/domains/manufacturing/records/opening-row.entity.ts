import { Column, Entity, PrimaryColumn } from 'typeorm';
import { FIRST_INCARNATION } from '../assets/asset.entity';

/**
 * A released reading that gave no prediction, kept so that a restart rebuilds the asset's window as it was
 * (the stored predictions keep the rows that gave one): a remaining-useful-life asset's rows before its window
 * is full (its first 29 cycles), and the last values of a reading whose inputs were never all seen. At most a
 * window's length of them per asset: one marked `first` makes those of the asset before it needless, and they
 * are deleted with it. Written only while an asset's window opens, so an asset past it adds nothing here.
 */
@Entity({ name: 'manufacturing_opening_rows' })
export class OpeningRowEntity {
  @PrimaryColumn({ name: 'asset_id', type: 'varchar', length: 128 })
  assetId!: string;

  /** The reading's timestamp. */
  @PrimaryColumn({ type: 'timestamptz' })
  at!: Date;

  @PrimaryColumn({ name: 'model_version', type: 'varchar', length: 64 })
  modelVersion!: string;

  /** Its values by the model's sensor inputs, in the model's order and units; NaN for one never seen yet. */
  @Column({ type: 'real', array: true })
  inputs!: number[];

  /** Nothing of the window before it is needed: a restart reads no further back. */
  @Column({ type: 'boolean' })
  first!: boolean;

  /** The asset's incarnation that kept it (AssetEntity.incarnation): a restart takes up only the asset's own. */
  @Column({ type: 'uuid', default: FIRST_INCARNATION })
  incarnation!: string;
}
