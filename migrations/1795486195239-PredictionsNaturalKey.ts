import { MigrationInterface, QueryRunner } from 'typeorm';

/** Predictions keyed by asset, reading time and model version: one index instead of two, and redeliveries stored once. */
export class PredictionsNaturalKey1795486195239 implements MigrationInterface {
  name = 'PredictionsNaturalKey1795486195239';

  public async up(queryRunner: QueryRunner): Promise<void> {
    // Readings delivered twice (after a crash, before their acknowledgement) were stored twice: keep the first.
    await queryRunner.query(`
            DELETE FROM "manufacturing_predictions" later USING "manufacturing_predictions" earlier
            WHERE later."asset_id" = earlier."asset_id" AND later."at" = earlier."at"
              AND later."model_version" = earlier."model_version" AND later."id" > earlier."id"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."manufacturing_predictions_asset_at"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions" DROP CONSTRAINT "PK_8f4fc0c49fd6e774851aff4e1ea"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions" DROP COLUMN "id"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions"
            ADD CONSTRAINT "PK_458afb89e0cf9ba71eb3cca7d05" PRIMARY KEY ("asset_id", "at", "model_version")
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions" DROP CONSTRAINT "PK_458afb89e0cf9ba71eb3cca7d05"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions"
            ADD "id" BIGSERIAL NOT NULL
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_predictions"
            ADD CONSTRAINT "PK_8f4fc0c49fd6e774851aff4e1ea" PRIMARY KEY ("id")
        `);
    await queryRunner.query(`
            CREATE INDEX "manufacturing_predictions_asset_at" ON "manufacturing_predictions" USING btree ("asset_id", "at")
        `);
  }
}
