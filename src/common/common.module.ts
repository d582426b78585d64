import { Global, Module } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { HealthController } from './health/health.controller';
import { UploadBudget } from './http/body-budget';
import { ReadinessService } from './health/readiness.service';
import { MetricsController } from './metrics/metrics.controller';
import { MetricsService } from './metrics/metrics.service';

@Global()
@Module({
  controllers: [HealthController, MetricsController],
  providers: [
    MetricsService,
    ReadinessService,
    {
      provide: UploadBudget,
      useFactory: (config: AppConfig) => new UploadBudget(config.MAX_INFLIGHT_BODY_BYTES),
      inject: [AppConfig],
    },
  ],
  exports: [MetricsService, ReadinessService, UploadBudget],
})
export class CommonModule {}
