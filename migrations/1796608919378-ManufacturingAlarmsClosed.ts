import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A raised alarm the gateway clears itself (its asset put as another kind, or removed) is stored with its `reason`,
 * and with no value or threshold: no prediction moved it. Nullable: alarms a prediction moves have no reason.
 */
export class ManufacturingAlarmsClosed1796608919378 implements MigrationInterface {
  name = 'ManufacturingAlarmsClosed1796608919378';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ADD "reason" character varying(32)
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ALTER COLUMN "value" DROP NOT NULL
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ALTER COLUMN "threshold" DROP NOT NULL
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ALTER COLUMN "threshold"
            SET NOT NULL
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms"
            ALTER COLUMN "value"
            SET NOT NULL
        `);
    await queryRunner.query(`
            ALTER TABLE "manufacturing_alarms" DROP COLUMN "reason"
        `);
  }
}
