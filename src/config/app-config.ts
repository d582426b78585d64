import { accessSync, constants, mkdtempSync, rmdirSync, statSync, type Stats } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { plainToInstance, Transform } from 'class-transformer';
import { ISO_INSTANT, isoTimeMs, isoTimeRefusal, type TimeFloor, type TimeRange } from '../common/iso-time';
import { makeDirSync } from '../common/make-dir';
import {
  IsBoolean,
  IsEnum,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  Min,
  MinLength,
  ValidateBy,
  validateSync,
  type ValidationArguments,
} from 'class-validator';

export const INFERENCE_DEVICES = ['auto', 'cuda', 'cpu'] as const;
export type InferenceDevice = (typeof INFERENCE_DEVICES)[number];

/** The bundled reference lesion model, served by the medical routes unless MEDICAL_MODEL names another. */
export const DEFAULT_MEDICAL_MODEL = 'breast-us-lesion';

const toInt = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && value.trim() !== '' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;

/** The longest delay a Node.js timer takes: a longer one fires after 1 ms (MAX_TIMEOUT_MS of the model manifest schema). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * A URL's port, where its authority names one, is 1-65535 (an empty port is the scheme's default). The clients'
 * URL parsers take `host:99999`, and the boot then failed on connecting with Node's words, not naming the variable.
 */
function urlPortRefusal(url: string): string | undefined {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(url)?.[1];
  if (authority === undefined) return undefined;
  const port = /^(?:\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority.slice(authority.lastIndexOf('@') + 1));
  if (!port) return 'must give its port as digits after the host';
  if (port[1] && !(Number(port[1]) >= 1 && Number(port[1]) <= 65_535)) return 'must give a port from 1 to 65535';
  return undefined;
}

/** A URL whose port, if it names one, can be connected to; the message never repeats the value (it may hold a password). */
function HasValidPort(): PropertyDecorator {
  return ValidateBy({
    name: 'hasValidPort',
    validator: {
      validate: (value: unknown) => typeof value !== 'string' || urlPortRefusal(value) === undefined,
      defaultMessage: ({ property, value }: ValidationArguments) => `${property} ${urlPortRefusal(String(value))}`,
    },
  });
}

/**
 * A URL whose user, password and path decode: the clients decode their percent-escapes (pg-connection-string
 * with decodeURIComponent), and a bad one failed the boot with "URI malformed" and a stack, not naming the
 * variable. The message never repeats the value.
 */
function HasDecodableParts(): PropertyDecorator {
  return ValidateBy({
    name: 'hasDecodableParts',
    validator: {
      validate: (value: unknown) => {
        if (typeof value !== 'string' || !URL.canParse(value)) return true; // the scheme's and port's own checks say why
        const url = new URL(value);
        try {
          for (const part of [url.username, url.password, url.pathname]) decodeURIComponent(part);
          return true;
        } catch {
          return false;
        }
      },
      defaultMessage: ({ property }: ValidationArguments) =>
        `${property} must be a URL whose user, password and path are percent-encoded correctly`,
    },
  });
}

/** `AETITLE@host:port` with a port from 1 to 65535 (the pattern alone let 99999 through, and the first forward failed on it). */
function HasForwardPort(): PropertyDecorator {
  return ValidateBy({
    name: 'hasForwardPort',
    validator: {
      validate: (value: unknown) => {
        if (typeof value !== 'string') return true;
        const port = Number(/:(\d+)$/.exec(value)?.[1] ?? '1');
        return port >= 1 && port <= 65_535;
      },
      defaultMessage: ({ property }: ValidationArguments) => `${property} must give a port from 1 to 65535`,
    },
  });
}

/**
 * An instant as a request's time is written (common/iso-time's ISO_INSTANT: with Z or an offset), one that exists and
 * is not after the boot: a floor in the future would refuse every request.
 */
function IsPastInstant(): PropertyDecorator {
  const refusal = (value: unknown): string | undefined =>
    isoTimeRefusal(value, ISO_INSTANT) ??
    (isoTimeMs(value, ISO_INSTANT) > Date.now() ? 'must not be after the current time' : undefined);
  return ValidateBy({
    name: 'isPastInstant',
    validator: {
      validate: (value: unknown) => refusal(value) === undefined,
      defaultMessage: ({ property, value }: ValidationArguments) => `${property} ${refusal(value)}`,
    },
  });
}

/** The shortest audit secret taken, current or retired (characters). */
const MIN_AUDIT_SECRET = 32;

/** A JSON array of strings as such, anything else as it came (the validator then says why it is refused). */
const toStringList = ({ value }: { value: unknown }): unknown => {
  if (typeof value !== 'string') return value;
  try {
    const parsed: unknown = JSON.parse(value);
    return Array.isArray(parsed) && parsed.every((item) => typeof item === 'string') ? parsed : value;
  } catch {
    return value;
  }
};

