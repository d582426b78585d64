import { ApiExtraModels, ApiProperty, ApiPropertyOptions, getSchemaPath } from '@nestjs/swagger';
import { Transform, TransformFnParams } from 'class-transformer';
import {
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateBy,
} from 'class-validator';
import { IsIsoTime, isoTimeMs, isoTimeRefusal } from '../common/iso-time';
import { DecimalInteger } from '../common/errors/validation';
import { isRowCursor, NOT_A_CURSOR } from '../common/storable-text';
import { TENANT_CURSOR } from './audit-cursor';
import { AUDIT_OUTCOMES, AuditOutcome } from './audit-event.entity';
import { type ChainBreak, isoTimeOf } from './audit-chain';
import type { StoredAuditRow } from './audit.repository';

/** PostgreSQL text holds no NUL (and the audit trail stores none: it writes U+FFFD instead). */
// eslint-disable-next-line no-control-regex
const NO_NUL = /^[^\u0000]*$/;

/**
 * An empty filter (`actor=`, a client's unset variable) matches no row's value, and was read as no filter: every
 * actor's rows came back to a query meant for one.
 */
const EMPTY_FILTER = (field: string): string => `${field} must not be empty: leave it out to list every ${field}`;

/**
 * A time IsIsoTime takes becomes a Date; anything else stays as sent, for IsIsoTime to refuse in its words
 * (`new Date` alone read `1` as 2001, `March 7` as a date in 2001 and 2026-02-30 as March 2nd).
 */
function isoTime({ value }: TransformFnParams): unknown {
  return isoTimeRefusal(value) === undefined ? new Date(isoTimeMs(value)) : value;
}

/**
 * Either kind of `nextCursor` events gives: a row id, or a sealed cursor (audit-cursor.ts). Which one a caller may
 * pass depends on its token, which AuditQueryService knows and a DTO does not.
 */
function IsAuditCursor(): PropertyDecorator {
  return ValidateBy({
    name: 'isAuditCursor',
    validator: {
      validate: (value) => isRowCursor(value) || (typeof value === 'string' && TENANT_CURSOR.test(value)),
      defaultMessage: () => `cursor ${NOT_A_CURSOR}`,
    },
  });
}

export class AuditEventsQueryDto {
  /** Events at or after this time (ISO 8601 with Z or an offset, or a date alone: midnight UTC). */
  @IsOptional()
  @Transform(isoTime)
  @IsIsoTime()
  from?: Date;

  /** Events before this time (as `from`); not before `from`. */
  @IsOptional()
  @Transform(isoTime)
  @IsIsoTime()
  to?: Date;

  /** Subject of the caller's token. */
  @IsOptional()
  @IsString()
  @MinLength(1, { message: EMPTY_FILTER('actor') })
  @MaxLength(256)
  @Matches(NO_NUL, { message: 'actor must not contain NUL characters' })
  actor?: string;

  /** The route's action, e.g. `fraud.score`, `model.infer`, `audit.events`. */
  @IsOptional()
  @IsString()
  @MinLength(1, { message: EMPTY_FILTER('action') })
  @MaxLength(64)
  @Matches(NO_NUL, { message: 'action must not contain NUL characters' })
  action?: string;

  /** Model name. */
  @IsOptional()
  @IsString()
  @MinLength(1, { message: EMPTY_FILTER('model') })
  @MaxLength(128)
  @Matches(NO_NUL, { message: 'model must not contain NUL characters' })
  model?: string;

  @IsOptional()
  @ApiProperty({ enum: AUDIT_OUTCOMES, required: false })
  @IsIn(AUDIT_OUTCOMES)
  outcome?: AuditOutcome;

  /** Page size. */
  @IsOptional()
  @DecimalInteger()
  @IsInt()
  @Min(1)
  @Max(500)
  @ApiProperty({ type: 'integer', required: false, default: 100, minimum: 1, maximum: 500 })
  limit?: number;

  /**
   * `nextCursor` of the previous page: a row id for a token that names no tenant, the opaque text it was given for
   * one that names a tenant (any other is a 400 naming `cursor`).
   */
  @IsOptional()
  @IsAuditCursor()
  @ApiProperty({ type: 'string', required: false, pattern: '^(?:[1-9]\\d{0,18}|[A-Za-z0-9_-]{48})$' })
  cursor?: string;
}

/**
 * id, writerId, seq, prevHash and hash place a row in its hash chain, and the chains run across tenants: to a caller
 * whose token names a tenant they would tell of other tenants' rows (the gaps in seq and id between its own, a
 * prevHash that is another tenant's hash), so they are left out for it, as verify refuses it. Nor could it check a
 * hash without the rows before it.
 */
