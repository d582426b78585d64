import { MigrationInterface, QueryRunner } from 'typeorm';

export class ManufacturingOpeningRows1796618239720 implements MigrationInterface {
  name = 'ManufacturingOpeningRows1796618239720';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "manufacturing_opening_rows" (
                "asset_id" character varying(128) NOT NULL,
                "at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "model_version" character varying(64) NOT NULL,
                "inputs" real array NOT NULL,
                "first" boolean NOT NULL,
                CONSTRAINT "PK_39f81c69f22d8304a88dce313ee" PRIMARY KEY ("asset_id", "at", "model_version")
            )
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            DROP TABLE "manufacturing_opening_rows"
        `);
  }
}
