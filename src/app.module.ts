import { DynamicModule, Module } from '@nestjs/common';
import { AuditModule } from './audit/audit.module';
import { AuthModule } from './auth/auth.module';
import { CommonModule } from './common/common.module';
import { AppConfig } from './config/app-config';
import { ConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { FinanceModule } from './domains/finance/finance.module';
import { MedicalModule } from './domains/medical/medical.module';
import { ManufacturingModule } from './domains/manufacturing/manufacturing.module';
import { RuntimeModule } from './runtime/runtime.module';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        CommonModule,
        DatabaseModule,
        AuthModule,
        AuditModule,
        RuntimeModule,
        FinanceModule,
        MedicalModule,
        ManufacturingModule,
      ],
    };
  }
}
