import { MigrationInterface, QueryRunner } from 'typeorm';

export class IdempotencyPendingLease1796454952900 implements MigrationInterface {
  name = 'IdempotencyPendingLease1796454952900';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "idempotency_keys"
            ADD "pending_until" TIMESTAMP WITH TIME ZONE
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "idempotency_keys" DROP COLUMN "pending_until"
        `);
  }
}
