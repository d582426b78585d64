import { Module } from '@nestjs/common';
import { RuntimeModule } from '../../runtime/runtime.module';
import { AssetController } from './assets/asset.controller';
import { AssetRegistry } from './assets/asset-registry.service';
import { AssetRepository } from './assets/asset.repository';
import { PlantMqttService } from './mqtt/plant-mqtt.service';
import { PlantAlarmAudit } from './plant-alarm-audit';
import { PlantStreamController } from './plant-stream.controller';
import { PlantStream } from './plant-stream.service';
import { PlantRecordsRepository } from './records/plant-records.repository';
import { PlantRetention } from './records/plant-retention.service';

/** Sensor readings in (HTTP, MQTT JSON and Sparkplug B), per-asset windows, fault and RUL predictions, alarms. */
@Module({
  imports: [RuntimeModule],
  controllers: [AssetController, PlantStreamController],
  providers: [
    AssetRegistry,
    AssetRepository,
    PlantRecordsRepository,
    PlantRetention,
    PlantStream,
    PlantAlarmAudit,
    PlantMqttService,
  ],
})
export class ManufacturingModule {}
