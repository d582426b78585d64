import Ajv, { ErrorObject } from 'ajv';
import { AppError, FieldError, summariseFields } from '../../common/errors/app-error';
import { PLAIN_REASONS, tooWideError, typeReason } from '../../common/errors/validation';
import { echoedKey, panRefusal } from './pan-guard.util';

/** What a batch item's errors name the item itself by (a card number sent as the item, one not an object). */
export const WHOLE_ITEM = '(item)';

/** An ajv error as a field error, its path in the request's words (`transactions[3].amount`, `features.v1`). */
export function toFieldError(e: ErrorObject): FieldError {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : p))
    .join('.')
    .replace(/\.\[/g, '[');
  if (e.keyword === 'required') {
    const missing = (e.params as { missingProperty: string }).missingProperty;
    return { field: path ? `${path}.${missing}` : missing, reason: 'is required' };
  }
  if (e.keyword === 'additionalProperties') {
    const extra = echoedKey((e.params as { additionalProperty: string }).additionalProperty);
    return { field: path ? `${path}.${extra}` : extra, reason: 'is not an accepted field' };
  }
  return { field: path || '(body)', reason: reasonOf(e) };
}

/**
 * An ajv error's reason in class-validator's words (`must not be less than 0`, not `must be >= 0`; `must be shorter
 * than or equal to 128 characters`, not `must NOT have more than 128 characters`); a keyword it has none for in ajv's.
 */
function reasonOf(e: ErrorObject): string {
  const params = e.params as { type?: string; limit?: number; allowedValues?: unknown[] };
  switch (e.keyword) {
    case 'type':
      // The class-based routes' words (PLAIN_REASONS), not ajv's `must be number`; an object keeps ajv's words, which
      // the class-based routes give a body that is no object too.
      return typeReason(String(params.type)) ?? e.message ?? 'is invalid';
    case 'minimum':
      return `must not be less than ${params.limit}`;
    case 'maximum':
      return `must not be greater than ${params.limit}`;
    case 'minLength':
      return `must be longer than or equal to ${params.limit} characters`;
    case 'maxLength':
      return `must be shorter than or equal to ${params.limit} characters`;
    case 'minItems':
      return PLAIN_REASONS.atLeast(params.limit ?? 0);
    case 'maxItems':
      return PLAIN_REASONS.atMost(params.limit ?? 0);
    case 'enum':
      return `must be one of the following values: ${(params.allowedValues ?? []).join(', ')}`;
    default:
      return e.message ?? 'is invalid';
  }
}

/** A batch item that carries a card number: its own PAN_DETECTED error, naming the field (or the item, if it is one). */
export function itemPanError(
  item: unknown,
): { code: 'PAN_DETECTED'; detail: string; errors: FieldError[] } | undefined {
  const refusal = panRefusal(item, WHOLE_ITEM);
  return refusal && { code: 'PAN_DETECTED', detail: refusal.detail, errors: refusal.fields };
}

/** A batch item that is not an object (a number, a string, an array): its own VALIDATION_FAILED naming the item. */
export function notAnObjectError(
  item: unknown,
  noun: string,
): { code: 'VALIDATION_FAILED'; detail: string; errors: FieldError[] } | undefined {
  if (typeof item === 'object' && item !== null && !Array.isArray(item)) return undefined;
  const reason = `each ${noun} must be an object`;
  return { code: 'VALIDATION_FAILED', detail: `${WHOLE_ITEM}: ${reason}`, errors: [{ field: WHOLE_ITEM, reason }] };
}

/**
 * A batch's ids (transactionId, applicationId), each held by the first valid item that has it, compared exactly: as a
 * bank keys the answers by it, each later valid item with it is a repeat, its error (`code`) naming the first's index.
 */
export class BatchIds<C extends string> {
  // A Map, not an object: an id such as `__proto__` or `constructor` is a plain key.
  private readonly holder = new Map<string, number>();

  constructor(
    private readonly code: C,
    private readonly field: string,
  ) {}

  /** Undefined for the first valid item with `id` (which now holds it); a later one's error. */
  repeat(id: string, index: number): { code: C; detail: string; errors: FieldError[] } | undefined {
    const first = this.holder.get(id);
    if (first === undefined) {
      this.holder.set(id, index);
      return undefined;
    }
    const reason = `already sent as item ${first} of this batch`;
    return { code: this.code, detail: `${this.field}: ${reason}`, errors: [{ field: this.field, reason }] };
  }
}

const ajv = new Ajv({ allErrors: true, strict: true });

/** A batch route's envelope: `{ <list>: [...] }` with 1 to `max` items of any type, and nothing else. */
export interface BatchEnvelope {
  /** The body's items, checked without copying them (the route skips the class-based pipe), or 400 naming each bad field. */
  items(body: unknown): unknown[];
  /**
   * A card number outside the items (an envelope field, a key, a body that is one), refused as on a single route:
   * 422 naming it; the items' own are each item's error. The items are not walked (a valid envelope holds nothing else).
   * `bodyDigits`: as panRefusal takes them.
   */
  panRefusal(body: unknown, bodyDigits?: string): AppError | undefined;
}

/**
 * The envelope of a batch route whose items are listed under `list`: each item is then checked on its own, so one
 * that is not even an object gets its own error, not the batch's.
 */
export function batchEnvelope(list: string, max: number): BatchEnvelope {
  const validate = ajv.compile<Record<string, unknown[]>>({
    type: 'object',
    additionalProperties: false,
    required: [list],
    properties: { [list]: { type: 'array', minItems: 1, maxItems: max } },
  });
  const envelopePanRefusal = (body: unknown, bodyDigits?: string): AppError | undefined => {
    const items = (body as Record<string, unknown> | null)?.[list];
    return panRefusal(body, undefined, Array.isArray(items) ? list : undefined, bodyDigits);
  };
  return {
    items(body) {
      // Before ajv, which names each of an envelope's unknown keys before the list is capped; its items are each
      // checked on their own (fraudItemErrors), so only the envelope's own members are counted here.
      const wide = tooWideError(body, '(body)', false);
      if (wide)
        throw (
          envelopePanRefusal(body) ?? new AppError('VALIDATION_FAILED', summariseFields([wide]), { fields: [wide] })
        );
      if (validate(body)) return body[list];
      const refusal = envelopePanRefusal(body);
      if (refusal) throw refusal;
      const fields = (validate.errors ?? []).map(toFieldError);
      throw new AppError('VALIDATION_FAILED', summariseFields(fields), { fields });
    },
    panRefusal: envelopePanRefusal,
  };
}