/** Why a list of retired audit secrets is refused, or undefined; by position only, never repeating a secret. */
function retiredSecretsRefusal(value: unknown, current: string | undefined): string | undefined {
  if (!Array.isArray(value)) {
    return 'must be a JSON array of strings, the newest retired secret first: ["<secret>", "<older secret>"]';
  }
  const secrets = value as string[];
  for (const [i, secret] of secrets.entries()) {
    if (secret.length < MIN_AUDIT_SECRET) return `item ${i + 1} is shorter than ${MIN_AUDIT_SECRET} characters`;
    if (secret === current)
      return `item ${i + 1} is AUDIT_HMAC_SECRET itself: only a secret another replaced is retired`;
    const first = secrets.indexOf(secret);
    if (first < i) return `item ${i + 1} repeats item ${first + 1}`;
  }
  return undefined;
}

/** A list of retired audit secrets (AUDIT_HMAC_PREVIOUS_SECRETS); the message names the item, never its value. */
function IsRetiredSecretList(): PropertyDecorator {
  return ValidateBy({
    name: 'isRetiredSecretList',
    validator: {
      validate: (value: unknown, args?: ValidationArguments) =>
        retiredSecretsRefusal(value, (args?.object as AppConfig | undefined)?.AUDIT_HMAC_SECRET) === undefined,
      defaultMessage: ({ property, value, object }: ValidationArguments) =>
        `${property} ${retiredSecretsRefusal(value, (object as AppConfig).AUDIT_HMAC_SECRET)}`,
    },
  });
}

/** A comma-separated list as its trimmed items (an empty item kept, for the validator to name), anything else as it came. */
const toCommaList = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' ? value.split(',').map((item) => item.trim()) : value;

/**
 * Why a list of CORS origins is refused, or undefined. Each item is an origin exactly as a browser sends it in
 * `Origin` (scheme, host, port if not the scheme's own; lower case, no path, no trailing slash), as it is compared
 * byte for byte: `viewer.example` (no scheme) or `https://viewer.example/app` (a path) matched no browser's request
 * and left the app refused with nothing said. `*` is refused: the gateway holds PHI and card data, and each browser
 * app that may call it is named.
 */
function corsOriginsRefusal(value: unknown): string | undefined {
  if (!Array.isArray(value)) return 'must be a comma-separated list of origins (https://viewer.hospital.example)';
  for (const [i, item] of (value as unknown[]).entries()) {
    const origin = String(item);
    const which = `item ${i + 1}`;
    if (origin === '') return `${which} is empty`;
    if (origin === '*') {
      return `${which} is *: list each origin allowed (https://viewer.hospital.example); any origin is not accepted`;
    }
    const quoted = JSON.stringify(origin.slice(0, 100));
    if (!URL.canParse(origin)) {
      return `${which} (${quoted}) is not an origin: scheme://host[:port], e.g. https://viewer.hospital.example`;
    }
    const url = new URL(origin);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      return `${which} (${quoted}) must be an http:// or https:// origin`;
    }
    if (url.username || url.password || url.pathname !== '/' || url.search || url.hash) {
      return `${which} (${quoted}) has a path, query, fragment or user: an origin is scheme://host[:port] only`;
    }
    if (url.origin !== origin) return `${which} (${quoted}) must be written as a browser sends it: ${url.origin}`;
  }
  return undefined;
}

/** A list of exact origins for CORS (CORS_ORIGINS); the message names the item and why. */
function IsCorsOriginList(): PropertyDecorator {
  return ValidateBy({
    name: 'isCorsOriginList',
    validator: {
      validate: (value: unknown) => corsOriginsRefusal(value) === undefined,
      defaultMessage: ({ property, value }: ValidationArguments) => `${property} ${corsOriginsRefusal(value)}`,
    },
  });
}

/** FINANCE_SHADOW_MODELS: `name=version` comma-separated. */
const SHADOW_MODELS_PATTERN = /^[a-z0-9][a-z0-9._-]*=[A-Za-z0-9._-]+(,[a-z0-9][a-z0-9._-]*=[A-Za-z0-9._-]+)*$/;

/**
 * Why a list of shadow models is refused, or undefined: a model named twice (`card-fraud=2,card-fraud=3`) has one
 * challenger only, and the last one given was kept with nothing said, so the version the operator meant to try may
 * not be the one scored. A list the pattern refuses is left to it.
 */
function shadowModelsRefusal(value: unknown): string | undefined {
  if (typeof value !== 'string' || !SHADOW_MODELS_PATTERN.test(value)) return undefined;
  const seen = new Map<string, string>();
  for (const pair of value.split(',')) {
    const [name, version] = pair.split('=');
    const first = seen.get(name);
    if (first !== undefined) {
      return `names ${name} twice (${name}=${first}, ${name}=${version}): a model runs one challenger in shadow`;
    }
    seen.set(name, version);
  }
  return undefined;
}

