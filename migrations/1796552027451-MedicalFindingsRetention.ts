import { MigrationInterface, QueryRunner } from 'typeorm';

export class MedicalFindingsRetention1796552027451 implements MigrationInterface {
  name = 'MedicalFindingsRetention1796552027451';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE INDEX "medical_findings_analysed_at" ON "medical_findings" ("analysed_at")
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            DROP INDEX "public"."medical_findings_analysed_at"
        `);
  }
}
