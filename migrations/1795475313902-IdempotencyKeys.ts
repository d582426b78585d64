import { MigrationInterface, QueryRunner } from 'typeorm';

export class IdempotencyKeys1795475313902 implements MigrationInterface {
  name = 'IdempotencyKeys1795475313902';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "idempotency_keys" (
                "scope" character varying(400) NOT NULL,
                "idempotency_key" character varying(200) NOT NULL,
                "request_digest" character(64) NOT NULL,
                "state" character varying(16) NOT NULL,
                "response_status" smallint,
                "response_body" jsonb,
                "created_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_bcdc8d32ac07ecba337980fe14f" PRIMARY KEY ("scope", "idempotency_key")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "idempotency_keys_expires_at" ON "idempotency_keys" ("expires_at")
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            DROP INDEX "public"."idempotency_keys_expires_at"
        `);
    await queryRunner.query(`
            DROP TABLE "idempotency_keys"
        `);
  }
}
