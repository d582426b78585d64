import { Injectable } from '@nestjs/common';
import { Between, DataSource, Repository } from 'typeorm';
import { AlarmEntity } from './alarm.entity';
import { DeadLetterEntity } from './dead-letter.entity';
import { PredictionEntity } from './prediction.entity';

/** The one place that touches the predictions, alarms and dead-letter tables. */
@Injectable()
export class PlantRecordsRepository {
  private readonly predictions: Repository<PredictionEntity>;
  private readonly alarms: Repository<AlarmEntity>;
  private readonly deadLetters: Repository<DeadLetterEntity>;

  constructor(dataSource: DataSource) {
    this.predictions = dataSource.getRepository(PredictionEntity);
    this.alarms = dataSource.getRepository(AlarmEntity);
    this.deadLetters = dataSource.getRepository(DeadLetterEntity);
  }

  async addPredictions(rows: Array<Omit<PredictionEntity, 'id'>>): Promise<void> {
    // Chunks keep each INSERT's parameter count well under PostgreSQL's 65,535.
    for (let i = 0; i < rows.length; i += 5000) await this.predictions.insert(rows.slice(i, i + 5000));
  }

  async addAlarm(row: Omit<AlarmEntity, 'id'>): Promise<void> {
    await this.alarms.insert(row);
  }

  async addDeadLetters(rows: Array<Omit<DeadLetterEntity, 'id'>>): Promise<void> {
    if (rows.length > 0) await this.deadLetters.insert(rows);
  }

  async predictionsOf(assetId: string, from: Date, to: Date, limit: number): Promise<PredictionEntity[]> {
    return this.predictions.find({ where: { assetId, at: Between(from, to) }, order: { at: 'ASC' }, take: limit });
  }

  async alarmsOf(assetId: string | undefined, limit: number): Promise<AlarmEntity[]> {
    return this.alarms.find({ where: assetId ? { assetId } : {}, order: { id: 'DESC' }, take: limit });
  }

  async deadLettersSince(from: Date, limit: number): Promise<DeadLetterEntity[]> {
    return this.deadLetters.find({
      where: { receivedAt: Between(from, new Date(8.64e15)) },
      order: { id: 'DESC' },
      take: limit,
    });
  }
}
