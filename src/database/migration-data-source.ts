/**
 * The DataSource the TypeORM CLI uses to generate and check migrations (`npm run
 * migrations:generate`, `npm run migrations:check`), against the PostgreSQL in DATABASE_URL.
 */
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadConfig } from '../config/app-config';
import { dataSourceOptions } from './data-source.options';

const url = loadConfig().DATABASE_URL;
if (!url) throw new Error('DATABASE_URL must name a scratch PostgreSQL database for migration generation');

export default new DataSource(dataSourceOptions({ url }, 1));
