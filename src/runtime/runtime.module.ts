import { Module } from '@nestjs/common';
import { InferenceEngine } from './inference-engine.service';
import { OipController } from './oip/oip.controller';
import { OipService } from './oip/oip.service';

@Module({
  controllers: [OipController],
  providers: [InferenceEngine, OipService],
  exports: [InferenceEngine],
})
export class RuntimeModule {}
