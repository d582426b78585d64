import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Generated. Which hash each audit row carries: the rows already there get 1 (plain sha256, as they were written),
 * and the gateway writes 2 (HMAC-SHA256 under a key derived from AUDIT_HMAC_SECRET) from now on, so GET
 * /v1/audit/verify checks each row by its own hash and counts the unkeyed ones. A column with a constant default
 * is added without rewriting or scanning the table (PostgreSQL 11 and later), so an upgrade holds audit commits
 * only for a moment whatever the trail's size. A gateway of an earlier version that inserts without the column
 * writes 1, which is what its rows are.
 */
export class AuditEventsHashVersion1796574667332 implements MigrationInterface {
  name = 'AuditEventsHashVersion1796574667332';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "audit_events"
            ADD "hash_version" smallint NOT NULL DEFAULT '1'
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "audit_events" DROP COLUMN "hash_version"
        `);
  }
}
