import type { ClientConfig } from 'pg';
import type { DataSourceOptions } from 'typeorm';

type PostgresConnectionOptions = Extract<DataSourceOptions, { type: 'postgres' }>;

/**
 * The DataSource's connection settings (dataSourceOptions: a URL, which carries any TLS settings as sslmode, or
 * embedded PGlite's socket) for a `pg` connection of its own beside the pool (the audit commit thread's pool, the
 * alarm listener), named `inference-gateway-<role>` in pg_stat_activity; at `url` instead where given (the alarm
 * listener's DATABASE_LISTEN_URL), with the same timeouts.
 */
export function clientConfigOf(options: DataSourceOptions, role: string, url?: string): ClientConfig {
  const postgres = options as PostgresConnectionOptions;
  const extra = (postgres.extra ?? {}) as ClientConfig;
  const connectionString = url ?? postgres.url;
  return {
    ...(connectionString
      ? { connectionString }
      : {
          host: postgres.host,
          port: postgres.port,
          user: postgres.username,
          password: typeof postgres.password === 'string' ? postgres.password : undefined,
          database: postgres.database,
        }),
    connectionTimeoutMillis: extra.connectionTimeoutMillis,
    query_timeout: extra.query_timeout,
    application_name: `${extra.application_name ?? 'inference-gateway'}-${role}`,
  };
}
