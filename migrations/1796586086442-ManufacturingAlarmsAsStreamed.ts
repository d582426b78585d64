import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An alarm's site, line and model (name and version) are kept with it, so that the alarm stream can send it again, as
 * first streamed, to a dashboard that reconnects with Last-Event-ID. Nullable: rows stored before have none.
 */
export class ManufacturingAlarmsAsStreamed1796586086442 implements MigrationInterface {
  name = 'ManufacturingAlarmsAsStreamed1796586086442';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ADD "site" character varying(128)
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ADD "line" character varying(128)
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ADD "model_name" character varying(128)
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ADD "model_version" character varying(64)
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms" DROP COLUMN "model_version"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms" DROP COLUMN "model_name"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms" DROP COLUMN "line"
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms" DROP COLUMN "site"
        `);
  }
}
