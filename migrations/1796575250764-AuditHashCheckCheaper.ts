import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The hashes' check of 1796565569661-AuditEventsChecks, written without the regex's bounded repeat: PostgreSQL's regex
 * engine builds a large automaton for `[0-9a-f]{64}`, and evaluating it on `hash` and `prev_hash` took embedded
 * PGlite about 15-20 µs of each inserted row's 45-50 (a third of the audit trail's database work). A length and a
 * negated character class hold exactly the same values (length() of a char(64) ignores its trailing blanks, as the
 * regex did, reading the value as text) at about the cost of no check.
 *
 * Generated, then NOT VALID added by hand (see 1796565569661-AuditEventsChecks): every row the old check held, the new
 * one holds, so `ALTER TABLE audit_events VALIDATE CONSTRAINT audit_events_hashes_lower_hex` proves the old rows later
 * without blocking commits. `down` was written by hand (the generator's nested the old check's definition).
 */
export class AuditHashCheckCheaper1796575250764 implements MigrationInterface {
  name = 'AuditHashCheckCheaper1796575250764';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "audit_events" DROP CONSTRAINT "audit_events_hashes_hex"
        `);
    await queryRunner.query(`
            ALTER TABLE "audit_events"
            ADD CONSTRAINT "audit_events_hashes_lower_hex" CHECK (
                    length("hash") = 64
                    AND "hash" !~ '[^0-9a-f]'
                    AND length("prev_hash") = 64
                    AND "prev_hash" !~ '[^0-9a-f]'
                ) NOT VALID
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "audit_events" DROP CONSTRAINT "audit_events_hashes_lower_hex"
        `);
    await queryRunner.query(`
            ALTER TABLE "audit_events"
            ADD CONSTRAINT "audit_events_hashes_hex" CHECK (
                    "hash" ~ '^[0-9a-f]{64}$'
                    AND "prev_hash" ~ '^[0-9a-f]{64}$'
                ) NOT VALID
        `);
  }
}
