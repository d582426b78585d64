import { MigrationInterface, QueryRunner } from 'typeorm';

export class ManufacturingAssetIncarnations1796638018646 implements MigrationInterface {
  name = 'ManufacturingAssetIncarnations1796638018646';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_assets"
            ADD "incarnation" uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_held_readings"
            ADD "incarnation" uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_opening_rows"
            ADD "incarnation" uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions"
            ADD "incarnation" uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions" DROP COLUMN "incarnation"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_opening_rows" DROP COLUMN "incarnation"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_held_readings" DROP COLUMN "incarnation"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_assets" DROP COLUMN "incarnation"
        `);
  }
}
