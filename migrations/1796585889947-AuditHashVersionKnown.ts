import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `hash_version` holds only the versions the gateway writes and verify knows: 1 (unkeyed sha256) and 2 (HMAC-SHA256
 * under the row key). Another value could only be put there by hand, and verify names such a row as a break.
 *
 * Generated, then NOT VALID added by hand (see 1796565569661-AuditEventsChecks): the rows already there are not
 * scanned at the upgrade (the gateway never wrote another value; one put there by hand is verify's to name, not a
 * boot failure's), and `ALTER TABLE audit_events VALIDATE CONSTRAINT audit_events_hash_version_known` proves them
 * later without blocking commits.
 */
export class AuditHashVersionKnown1796585889947 implements MigrationInterface {
  name = 'AuditHashVersionKnown1796585889947';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "audit_events"
            ADD CONSTRAINT "audit_events_hash_version_known" CHECK ("hash_version" IN (1, 2)) NOT VALID
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "audit_events" DROP CONSTRAINT "audit_events_hash_version_known"
        `);
  }
}
