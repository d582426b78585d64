import { MigrationInterface, QueryRunner } from 'typeorm';

export class ManufacturingWindowsKept1796542953485 implements MigrationInterface {
  name = 'ManufacturingWindowsKept1796542953485';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "manufacturing_held_readings" (
                "asset_id" character varying(128) NOT NULL,
                "at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "values" jsonb NOT NULL,
                CONSTRAINT "PK_f1230a061b9b5921661648e4091" PRIMARY KEY ("asset_id", "at")
            )
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions"
            ADD "inputs" real array
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions" DROP COLUMN "inputs"
        `);
    await queryRunner.query(`
            DROP TABLE "manufacturing_held_readings"
        `);
  }
}
