import { MigrationInterface, QueryRunner } from 'typeorm';

export class ManufacturingAssets1795481375135 implements MigrationInterface {
  name = 'ManufacturingAssets1795481375135';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "manufacturing_assets" (
                "asset_id" character varying(128) NOT NULL,
                "kind" character varying(32) NOT NULL,
                "site" character varying(128) NOT NULL,
                "area" character varying(128) NOT NULL,
                "line" character varying(128) NOT NULL,
                "cell" character varying(128),
                "sensors" jsonb NOT NULL,
                "constants" jsonb NOT NULL,
                "alarm" jsonb NOT NULL,
                "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_dee8f600ce068889a4137604a4c" PRIMARY KEY ("asset_id")
            )
        `);
    await queryRunner.query(`
            CREATE TABLE "manufacturing_alarms" (
                "id" BIGSERIAL NOT NULL,
                "asset_id" character varying(128) NOT NULL,
                "state" character varying(16) NOT NULL,
                "metric" character varying(16) NOT NULL,
                "value" double precision NOT NULL,
                "threshold" double precision NOT NULL,
                "at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_6fa3e57a57b824d853f455ceb5c" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "manufacturing_alarms_asset_at" ON "manufacturing_alarms" ("asset_id", "at")
        `);
    await queryRunner.query(`
            CREATE TABLE "manufacturing_dead_letters" (
                "id" BIGSERIAL NOT NULL,
                "received_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "source" character varying(16) NOT NULL,
                "channel" character varying(512) NOT NULL,
                "asset_id" character varying(128),
                "reason" character varying(64) NOT NULL,
                "detail" text NOT NULL,
                "payload" text NOT NULL,
                CONSTRAINT "PK_7b7f793491bf5fe8d86a4433c0d" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "manufacturing_dead_letters_received_at" ON "manufacturing_dead_letters" ("received_at")
        `);
    await queryRunner.query(`
            CREATE TABLE "manufacturing_predictions" (
                "id" BIGSERIAL NOT NULL,
                "asset_id" character varying(128) NOT NULL,
                "at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "model_version" character varying(64) NOT NULL,
                "value" double precision NOT NULL,
                "modes" jsonb,
                CONSTRAINT "PK_8f4fc0c49fd6e774851aff4e1ea" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "manufacturing_predictions_asset_at" ON "manufacturing_predictions" ("asset_id", "at")
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            DROP INDEX "public"."manufacturing_predictions_asset_at"
        `);
    await queryRunner.query(`
            DROP TABLE "manufacturing_predictions"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."manufacturing_dead_letters_received_at"
        `);
    await queryRunner.query(`
            DROP TABLE "manufacturing_dead_letters"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."manufacturing_alarms_asset_at"
        `);
    await queryRunner.query(`
            DROP TABLE "manufacturing_alarms"
        `);
    await queryRunner.query(`
            DROP TABLE "manufacturing_assets"
        `);
  }
}
