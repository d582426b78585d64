import { join } from 'node:path';
import { Global, Inject, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AppConfig } from '../config/app-config';
import { DatabaseHealth } from './database-health';
import { dataSourceOptions } from './data-source.options';
import {
  EMBEDDED_POSTGRES,
  EmbeddedPostgres,
  embeddedDurabilityWarning,
  startEmbeddedPostgres,
} from './embedded-postgres';

const CONNECT_ATTEMPTS = 5;
/** The DataSource's pool on embedded PGlite, which runs one query at a time anyway. */
const EMBEDDED_POOL_SIZE = 4;

/**
 * TypeORM over PostgreSQL: the server named by DATABASE_URL, or embedded PGlite in DATA_DIR/pglite.
 * Migrations run at boot; `synchronize` stays off.
 */
@Global()
@Module({
  providers: [
    {
      provide: EMBEDDED_POSTGRES,
      inject: [AppConfig],
      // Connections: the DataSource's pool. The audit trail writes beside the database, not by socket.
      useFactory: async (config: AppConfig): Promise<EmbeddedPostgres | null> => {
        if (config.DATABASE_URL) return null;
        const warning = embeddedDurabilityWarning(config);
        if (warning) new Logger('Database').warn({ msg: warning });
        return startEmbeddedPostgres(join(config.DATA_DIR, 'pglite'), EMBEDDED_POOL_SIZE);
      },
    },
    {
      provide: DataSource,
      inject: [AppConfig, EMBEDDED_POSTGRES],
      useFactory: async (config: AppConfig, embedded: EmbeddedPostgres | null): Promise<DataSource> => {
        const target = embedded ? { host: embedded.host, port: embedded.port } : { url: config.DATABASE_URL };
        const poolSize = embedded ? EMBEDDED_POOL_SIZE : config.DATABASE_POOL_SIZE;
        const dataSource = new DataSource(dataSourceOptions(target, poolSize));
        await connect(dataSource, embedded ? 'embedded PGlite' : 'DATABASE_URL');
        const applied = await dataSource.runMigrations({ transaction: 'each' });
        if (applied.length > 0) {
          new Logger('Database').log({ msg: 'migrations applied', migrations: applied.map((m) => m.name) });
        }
        return dataSource;
      },
    },
    DatabaseHealth,
  ],
  exports: [DataSource, EMBEDDED_POSTGRES],
})
export class DatabaseModule implements OnApplicationShutdown {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(EMBEDDED_POSTGRES) private readonly embedded: EmbeddedPostgres | null,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.embedded?.stop();
  }
}

/** A database that is still starting (a container beside the gateway) gets a few seconds. */
async function connect(dataSource: DataSource, what: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await dataSource.initialize();
      return;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (attempt >= CONNECT_ATTEMPTS) {
        throw new Error(`cannot connect to the database (${what}): ${reason}`, { cause: error });
      }
      await new Promise((ok) => setTimeout(ok, 1000 * attempt));
    }
  }
}