/** A list of shadow models (FINANCE_SHADOW_MODELS) naming each model once; the message names the model. */
function HasOneShadowPerModel(): PropertyDecorator {
  return ValidateBy({
    name: 'hasOneShadowPerModel',
    validator: {
      validate: (value: unknown) => shadowModelsRefusal(value) === undefined,
      defaultMessage: ({ property, value }: ValidationArguments) => `${property} ${shadowModelsRefusal(value)}`,
    },
  });
}

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

  /**
   * A run still going this long past its model's timeoutMs (INFERENCE_TIMEOUT_MS) marks its worker stalled:
   * it is taken out of service and replaced, its requests having been answered 504 at their deadlines.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  WORKER_STALL_MARGIN_MS = 5_000;

  /**
   * After this long with no inference worker serving (replacements failing to load, stalled threads that
   * will not stop), /health/live answers 503 so that an orchestrator restarts the process; 0: never.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  WORKER_OUTAGE_LIVENESS_MS = 300_000;

  /**
   * How long each model's load at boot (its session, then its warm-up) may take before the boot stops, naming it;
   * 0: no limit. A hang there (a driver, a device that never answers) left the gateway never ready and never failing.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  MODEL_LOAD_TIMEOUT_MS = 300_000;

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
  @Max(MAX_TIMER_MS)
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
  @Max(MAX_TIMER_MS)
  INFERENCE_TIMEOUT_MS?: number;

  /** Largest accepted request body. */
  @Transform(toInt)
  @IsInt()
  @Min(1024)
  BODY_LIMIT_BYTES = 64 * 1024 * 1024;

  /**
   * Bytes of request bodies held at once (received, or still being processed); a new upload past it
   * is answered 503 with Retry-After. One upload alone is always let in, whatever its size.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1024 * 1024)
  MAX_INFLIGHT_BODY_BYTES = 1024 * 1024 * 1024;

  /** How long a graceful shutdown waits for in-flight requests before it stops anyway. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  SHUTDOWN_GRACE_MS = 10_000;

  /**
   * On SIGTERM/SIGINT, how long the gateway keeps serving, every request as usual, with /health/ready
   * already answering 503, before it stops accepting connections and SHUTDOWN_GRACE_MS begins: the time a
   * load balancer or Kubernetes needs to see it not ready and stop sending it new connections. Closing the
   * listener at once resets the connections still waiting in the kernel's accept queue, unanswered.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  SHUTDOWN_DRAIN_MS = 0;

  /** PostgreSQL connection string (secret). Unset: embedded PGlite in DATA_DIR/pglite. */
  @IsOptional()
  @IsString()
  // The message never repeats the value: it holds a password.
  @Matches(/^postgres(ql)?:\/\/\S+$/, { message: 'DATABASE_URL must be a postgres:// or postgresql:// URL' })
  @HasValidPort()
  @HasDecodableParts()
  DATABASE_URL?: string;

  /**
   * The alarm listener's own PostgreSQL connection string (secret), where DATABASE_URL goes through a connection
   * pooler in transaction mode (PgBouncer's), which does not keep LISTEN's session: the same database at the server's
   * own address, or through a pooler in session mode. Unset: DATABASE_URL's. Needs DATABASE_URL.
   */
  @IsOptional()
  @IsString()
  @Matches(/^postgres(ql)?:\/\/\S+$/, { message: 'DATABASE_LISTEN_URL must be a postgres:// or postgresql:// URL' })
  @HasValidPort()
  @HasDecodableParts()
  DATABASE_LISTEN_URL?: string;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(100)
  DATABASE_POOL_SIZE = 10;

  /** How often /health/ready asks the database whether it answers (SELECT 1), traffic or not; 0: never. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  DATABASE_CHECK_INTERVAL_MS = 5000;

  /** Algorithms a token may be signed with; HS256 also needs AUTH_HS256_SECRET. */
  @IsString()
  @Matches(/^(RS256|ES256|HS256)(,(RS256|ES256|HS256))*$/, {
    message: 'AUTH_ALGORITHMS must be a comma-separated list of RS256, ES256, HS256',
  })
  AUTH_ALGORITHMS = 'RS256,ES256';

  /** Public keys as PEM files: `path` or `kid=path`, comma-separated (kid defaults to the file name). */
  @IsOptional()
  @IsString()
  AUTH_PUBLIC_KEYS?: string;

  /** A JWKS file of public keys by kid; re-read when it changes, so keys rotate without a restart. */
  @IsOptional()
  @IsString()
  AUTH_JWKS_FILE?: string;

  /** Shared secret for HS256 (secret, at least 32 characters); only used when AUTH_ALGORITHMS has HS256. */
  @IsOptional()
  @IsString()
  @MinLength(32)
  AUTH_HS256_SECRET?: string;

  @IsString()
  @MinLength(1)
  AUTH_ISSUER = 'inference-gateway';

  @IsString()
  @MinLength(1)
  AUTH_AUDIENCE = 'inference-gateway';

  /** Seconds of clock difference tolerated on exp and nbf. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(300)
  AUTH_CLOCK_SKEW_S = 30;

  /** Claim holding the caller's roles (an array or a space-separated string); dots reach into objects. */
  @IsString()
  @MinLength(1)
  AUTH_ROLES_CLAIM = 'roles';

  @IsString()
  @MinLength(1)
  AUTH_TENANT_CLAIM = 'tenant';

  /**
   * Browser apps on other origins allowed to call the gateway (CORS): exact origins, comma-separated
   * (`https://viewer.hospital.example,https://console.bank.example`). Unset: no CORS (no CORS headers; a
   * preflight is answered as any OPTIONS request is).
   */
  @IsOptional()
  @Transform(toCommaList)
  @IsCorsOriginList()
  CORS_ORIGINS?: string[];

  /** How long a browser may keep a preflight's answer (Access-Control-Max-Age), in seconds; 0: ask each time. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(86_400)
  CORS_MAX_AGE_S = 600;

  /** Requests per subject per RATE_LIMIT_WINDOW_MS; 0 turns rate limiting off. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  RATE_LIMIT_REQUESTS = 2000;

  @Transform(toInt)
  @IsInt()
  @Min(100)
  @Max(MAX_TIMER_MS)
  RATE_LIMIT_WINDOW_MS = 1000;

  /**
   * Requests refused for want of a valid token (401) per client address per AUTH_REFUSAL_WINDOW_MS; past it,
   * that address's further ones are answered 429 and audited as one summary row per window. 0 turns it off.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  AUTH_REFUSAL_LIMIT = 100;

  @Transform(toInt)
  @IsInt()
  @Min(1000)
  @Max(MAX_TIMER_MS)
  AUTH_REFUSAL_WINDOW_MS = 60_000;

  /** Server secret for the audit input digests (secret, at least 32 characters). Development generates one. */
  @IsOptional()
  @IsString()
  @MinLength(MIN_AUDIT_SECRET)
  AUDIT_HMAC_SECRET?: string;

  /**
   * Audit secrets retired by rotations (secret), newest first, as a JSON array of strings: rows, anchors written under
   * one of them still verify (audit-verify.ts). JSON, as a secret may hold any character a separator would be.
   */
  @IsOptional()
  @Transform(toStringList)
  @IsRetiredSecretList()
  AUDIT_HMAC_PREVIOUS_SECRETS?: string[];

  /** Names this process's hash chain; default: host, pid and start time, so each run starts a chain. */
  @IsOptional()
  @IsString()
  @MinLength(1)
  AUDIT_WRITER_ID?: string;

  /**
   * How often each chain's head (seq, hash) is anchored outside the database, in AUDIT_ANCHOR_FILE
   * and as a log line, when it moved since the last anchor; once more at shutdown. 0 turns anchoring off.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  AUDIT_ANCHOR_INTERVAL_MS = 60_000;

  /**
   * The anchor file (JSON lines, one HMAC'd chain head each); default: DATA_DIR/audit-anchors.jsonl. While
   * another running gateway holds it, this one anchors in the first free `<name>.2.jsonl`, `.3`, ... beside it.
   */
  @IsOptional()
  @IsString()
  @MinLength(1)
  AUDIT_ANCHOR_FILE?: string;

  /**
   * Benchmarks only (bench/audit measures what the audit trail costs): `false` answers without
   * writing audit rows. Refused in production.
   */
  @Transform(({ value }: { value: unknown }) => (value === 'false' ? false : value === 'true' ? true : value))
  @IsBoolean()
  AUDIT_ENABLED = true;

  /**
   * Audit commits in flight at once; each lane is its own hash chain (`<AUDIT_WRITER_ID>/<lane>`),
   * so a slow commit does not hold up the rows behind it.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(32)
  AUDIT_LANES = 4;

  /**
   * Longest a row waits for company before its group is written, while other requests are still
   * on their way; 0 writes at once. A lone request never waits.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(100)
  AUDIT_MAX_DELAY_MS = 2;

  /**
   * Most audit rows written in one transaction. A burst of answers larger than this is written as
   * several commits on free lanes, so the first of them are answered while the rest are written and
   * the event loop has work meanwhile: with one commit for all 64 requests of a c=64 load, the
   * event loop stood idle a third of the time, waiting for it (see docs/benchmarks.md, bench/audit).
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(2000)
  AUDIT_MAX_BATCH = 32;

  /**
   * Longest an audit commit may take before its requests are refused (503) as if the database were
   * away: longer than PostgreSQL's own query timeout (10 s), so that its cause is the one reported;
   * it is what bounds a wait on embedded PGlite, which has none.
   */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  @Max(MAX_TIMER_MS)
  AUDIT_COMMIT_TIMEOUT_MS = 15_000;

  /**
   * Challenger versions run in shadow, `name=version` comma-separated (e.g. `card-fraud=2`): scored
   * beside the default version on every request, recorded in the audit row, never returned. One per model.
   */
  @IsOptional()
  @Matches(SHADOW_MODELS_PATTERN, {
    message: 'FINANCE_SHADOW_MODELS must be name=version[,name=version...]',
  })
  @HasOneShadowPerModel()
  FINANCE_SHADOW_MODELS?: string;

  /**
   * How long an answer waits for its challenger once the champion has scored: a slow or stuck
   * challenger must not hold a card authorisation. Past it the answer goes out and is audited without
   * the challenger's verdict (logged).
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(MAX_TIMER_MS)
  FINANCE_SHADOW_GRACE_MS = 50;

  /**
   * The earliest transaction time (`occurredAt`) the fraud routes score: an earlier one is refused with 422
   * TIME_OUT_OF_RANGE. The default catches the placeholders systems write for "no date" (0001-01-01, .NET's and Go's
   * zero time; 1753-01-01 and 1900-01-01, SQL Server's; 1899-12-30, Excel's; 1970-01-01, the Unix epoch; 1980-01-01,
   * DOS's), which the model would otherwise score by their hour of day. An ISO 8601 instant with Z or an offset.
   */
  @IsPastInstant()
  FINANCE_EARLIEST_TIME = '2000-01-01T00:00:00Z';

  /**
   * A transaction stamped further ahead of the gateway's clock than this is refused with 422 TIME_OUT_OF_RANGE: it
   * has not happened (an acquirer's local time sent as UTC, a scheduled payment sent as occurred), and the model would
   * score it by an hour of day it does not have yet. The allowance is for clocks that differ.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(86_400_000)
  FINANCE_FUTURE_TOLERANCE_MS = 300_000;

  /** How long a finance answer is kept for its Idempotency-Key. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(24 * 30)
  IDEMPOTENCY_TTL_HOURS = 24;

  /**
   * The medical domain's lesion model (its default version serves); `breast-us-lesion` when unset. Named
   * here, it must be in MODELS_DIR or the boot stops: left unset, a gateway without it serves the other
   * domains and answers the medical routes 404.
   */
  @IsOptional()
  @Matches(/^[a-z0-9][a-z0-9._-]*$/)
  MEDICAL_MODEL?: string;

  /** Largest DICOM upload (one instance or a whole STOW study), enforced while the body streams in. */
  @Transform(toInt)
  @IsInt()
  @Min(1024)
  MEDICAL_MAX_BODY_BYTES = 512 * 1024 * 1024;

  /**
   * Most instances in one STOW-RS request (a large CT series has a few thousand). Each part costs an
   * answer entry whatever its size, so a body of tiny parts would otherwise cost far more memory and
   * CPU than its bytes: 100,000 parts of 43 bytes took 2.3 s and answered 25 MB.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  MEDICAL_MAX_STOW_INSTANCES = 10_000;

  /** Which frames of a multi-frame instance are analysed: each one (`all`), or only the first or middle one. */
  @IsIn(['all', 'first', 'middle'])
  MEDICAL_FRAME_POLICY: 'all' | 'first' | 'middle' = 'all';

  /** Under the `all` policy, instances with more frames than this are refused (not silently cut). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(10_000)
  MEDICAL_MAX_FRAMES = 256;

  /** Largest image side accepted, in pixels. */
  @Transform(toInt)
  @IsInt()
  @Min(16)
  @Max(65_535)
  MEDICAL_MAX_IMAGE_SIDE = 16_384;

  /**
   * Most pixels decoded for one instance: Rows x Columns x the frames analysed (1 under `first` / `middle`).
   * 64 Mi holds 256 frames of 512x512 CT, 218 of 640x480 ultrasound, one 8192x8192 image; a claim past it is
   * refused before decoding (a 1.5 MB deflated file claiming 16384x16384 took 6.85 GB and 54 s).
   */
  @Transform(toInt)
  @IsInt()
  @Min(65_536)
  MEDICAL_MAX_PIXELS = 64 * 1024 * 1024;

  /**
   * A request (upload included) that takes longer than this is cut off with 408: a slow upload cannot hold a socket.
   * An answer its client has not taken whole this long after its writing began is cut off too (cutAnswersNotTaken).
   */
  @Transform(toInt)
  @IsInt()
  @Min(1000)
  @Max(MAX_TIMER_MS)
  HTTP_REQUEST_TIMEOUT_MS = 300_000;

  /** TCP port of the DIMSE C-STORE SCP; unset: no DIMSE listener. */
  @IsOptional()
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(65_535)
  MEDICAL_DIMSE_PORT?: number;

  /** The SCP's own AE title; associations addressed to another are rejected. */
  @Matches(/^[ -~]{1,16}$/, { message: 'MEDICAL_DIMSE_AE_TITLE must be 1-16 printable ASCII characters' })
  MEDICAL_DIMSE_AE_TITLE = 'GATEWAY';

  /**
   * ARTIM (PS3.8 9.1.5): a peer has this long after connecting to send its A-ASSOCIATE-RQ, and after a rejection or
   * release to close; past it the connection is closed. DCMTK waits 30 s; a real SCU asks within milliseconds.
   */
  @Transform(toInt)
  @IsInt()
  @Min(500)
  @Max(300_000)
  MEDICAL_DIMSE_ARTIM_TIMEOUT_MS = 10_000;

  /** Calling AE titles allowed to store (comma-separated); unset: any caller (only on a trusted network). */
  @IsOptional()
  @IsString()
  MEDICAL_DIMSE_ALLOWED_AETS?: string;

  /** Where the SR answer of each C-STORE is forwarded by C-STORE: `AETITLE@host:port`; unset: not forwarded. */
  @IsOptional()
  @Matches(/^[ -~]{1,16}@[A-Za-z0-9.-]+:[0-9]{1,5}$/, { message: 'MEDICAL_DIMSE_FORWARD must be AETITLE@host:port' })
  @HasForwardPort()
  MEDICAL_DIMSE_FORWARD?: string;

  /**
   * An SR whose forward failed (destination down, slow, out of resources) is sent again this many times, held in
   * memory only (lost at restart; the findings stay in the database); 0: not retried.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(20)
  MEDICAL_DIMSE_FORWARD_RETRIES = 5;

  /** Wait before the first retry of an SR forward; each later one waits twice as long (30 s: 30 s, 1, 2, 4, 8 min). */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  @Max(3_600_000)
  MEDICAL_DIMSE_FORWARD_RETRY_DELAY_MS = 30_000;

  /** Most SR bytes held for a retry at once; an SR that would pass it is given up on (logged, counted, audited). */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(4 * 1024 * 1024 * 1024)
  MEDICAL_DIMSE_FORWARD_QUEUE_BYTES = 64 * 1024 * 1024;

  /** A JSON array of assets upserted at boot (the asset registry's seed); unset: assets come over the API only. */
  @IsOptional()
  @IsString()
  MANUFACTURING_ASSETS_FILE?: string;

  /**
   * Readings may arrive out of order by up to this much (per asset, by their own timestamps) and are
   * still put in order; older ones are refused as late. Readings are held this long before use.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(3_600_000)
  MANUFACTURING_LATE_TOLERANCE_MS = 0;

  /**
   * A reading stamped further ahead of the gateway's clock than this is refused: taken in, it would
   * become its asset's newest reading, and every reading after it would be refused as late.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(86_400_000)
  MANUFACTURING_FUTURE_TOLERANCE_MS = 300_000;

  /**
   * Findings kept for `GET /v1/medical/studies/{uid}/findings` (STOW-RS and DIMSE store them) older than
   * this many days are deleted (every 10 minutes, a few thousand rows at a time); 0 keeps them for good.
   * The PACS holds the findings' SR; the audit trail is never deleted.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(36_500)
  MEDICAL_FINDINGS_RETENTION_DAYS = 0;

  /**
   * Stored predictions and dead letters older than this many days are deleted (every 10 minutes, a few
   * thousand rows at a time); 0 keeps them for good. Alarms and the audit trail are never deleted. A reading
   * stamped before this horizon is refused as invalid: its prediction would be purged as soon as stored.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(36_500)
  MANUFACTURING_RETENTION_DAYS = 30;

  /**
   * Dead letters of refused input kept per minute for each source, channel and reason (a topic's malformed
   * messages, a route's late readings); past it they are counted into one summary dead letter a minute
   * instead. 0 keeps every one. Dead letters of readings the gateway gave up on are always kept.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(1_000_000)
  MANUFACTURING_DEAD_LETTER_LIMIT = 1000;

  /**
   * MQTT broker the manufacturing domain subscribes to (secret: it may carry credentials), e.g.
   * `mqtt://user:pass@broker:1883`; unset: no MQTT.
   */
  @IsOptional()
  @Matches(/^(mqtts?|wss?):\/\/\S+$/, { message: 'MQTT_URL must be an mqtt://, mqtts://, ws:// or wss:// URL' })
  @HasValidPort()
  @HasDecodableParts()
  MQTT_URL?: string;

  /** Fixed client id: the broker keeps this session (clean: false) and queues QoS 1 messages while the gateway is down. */
  @Matches(/^[A-Za-z0-9._-]{1,64}$/, { message: 'MQTT_CLIENT_ID must be 1-64 of A-Z a-z 0-9 . _ -' })
  MQTT_CLIENT_ID = 'inference-gateway';

  /**
   * Topic filters subscribed with QoS 1, comma-separated: plain JSON telemetry and Sparkplug B (NDATA too, which
   * feeds no asset: an edge node's seq counts it, and a gap asks the node to rebirth).
   */
  @Matches(/^[^,\s]+(,[^,\s]+)*$/, { message: 'MQTT_TOPICS must be comma-separated topic filters without spaces' })
  MQTT_TOPICS =
    'factory/+/+/+/telemetry,spBv1.0/+/DDATA/+/+,spBv1.0/+/DBIRTH/+/+,spBv1.0/+/NBIRTH/+,spBv1.0/+/NDATA/+,spBv1.0/+/NDEATH/+,spBv1.0/+/DDEATH/+/+';

  /**
   * How long the broker keeps the gateway's session (its subscriptions and the QoS 1 messages queued
   * for it) after the connection ends: a gateway down for longer starts over. Default: one week.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(4_294_967_295)
  MQTT_SESSION_EXPIRY_SECONDS = 604_800;

  /**
   * MQTT messages handled side by side (their readings share runtime calls and database commits);
   * acknowledgements still go out in arrival order, each after its message is stored. Sent to the
   * broker as the MQTT 5 Receive Maximum.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(65_535)
  MQTT_MAX_IN_FLIGHT = 256;

  /**
   * The largest MQTT message read, in bytes: a larger one is refused unread (dead letter `too-large`). Decoding a
   * 22 MB JSON message held the event loop for 2 s, and a 6.5 MB Sparkplug birth for 4 s, in which no other message,
   * HTTP request or alarm was served. 10,000 readings, the most one message may carry, are 2-4 MB as JSON (5 tags or
   * 14, full-precision values): the default leaves twice that, and holds the loop under a second.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1024)
  @Max(268_435_455)
  MQTT_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;

  /**
   * Sparkplug B host id: set, the gateway is that Primary Host Application and publishes its STATE
   * (`spBv1.0/STATE/<id>`, retained, QoS 1: online once subscribed, offline at shutdown, and offline as its
   * MQTT will); edge nodes configured with this id publish only while it is online. Unset: no STATE.
   */
  @IsOptional()
  @Matches(/^[^/+#\s]{1,64}$/, {
    message: 'SPARKPLUG_HOST_ID must be 1-64 characters without / + # or spaces (a Sparkplug host id)',
  })
  SPARKPLUG_HOST_ID?: string;

  /** Alarms are published (QoS 1, not retained) to `<prefix>/{site}/{line}/{assetId}/alarms`. */
  @Matches(/^[^#+\s]+$/, { message: 'MQTT_ALARM_TOPIC_PREFIX must be a topic without wildcards or spaces' })
  MQTT_ALARM_TOPIC_PREFIX = 'factory';

  /** Where this process's audit chains' heads are anchored, unless another gateway holds it: AUDIT_ANCHOR_FILE, or a file in DATA_DIR. */
  get auditAnchorFile(): string {
    return this.AUDIT_ANCHOR_FILE ?? join(this.DATA_DIR, 'audit-anchors.jsonl');
  }

  /** FINANCE_EARLIEST_TIME, read. */
  get financeEarliestTime(): TimeFloor {
    return { ms: isoTimeMs(this.FINANCE_EARLIEST_TIME, ISO_INSTANT), text: this.FINANCE_EARLIEST_TIME };
  }

  /** The times a fraud occurredAt may name: from FINANCE_EARLIEST_TIME to FINANCE_FUTURE_TOLERANCE_MS past the clock. */
  get financeTimeRange(): TimeRange {
    return { floor: this.financeEarliestTime, aheadMs: this.FINANCE_FUTURE_TOLERANCE_MS };
  }

  /** The lesion model the medical routes run: MEDICAL_MODEL, or the bundled reference model. */
  get medicalModel(): string {
    return this.MEDICAL_MODEL ?? DEFAULT_MEDICAL_MODEL;
  }

  get intraOpThreads(): number {
    return this.ORT_INTRA_OP_THREADS ?? Math.max(1, Math.floor(availableParallelism() / this.WORKER_POOL_SIZE));
  }
}

export class ConfigError extends Error {}

/**
 * What production needs that the environment does not give, every item at once (a boot refused for one,
 * then for the next, costs a deploy each). The key store and the audit secret refuse the same again where
 * they are read, for whoever builds them without this check.
 */
export function productionGaps(config: AppConfig): string[] {
  if (config.NODE_ENV !== 'production') return [];
  const gaps: string[] = [];
  if (!config.AUTH_PUBLIC_KEYS && !config.AUTH_JWKS_FILE && !config.AUTH_HS256_SECRET) {
    gaps.push(
      'no token verification keys: set AUTH_PUBLIC_KEYS or AUTH_JWKS_FILE (or AUTH_HS256_SECRET with HS256 in AUTH_ALGORITHMS)',
    );
  }
  if (!config.AUDIT_HMAC_SECRET) gaps.push('AUDIT_HMAC_SECRET must be set in production (at least 32 characters)');
  return gaps;
}

/**
 * Makes DATA_DIR if it is missing (0700, as the embedded database wants it), and says what keeps it from holding the
 * gateway's files (its embedded database, development keys, audit key and anchors), named as the variable, where the
 * first write there would name only a path (`ENOTDIR: ... mkdir`), or hang: a file in its place, a folder this
 * process may not write, one that cannot be made (a read-only mount, /sys), or a folder that takes no new folder
 * (/proc: Node's recursive mkdir there loops for ever, so each folder is made with makeDirSync).
 */
export function prepareDataDir(dir: string): string | undefined {
  let stats: Stats;
  try {
    stats = statSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return `DATA_DIR ${dir}: cannot be read (${code})`;
    try {
      makeDirSync(dir, 0o700);
    } catch (error) {
      const { code, path } = error as NodeJS.ErrnoException;
      return `DATA_DIR ${dir}: cannot be made (${code} from mkdir ${path})`;
    }
    stats = statSync(dir);
  }
  if (!stats.isDirectory()) return `DATA_DIR ${dir}: not a directory`;
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (error) {
    return `DATA_DIR ${dir}: this process may not write in it (${(error as NodeJS.ErrnoException).code})`;
  }
  // Root may "write" anywhere by access(): only a folder made (and removed) shows that the gateway's will be.
  try {
    rmdirSync(mkdtempSync(join(dir, '.write-check-')));
  } catch (error) {
    return `DATA_DIR ${dir}: cannot make a folder in it (${(error as NodeJS.ErrnoException).code})`;
  }
  return undefined;
}

const OPTIONAL_KEYS = [
  'ORT_INTRA_OP_THREADS',
  'BATCH_MAX_SIZE',
  'BATCH_MAX_QUEUE_DELAY_MS',
  'BATCH_MAX_QUEUE_SIZE',
  'INFERENCE_TIMEOUT_MS',
  'DATABASE_URL',
  'DATABASE_LISTEN_URL',
  'AUTH_PUBLIC_KEYS',
  'AUTH_JWKS_FILE',
  'AUTH_HS256_SECRET',
  'CORS_ORIGINS',
  'AUDIT_HMAC_SECRET',
  'AUDIT_HMAC_PREVIOUS_SECRETS',
  'AUDIT_WRITER_ID',
  'AUDIT_ANCHOR_FILE',
  'FINANCE_SHADOW_MODELS',
  'MEDICAL_MODEL',
  'MEDICAL_DIMSE_PORT',
  'MEDICAL_DIMSE_ALLOWED_AETS',
  'MEDICAL_DIMSE_FORWARD',
  'MANUFACTURING_ASSETS_FILE',
  'MQTT_URL',
  'SPARKPLUG_HOST_ID',
];

/** Never printed, not even in a configuration error. */
const SECRET_KEYS = new Set([
  'DATABASE_URL',
  'DATABASE_LISTEN_URL',
  'AUTH_HS256_SECRET',
  'AUDIT_HMAC_SECRET',
  'AUDIT_HMAC_PREVIOUS_SECRETS',
  'MQTT_URL',
]);

/** Builds and validates the configuration from an environment; throws a ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const known = new Set([...Object.keys(new AppConfig()), ...OPTIONAL_KEYS]);
  const plain: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '' && known.has(key)) plain[key] = value;
  }
  const config = plainToInstance(AppConfig, plain, { exposeDefaultValues: true });
  const lines = validateSync(config).map(
    (e) =>
      `${e.property}=${SECRET_KEYS.has(e.property) ? '(secret)' : JSON.stringify(e.value)}: ${Object.values(e.constraints ?? {}).join('; ')}`,
  );
  // Named with the others, not alone: a boot refused for it, then for the next, costs one deploy each.
  if (config.NODE_ENV === 'production' && config.AUDIT_ENABLED === false) {
    lines.unshift('AUDIT_ENABLED=false: the audit trail cannot be turned off in production');
  }
  if (config.DATABASE_LISTEN_URL !== undefined && config.DATABASE_URL === undefined) {
    lines.push('DATABASE_LISTEN_URL=(secret): needs DATABASE_URL (the embedded database has no alarm listener)');
  }
  if (lines.length > 0) {
    // One line, as a failed boot is reported: each variable names itself (`NAME=value: NAME must ...`).
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  return config;
}