export class AuditEventDto {
  /** Database id; absent for a token that names a tenant. */
  id?: string;
  /** The hash chain the row is in (`<AUDIT_WRITER_ID>/<lane>`); absent for a token that names a tenant. */
  writerId?: string;
  /** Position in its chain; absent for a token that names a tenant. */
  @ApiProperty({ type: 'integer', required: false })
  seq?: number;
  /**
   * When the request was answered, ISO 8601; `infinity`, `-infinity` or `out of range` for a time no row is written
   * with, which only a change made by hand puts there (verify names such a row).
   */
  occurredAt!: string;
  actor!: string | null;
  roles!: string[];
  tenant!: string | null;
  action!: string;
  modelName!: string | null;
  modelVersion!: string | null;
  requestId!: string;
  clientAddress!: string;
  /** HMAC-SHA256 of the canonical input under the server's audit secret. */
  inputDigest!: string | null;
  outputSummary!: Record<string, unknown> | null;
  @ApiProperty({ enum: AUDIT_OUTCOMES })
  outcome!: AuditOutcome;
  @ApiProperty({ type: 'integer' })
  statusCode!: number;
  latencyMs!: number;
  /** The chain's previous row's hash; absent for a token that names a tenant. */
  prevHash?: string;
  /**
   * The row's hash over its fields and prevHash: HMAC-SHA256 under a key derived from the server's audit secret
   * (hashVersion 2), or plain SHA-256 (hashVersion 1, rows written before keyed hashes); absent for a token that
   * names a tenant.
   */
  hash?: string;
  /**
   * Which hash `hash` is: 1, SHA-256 with no key, which anyone can recompute; 2, keyed HMAC-SHA256, what the gateway
   * writes (another value was put there by hand, and verify names it). Absent for a token that names a tenant.
   */
  @ApiProperty({ type: 'integer', required: false })
  hashVersion?: number;
}

export class AuditEventPageDto {
  @ApiProperty({ type: [AuditEventDto] })
  events!: AuditEventDto[];
  /**
   * Pass as `cursor` for the next (older) page; null on the last page. A row id for a token that names no tenant;
   * for one that names a tenant, an opaque text that only that tenant's token may pass back.
   */
  nextCursor!: string | null;
}

export class ChainBreakDto {
  writerId!: string;
  @ApiProperty({ type: 'integer' })
  seq!: number;
  /** Database id of the first row that does not verify. */
  id!: string;
  reason!: string;
}

// Not `type: ChainBreakDto, nullable: true`: OpenAPI 3.0 writes that allOf [ChainBreakDto], which null does not
// match. `type: 'object'` stands in for the one the plugin infers (its allOf); the options' types do not allow it
// beside anyOf, and the document does not keep it.
function nullableBreak(): ApiPropertyOptions {
  return {
    type: 'object',
    anyOf: [{ $ref: getSchemaPath(ChainBreakDto) }, { type: 'object', nullable: true, enum: [null] }],
  } as ApiPropertyOptions;
}

@ApiExtraModels(ChainBreakDto)
export class ChainReportDto {
  writerId!: string;
  /** Rows that verified, from the chain's first to its first break (every row when it holds). */
  @ApiProperty({ type: 'integer' })
  rows!: number;
  /** The chain verifies, and holds its anchored head unchanged if it has one. */
  valid!: boolean;
  /** The seq of the chain's newest anchor (written outside the database), null when it has none. */
  @ApiProperty({ type: 'integer', nullable: true })
  anchoredSeq!: number | null;
  /** This chain's first row that does not verify; null when it holds. */
  @ApiProperty(nullableBreak())
  firstBroken!: ChainBreakDto | null;
  /**
   * Of `rows`, those proven by unkeyed hashes alone (hashVersion 1 with no keyed row after them): anyone with write
   * access to the database could have written them. 0 once a keyed row verifies after them, as its keyed hash
   * covers the link to every row before it.
   */
  @ApiProperty({ type: 'integer' })
  unkeyedRows!: number;
  /**
   * Of `rows`, those keyed under a secret that a rotation retired (AUDIT_HMAC_PREVIOUS_SECRETS) rather than the
   * current AUDIT_HMAC_SECRET: written before the rotation. A chain's key only moves forward, so none follows a row
   * keyed under a newer secret.
   */
  @ApiProperty({ type: 'integer' })
  rowsUnderRetiredSecrets!: number;
}

