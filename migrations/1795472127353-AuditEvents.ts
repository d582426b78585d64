import { MigrationInterface, QueryRunner } from 'typeorm';

export class AuditEvents1795472127353 implements MigrationInterface {
  name = 'AuditEvents1795472127353';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "audit_events" (
                "id" BIGSERIAL NOT NULL,
                "writer_id" character varying(200) NOT NULL,
                "seq" bigint NOT NULL,
                "occurred_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "actor" character varying(256),
                "roles" jsonb NOT NULL,
                "tenant" character varying(256),
                "action" character varying(64) NOT NULL,
                "model_name" character varying(128),
                "model_version" character varying(64),
                "request_id" character varying(128) NOT NULL,
                "client_address" character varying(64) NOT NULL,
                "input_digest" character(64),
                "output_summary" jsonb,
                "outcome" character varying(16) NOT NULL,
                "status_code" smallint NOT NULL,
                "latency_ms" double precision NOT NULL,
                "prev_hash" character(64) NOT NULL,
                "hash" character(64) NOT NULL,
                CONSTRAINT "PK_910f64d901a5c3e9878f0d4a407" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "audit_events_tenant" ON "audit_events" ("tenant")
        `);
    await queryRunner.query(`
            CREATE INDEX "audit_events_actor" ON "audit_events" ("actor")
        `);
    await queryRunner.query(`
            CREATE INDEX "audit_events_occurred_at" ON "audit_events" ("occurred_at")
        `);
    await queryRunner.query(`
            CREATE UNIQUE INDEX "audit_events_writer_seq" ON "audit_events" ("writer_id", "seq")
        `);
    // Added by hand (TypeORM does not generate triggers): the table is append-only.
    await queryRunner.query(`
            CREATE FUNCTION "audit_events_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only';
            END
            $$
        `);
    await queryRunner.query(`
            CREATE TRIGGER "audit_events_append_only" BEFORE UPDATE OR DELETE OR TRUNCATE ON "audit_events"
            FOR EACH STATEMENT EXECUTE FUNCTION "audit_events_append_only"()
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            DROP TRIGGER "audit_events_append_only" ON "audit_events"
        `);
    await queryRunner.query(`
            DROP FUNCTION "audit_events_append_only"()
        `);
    await queryRunner.query(`
            DROP INDEX "public"."audit_events_writer_seq"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."audit_events_occurred_at"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."audit_events_actor"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."audit_events_tenant"
        `);
    await queryRunner.query(`
            DROP TABLE "audit_events"
        `);
  }
}
