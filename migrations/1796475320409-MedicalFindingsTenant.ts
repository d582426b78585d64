import { MigrationInterface, QueryRunner } from 'typeorm';

export class MedicalFindingsTenant1796475320409 implements MigrationInterface {
  name = 'MedicalFindingsTenant1796475320409';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "medical_findings"
            ADD "tenant" character varying(256) NOT NULL DEFAULT ''
        `);
    await queryRunner.query(`
            ALTER TABLE "medical_findings" DROP CONSTRAINT "PK_4a321d445e9035947a10dc28163"
        `);
    await queryRunner.query(`
            ALTER TABLE "medical_findings"
            ADD CONSTRAINT "PK_5dc2772a82b0e44282e9d5491fc" PRIMARY KEY (
                    "instance_key",
                    "model_name",
                    "model_version",
                    "tenant"
                )
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "medical_findings" DROP CONSTRAINT "PK_5dc2772a82b0e44282e9d5491fc"
        `);
    await queryRunner.query(`
            ALTER TABLE "medical_findings"
            ADD CONSTRAINT "PK_4a321d445e9035947a10dc28163" PRIMARY KEY ("instance_key", "model_name", "model_version")
        `);
    await queryRunner.query(`
            ALTER TABLE "medical_findings" DROP COLUMN "tenant"
        `);
  }
}
