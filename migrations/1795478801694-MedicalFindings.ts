import { MigrationInterface, QueryRunner } from 'typeorm';

export class MedicalFindings1795478801694 implements MigrationInterface {
  name = 'MedicalFindings1795478801694';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "medical_findings" (
                "instance_key" character varying(64) NOT NULL,
                "model_name" character varying(128) NOT NULL,
                "model_version" character varying(64) NOT NULL,
                "study_key" character varying(64) NOT NULL,
                "series_key" character varying(64) NOT NULL,
                "sealed_refs" bytea NOT NULL,
                "findings" jsonb NOT NULL,
                "analysed_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_4a321d445e9035947a10dc28163" PRIMARY KEY ("instance_key", "model_name", "model_version")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "medical_findings_study_key" ON "medical_findings" ("study_key")
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            DROP INDEX "public"."medical_findings_study_key"
        `);
    await queryRunner.query(`
            DROP TABLE "medical_findings"
        `);
  }
}
