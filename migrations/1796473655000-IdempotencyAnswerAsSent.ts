import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Kept answers as `json` rather than `jsonb`: a replay then returns the answer with its keys in the
 * order first sent. Written by hand: TypeORM's generator would drop and re-add the column, losing
 * the answers already kept; the cast keeps them.
 */
export class IdempotencyAnswerAsSent1796473655000 implements MigrationInterface {
  name = 'IdempotencyAnswerAsSent1796473655000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "idempotency_keys"
            ALTER COLUMN "response_body" TYPE json USING "response_body"::json
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "idempotency_keys"
            ALTER COLUMN "response_body" TYPE jsonb USING "response_body"::jsonb
        `);
  }
}
