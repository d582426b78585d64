import type { DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { DroppingClient } from './dropping-client';
import { ENTITIES } from './entities';

export interface ConnectionTarget {
  url?: string;
  host?: string;
  port?: number;
}

/** One set of options for the gateway and for the migration CLI: same entities, same migrations. */
export function dataSourceOptions(target: ConnectionTarget, poolSize: number): DataSourceOptions {
  return {
    type: 'postgres',
    ...(target.url
      ? { url: target.url }
      : { host: target.host, port: target.port, username: 'postgres', database: 'postgres' }),
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsTableName: 'schema_migrations',
    synchronize: false,
    migrationsRun: false,
    // Off: a failed query's log line would carry its parameters. The audit writer logs failures itself.
    logging: false,
    extra: {
      max: poolSize,
      // Fail fast while the database is down: requests get 503 instead of hanging.
      connectionTimeoutMillis: 2000,
      query_timeout: 10_000,
      // A connection whose query went unanswered that long is closed, not used again (see DroppingClient).
      Client: DroppingClient,
      application_name: 'inference-gateway',
    },
  };
}
