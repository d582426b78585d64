import { Module } from '@nestjs/common';
import { RuntimeModule } from '../../runtime/runtime.module';
import { CreditAssessmentController } from './credit-assessment.controller';
import { CreditAssessmentService } from './credit-assessment.service';
import { FinanceModels } from './finance-models';
import { FraudScoringController } from './fraud-scoring.controller';
import { FraudScoringService } from './fraud-scoring.service';
import { ShadowScorer } from './shadow-scorer';
import { IdempotencyService } from './idempotency/idempotency.service';
import { IdempotencyRepository } from './idempotency/idempotency.repository';

/** Fraud scoring and credit assessment for a bank's risk engine, on the finance reference models. */
@Module({
  imports: [RuntimeModule],
  controllers: [FraudScoringController, CreditAssessmentController],
  providers: [
    FinanceModels,
    FraudScoringService,
    CreditAssessmentService,
    IdempotencyRepository,
    IdempotencyService,
    ShadowScorer,
  ],
})
export class FinanceModule {}
