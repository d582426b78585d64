import { availableParallelism } from 'node:os';
import { plainToInstance, Transform } from 'class-transformer';
import { IsEnum, IsIn, IsInt, IsOptional, IsString, Max, Min, MinLength, validateSync } from 'class-validator';

export const INFERENCE_DEVICES = ['auto', 'cuda', 'cpu'] as const;
export type InferenceDevice = (typeof INFERENCE_DEVICES)[number];

const toInt = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && value.trim() !== '' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;

/**
 * The gateway's whole configuration, read from the environment once at boot (`loadConfig`) and
 * validated; nothing else reads `process.env`. A bad value stops the boot with the variable's name.
 */
export class AppConfig {
  @IsIn(['development', 'test', 'production'])
  NODE_ENV: 'development' | 'test' | 'production' = 'development';

  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  PORT = 3000;

  @IsString()
  HOST = '0.0.0.0';

  @IsIn(['fatal', 'error', 'warn', 'log', 'debug', 'verbose'])
  LOG_LEVEL: 'fatal' | 'error' | 'warn' | 'log' | 'debug' | 'verbose' = 'log';

  /** Root of `<domain>/<name>/<version>/` model folders. */
  @IsString()
  @MinLength(1)
  MODELS_DIR = 'models';

  /** Where the gateway keeps its own state (embedded database, dev keys). */
  @IsString()
  @MinLength(1)
  DATA_DIR = 'data';

  @IsEnum(INFERENCE_DEVICES, { message: `INFERENCE_DEVICE must be one of ${INFERENCE_DEVICES.join(', ')}` })
  INFERENCE_DEVICE: InferenceDevice = 'auto';

  @Transform(toInt)
  @IsInt()
  @Min(0)
  CUDA_DEVICE_ID = 0;

  /** Worker threads that own ONNX Runtime sessions. Default: half the cores, at least one. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(64)
  WORKER_POOL_SIZE = Math.max(1, Math.floor(availableParallelism() / 2));

  /**
   * Batches handed to each worker at once: it runs them one after the other, and the next is already
   * waiting while the main thread answers the last. 2 measured best in bench/runtime.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(16)
  WORKER_PIPELINE_DEPTH = 2;

  /** ORT intra-op threads per worker. Default: the cores divided among the workers. */
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(64)
  ORT_INTRA_OP_THREADS?: number;

  /** Overrides of the per-model batching knobs in model.json, applied to every model when set. */
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  BATCH_MAX_SIZE?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(0)
  BATCH_MAX_QUEUE_DELAY_MS?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  BATCH_MAX_QUEUE_SIZE?: number;

  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  INFERENCE_TIMEOUT_MS?: number;

  /** Largest accepted request body. */
  @Transform(toInt)
  @IsInt()
  @Min(1024)
  BODY_LIMIT_BYTES = 64 * 1024 * 1024;

  /** How long a graceful shutdown waits for in-flight requests before it stops anyway. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  SHUTDOWN_GRACE_MS = 10_000;

  get intraOpThreads(): number {
    return this.ORT_INTRA_OP_THREADS ?? Math.max(1, Math.floor(availableParallelism() / this.WORKER_POOL_SIZE));
  }
}

export class ConfigError extends Error {}

const OPTIONAL_KEYS = [
  'ORT_INTRA_OP_THREADS',
  'BATCH_MAX_SIZE',
  'BATCH_MAX_QUEUE_DELAY_MS',
  'BATCH_MAX_QUEUE_SIZE',
  'INFERENCE_TIMEOUT_MS',
];

/** Builds and validates the configuration from an environment; throws a ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const known = new Set([...Object.keys(new AppConfig()), ...OPTIONAL_KEYS]);
  const plain: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '' && known.has(key)) plain[key] = value;
  }
  const config = plainToInstance(AppConfig, plain, { exposeDefaultValues: true });
  const errors = validateSync(config);
  if (errors.length > 0) {
    const lines = errors.map(
      (e) => `${e.property}=${JSON.stringify(e.value)}: ${Object.values(e.constraints ?? {}).join('; ')}`,
    );
    throw new ConfigError(`Invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return config;
}