/** An anchor the database no longer matches (rows cut off, a chain rewritten), or an anchor file that was altered. */
export class AnchorBreakDto {
  /** The anchored chain; for an anchor line that does not verify, the chain it claims, if any. */
  @ApiProperty({ type: 'string', nullable: true })
  writerId!: string | null;
  /** The anchored seq; for an anchor line that does not verify, the seq it claims, if any. */
  @ApiProperty({ type: 'integer', nullable: true })
  seq!: number | null;
  /** When the head was anchored (ISO 8601). */
  @ApiProperty({ type: 'string', nullable: true })
  anchoredAt!: string | null;
  /** The anchor file's line, for a line that does not verify. */
  @ApiProperty({ type: 'integer', nullable: true })
  line!: number | null;
  reason!: string;
}

@ApiExtraModels(ChainBreakDto)
export class AuditVerifyDto {
  /**
   * True when every chain verifies from its first row to its last, every anchored head is still in
   * the database unchanged, and every anchor line verifies.
   */
  valid!: boolean;
  @ApiProperty({ type: 'integer' })
  rowsChecked!: number;
  @ApiProperty({ type: [ChainReportDto] })
  chains!: ChainReportDto[];
  /** The first broken link found, in the order of `chains`; null when every chain holds. Each chain has its own. */
  @ApiProperty(nullableBreak())
  firstBroken!: ChainBreakDto | null;
  /** Anchored chain heads held to the database (this process's anchor file and its own anchors). */
  @ApiProperty({ type: 'integer' })
  anchorsChecked!: number;
  /**
   * Chains that no anchor this gateway holds covers (another gateway's, or written before its first anchor): their
   * rows are proven by the chain's hashes alone, so a cut tail would not show, nor, for an unkeyed chain (see
   * `unkeyedChains`), one rewritten whole from its first row. Ask the gateway that wrote them, or check its anchor
   * file.
   */
  @ApiProperty({ type: 'integer' })
  unanchoredChains!: number;
  /** Anchors the database no longer matches, and anchor lines that do not verify. */
  @ApiProperty({ type: [AnchorBreakDto] })
  anchorBreaks!: AnchorBreakDto[];
  /**
   * Rows that verified by unkeyed hashes alone (hashVersion 1, plain SHA-256, with no keyed row after them in their
   * chain), over every chain: how much of the trail rests on hashes that anyone with write access to the database
   * could have computed. Rows written before keyed hashes, or rows forged since by someone without the server's audit
   * secret. Unkeyed rows that a keyed row follows are not counted: its HMAC holds every row before it.
   */
  @ApiProperty({ type: 'integer' })
  unkeyedRows!: number;
  /** Chains with `unkeyedRows`: their rows that verified end in an unkeyed one. */
  @ApiProperty({ type: 'integer' })
  unkeyedChains!: number;
  /**
   * Rows that verified under the row key of a secret that a rotation retired (AUDIT_HMAC_PREVIOUS_SECRETS), over every
   * chain: above 0, the trail spans a rotation. They are as safe as the retired secret was kept; anchors (and the log's
   * copy of them) are the check on a leaked one.
   */
  @ApiProperty({ type: 'integer' })
  rowsUnderRetiredSecrets!: number;
  /** Of `anchorsChecked`, the anchors whose line verified under a retired secret's anchor key (written before a rotation). */
  @ApiProperty({ type: 'integer' })
  anchorsUnderRetiredSecrets!: number;
}

export function toEventDto(row: StoredAuditRow): AuditEventDto {
  return { ...row, occurredAt: occurredAtText(row.occurredAt) };
}

/**
 * A row's time as ISO 8601; a time no Date holds, which only a change by hand puts in the table (verify names the
 * row), as `infinity`, `-infinity` or `out of range`, so that the page around it is still listed, not a 500.
 */
function occurredAtText(occurredAt: unknown): string {
  const iso = isoTimeOf(occurredAt);
  if (iso !== undefined) return iso;
  if (occurredAt === Infinity) return 'infinity';
  return occurredAt === -Infinity ? '-infinity' : 'out of range';
}

/** The event for a token that names a tenant: the row without its place in the chain, field by field, so a field added to the row is not shown by default. */
export function toTenantEventDto(row: StoredAuditRow): AuditEventDto {
  return {
    occurredAt: occurredAtText(row.occurredAt),
    actor: row.actor,
    roles: row.roles,
    tenant: row.tenant,
    action: row.action,
    modelName: row.modelName,
    modelVersion: row.modelVersion,
    requestId: row.requestId,
    clientAddress: row.clientAddress,
    inputDigest: row.inputDigest,
    outputSummary: row.outputSummary,
    outcome: row.outcome,
    statusCode: row.statusCode,
    latencyMs: row.latencyMs,
  };
}

export function toBreakDto(broken: ChainBreak): ChainBreakDto {
  return { ...broken };
}
