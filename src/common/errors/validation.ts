import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { getMetadataStorage, Matches, ValidationOptions, ValidatorOptions } from 'class-validator';
import { echoedKey } from '../echoed-key';
import { AppError, FieldError, summariseFields } from './app-error';
import { indexEachErrors } from './each-item-errors';

/** Where class-transformer keeps its @Type() metadata; the package exports no typed path to it. */
interface TypeMetadataStorage {
  findTypeMetadata(target: object, property: string): { typeFunction: () => unknown } | undefined;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { defaultMetadataStorage } = require('class-transformer/cjs/storage') as {
  defaultMetadataStorage: TypeMetadataStorage;
};

/** A field no DTO declares, worded as the compiled schemas word it. */
export const UNKNOWN_FIELD = 'is not an accepted field';

/**
 * Keys that never reach a DTO: class-transformer skips any name the instance already answers with a function (the
 * members of Object.prototype), and Nest's ValidationPipe deletes `__proto__`, `prototype` and `constructor` first.
 */
export const PROTOTYPE_NAMES: ReadonlySet<string> = new Set([
  '__proto__',
  'prototype',
  ...Object.getOwnPropertyNames(Object.prototype),
]);

/** Per DTO class, its properties declared @AsSent. */
const AS_SENT = new WeakMap<object, Set<string>>();
/** Per plain object the pipe is about to transform, copies of its @AsSent maps taken before anything dropped a key. */
const SENT = new WeakMap<object, Map<string, unknown>>();

/**
 * A free-form map whose keys a service checks itself (an asset's constants): the DTO holds it as sent. Otherwise
 * Nest's ValidationPipe deletes its `constructor` and `prototype` keys and class-transformer every key naming an
 * Object.prototype member (`toString`, ...), so a map the service would refuse reached it looking fine.
 */
export function AsSent(): PropertyDecorator {
  const transform = Transform(({ obj, key }: { obj: Record<string, unknown>; key: string }) => {
    const sent = SENT.get(obj);
    return sent?.has(key) ? sent.get(key) : obj[key];
  });
  return (target, property) => {
    const kept = AS_SENT.get(target.constructor) ?? new Set<string>();
    kept.add(String(property));
    AS_SENT.set(target.constructor, kept);
    transform(target, property);
  };
}

/**
 * A query parameter that is a count, read only as decimal digits: `@Type(() => Number)` took `0x10` as 16, `1e2` as
 * 100 and an empty `limit=` as 0 (told it must not be less than 1). Anything else stays the text it was, for @IsInt
 * to refuse as not an integer.
 */
export function DecimalInteger(): PropertyDecorator {
  return Transform(({ value }: { value: unknown }) =>
    typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : value,
  );
}

/**
 * class-validator's Matches, with `pattern` also the property's pattern in the OpenAPI document: the swagger plugin
 * copies a pattern only from a regular expression written in the decorator, not from a constant that another check
 * (a compiled schema, a query) shares. The pattern takes no flags, which OpenAPI's `pattern` cannot carry.
 */
export function MatchesPattern(pattern: RegExp, options?: ValidationOptions): PropertyDecorator {
  if (pattern.flags !== '') throw new Error(`MatchesPattern: /${pattern.source}/${pattern.flags} has flags`);
  const check = Matches(pattern, options);
  const doc = ApiProperty({ pattern: pattern.source });
  return (target, property) => {
    check(target, property);
    doc(target, property);
  };
}

/**
 * One walk over a plain value bound for a DTO class, before Nest's pipe and class-transformer drop any key: returns
 * the fields that name a member of Object.prototype (PROTOTYPE_NAMES), which class-transformer drops before
 * class-validator's whitelist looks, so `{"toString": 1}` passed where `{"age": 1}` is refused; and keeps a copy of
 * each @AsSent map for @AsSent to hand on. Nested DTOs (@Type) are looked into; free-form maps (a reading's
 * `values`, an asset's `constants`) are not.
 */
function inspectSent(value: unknown, type: object, path = ''): FieldError[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => inspectSent(item, type, `${path}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  const kept = AS_SENT.get(type);
  const out: FieldError[] = [];
  for (const [key, child] of Object.entries(value)) {
    if (kept?.has(key) && child !== null && typeof child === 'object' && !Array.isArray(child)) {
      SENT.set(value, (SENT.get(value) ?? new Map<string, unknown>()).set(key, { ...child }));
      continue;
    }
    const field = path ? `${path}.${key}` : key;
    if (PROTOTYPE_NAMES.has(key)) {
      out.push({ field, reason: UNKNOWN_FIELD });
      continue;
    }
    const nested = defaultMetadataStorage.findTypeMetadata(type, key)?.typeFunction();
    if (typeof nested === 'function') out.push(...inspectSent(child, nested, field));
  }
  return out;
}

/**
 * Flattens class-validator's tree into `a.b[0].c: reason` field errors, each reason without the field name
 * class-validator starts its messages with (`creditLimit: must not be less than 1`, not `creditLimit: creditLimit
 * must ...`), as the compiled schemas word theirs.
 */
export function flattenValidationErrors(errors: ValidationError[], parent = ''): FieldError[] {
  const out: FieldError[] = [];
  for (const error of errors) {
    // An unknown key of digits alone (`?4111111111111111=1`) is a name the caller sent, not an index: echoedKey names it.
    const isIndex = /^\d+$/.test(error.property) && !isUnknownField(error);
    const name = isUnknownField(error) ? echoedKey(error.property) : error.property;
    const path = isIndex ? `${parent}[${error.property}]` : parent ? `${parent}.${name}` : name;
    for (const [constraint, message] of telling(error.constraints ?? {})) {
      out.push({ field: path, reason: reasonOf(error.property, constraint, message) });
    }
    if (error.children?.length) out.push(...flattenValidationErrors(error.children, path));
  }
  return out;
}

/**
 * A field no DTO declares: its name is the caller's, of any length (a 5,000-character key was echoed whole, in the
 * answer, the log line and a credit batch's kept copy), so it is named as the fraud routes name one (echoedKey).
 */
function isUnknownField(error: ValidationError): boolean {
  return error.constraints?.whitelistValidation !== undefined;
}

/** A field the DTO requires that the request leaves out, worded as the compiled schemas and ListOf word it. */
export const REQUIRED = 'is required';

/**
 * Each declared field that is not there told only that it is required (an optional one is not checked when absent):
 * its checks' words (a batch application without applicationId was told it `must be a string`) read as if a value of
 * the wrong type had been sent. Works on the errors of `object`, the instance that was validated, in place.
 */
function markMissing(object: unknown, errors: ValidationError[]): void {
  if (typeof object !== 'object' || object === null) return;
  for (const error of errors) {
    const value = (object as Record<string, unknown>)[error.property];
    if (value === undefined && error.constraints !== undefined && !isUnknownField(error)) {
      error.constraints = { isDefined: REQUIRED };
      error.children = [];
    } else if (error.children?.length) markMissing(value, error.children);
  }
}

/** class-validator's checks of a value's type, which its other checks of the field (a range, a length) presume. */
const TYPE_CONSTRAINTS: ReadonlySet<string> = new Set(['isNumber', 'isInt', 'isString', 'isBoolean', 'isObject']);

/**
 * The failed constraints worth telling: class-validator runs every check of a field whatever the value, so a string
 * where a number goes (`"creditLimit": "140000"`, `?limit=abc`) failed `Min`, `Max` and `IsNumber` at once and was
 * told it is both too large and too small. A value that is no array where one goes is told only that, and one of the
 * wrong type only what type it must be.
 */
function telling(constraints: Record<string, string>): Array<[string, string]> {
  const failed = Object.entries(constraints);
  const notAnArray = failed.filter(([constraint]) => constraint === 'isArray');
  if (notAnArray.length > 0) return notAnArray;
  const wrongType = failed.filter(([constraint]) => TYPE_CONSTRAINTS.has(constraint));
  return wrongType.length > 0 ? wrongType : failed;
}

/** A count of a list's items in words: `1 item`, `6 items`. */
const itemsIn = (count: number | string): string => `${count} item${Number(count) === 1 ? '' : 's'}`;

/** A value not of a JSON Schema type, by the type it must be, in plain words. */
const TYPE_REASONS = {
  number: 'must be a number',
  integer: 'must be a whole number',
  string: 'must be text',
  boolean: 'must be true or false',
  array: 'must be a list',
} as const;

/**
 * The words every finance route (and any class-based route) gives a wrong type or a list of the wrong size, where
 * class-validator's own read badly (`must be a number conforming to the specified constraints`, `must be an integer
 * number`, `must contain at least 1 elements`); the compiled schemas (batch-envelope.util's reasonOf) say the same.
 */
export const PLAIN_REASONS = {
  ...TYPE_REASONS,
  atLeast: (count: number | string): string => `must contain at least ${itemsIn(count)}`,
  atMost: (count: number | string): string => `must contain at most ${itemsIn(count)}`,
} as const;

/** The plain words for a value that is not of JSON Schema type `type`; undefined for a type they do not word. */
export function typeReason(type: string): string | undefined {
  return Object.hasOwn(TYPE_REASONS, type) ? TYPE_REASONS[type as keyof typeof TYPE_REASONS] : undefined;
}

/** class-validator's checks of a value's type, by the JSON Schema type each checks for. */
const CHECKED_TYPE: ReadonlyMap<string, keyof typeof TYPE_REASONS> = new Map([
  ['isNumber', 'number'],
  ['isInt', 'integer'],
  ['isString', 'string'],
  ['isBoolean', 'boolean'],
  ['isArray', 'array'],
] as const);

/** The count in class-validator's arrayMinSize and arrayMaxSize messages (`... at least 6 elements`). */
const COUNT_IN = /(\d+) elements$/;

function reasonOf(property: string, constraint: string, message: string): string {
  if (constraint === 'whitelistValidation') return UNKNOWN_FIELD;
  const each = `each value in ${property} `;
  const prefix = message.startsWith(each) ? 'each value ' : '';
  const count = COUNT_IN.exec(message)?.[1];
  const type = CHECKED_TYPE.get(constraint);
  if (type !== undefined) return prefix + PLAIN_REASONS[type];
  if (constraint === 'arrayMinSize' && count !== undefined) return PLAIN_REASONS.atLeast(count);
  if (constraint === 'arrayMaxSize' && count !== undefined) return PLAIN_REASONS.atMost(count);
  if (message.startsWith(`${property} `)) return message.slice(property.length + 1);
  return prefix ? `each value ${message.slice(each.length)}` : message;
}

/**
 * Query parameters given more than once (`?limit=1&limit=2`), which the query string parser hands on as an array: no
 * query of the gateway takes a list, and each check would refuse the array in its own words (`actor`: must not
 * contain NUL characters, must be shorter than 256 characters, must be text), none of them the reason.
 */
function repeatedParameters(query: unknown, type: NonNullable<ArgumentMetadata['metatype']>): FieldError[] {
  if (typeof query !== 'object' || query === null) return [];
  // A parameter the query does not declare is left to the whitelist, which names it as not accepted.
  const declared = new Set(
    getMetadataStorage()
      .getTargetValidationMetadatas(type, '', false, false)
      .map((m) => m.propertyName),
  );
  return Object.entries(query)
    .filter(([name, value]) => Array.isArray(value) && declared.has(name))
    .map(([name, value]) => ({
      field: name,
      reason: `must be given once, not ${(value as unknown[]).length} times`,
    }));
}

/**
 * More members than any object of a request needs (a DTO declares a few dozen; a reading's sensor values, an asset's
 * constants, a few hundred at most). class-transformer makes an object's keys unique with indexOf, in time quadratic in
 * their number: a credit application of 100,000 unknown keys (3 MB) held the event loop 30 s before it was refused.
 */
export const MAX_OBJECT_MEMBERS = 4096;

/**
 * The path (relative to `value`) of the first object in it with more than MAX_OBJECT_MEMBERS members, and their count;
 * `deep` false: only `value` itself is counted (a batch envelope, whose items are each checked on their own).
 */
function tooWide(value: unknown, deep = true): { path: string; members: number } | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    if (!deep) return undefined;
    for (let i = 0; i < value.length; i++) {
      const found = tooWide(value[i]);
      if (found)
        return { ...found, path: `[${i}]${found.path ? (found.path.startsWith('[') ? '' : '.') + found.path : ''}` };
    }
    return undefined;
  }
  const keys = Object.keys(value);
  if (keys.length > MAX_OBJECT_MEMBERS) return { path: '', members: keys.length };
  if (!deep) return undefined;
  for (const key of keys) {
    const child = (value as Record<string, unknown>)[key];
    // Only an object can be too wide: a number or a string is not walked into (a fraud batch's 30,000 of them).
    if (child === null || typeof child !== 'object') continue;
    const found = tooWide(child);
    if (!found) continue;
    // Named only once found: echoedKey's card-number scan of every key cost a batch of 1,000 transactions 1.5 ms.
    const name = echoedKey(key);
    return { ...found, path: found.path ? `${name}${found.path.startsWith('[') ? '' : '.'}${found.path}` : name };
  }
  return undefined;
}

/**
 * The field error of the first object in `value` with more than MAX_OBJECT_MEMBERS members (tooWide, `deep` as it
 * takes it), naming it (`whole` when it is `value` itself); undefined when there is none. Checked before a compiled schema as before the
 * pipe: ajv (allErrors) builds an error for each unknown key before the list is capped, about 340 ms of the event loop
 * for a fraud transaction of 100,000.
 */
export function tooWideError(value: unknown, whole = '(body)', deep = true): FieldError | undefined {
  const wide = tooWide(value, deep);
  return wide && { field: wide.path || whole, reason: `has ${wide.members} members, more than ${MAX_OBJECT_MEMBERS}` };
}

/** A body bound for a DTO that is not an object, refused in the words of the fraud routes' compiled schema. */
const NOT_AN_OBJECT: FieldError = { field: '(body)', reason: 'must be object' };

/**
 * Refuses a body that is not an object (as one field: class-validator would name every field and each array
 * index), an object with more than MAX_OBJECT_MEMBERS members, and the fields class-transformer would drop unseen, keeping the @AsSent maps as sent (inspectSent), then
 * validates as Nest does, naming the item that fails an `each` check.
 */
class WhitelistValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.metatype && this.toValidate(metadata)) {
      if (metadata.type === 'body' && (typeof value !== 'object' || value === null || Array.isArray(value))) {
        throw new AppError('VALIDATION_FAILED', summariseFields([NOT_AN_OBJECT]), { fields: [{ ...NOT_AN_OBJECT }] });
      }
      const wide = tooWideError(value);
      if (wide) throw new AppError('VALIDATION_FAILED', summariseFields([wide]), { fields: [wide] });
      const fields = metadata.type === 'query' ? repeatedParameters(value, metadata.metatype) : [];
      fields.push(...inspectSent(value, metadata.metatype));
      if (fields.length > 0) throw new AppError('VALIDATION_FAILED', summariseFields(fields), { fields });
    }
    return super.transform(value, metadata);
  }

  /**
   * class-validator's errors, each failure of an `each` check named by its item's index (indexEachErrors), a field left
   * out told it is required (markMissing).
   */
  protected override async validate(object: object, options?: ValidatorOptions): Promise<ValidationError[]> {
    const errors = await super.validate(object, options);
    await indexEachErrors(object, errors, options);
    markMissing(object, errors);
    return errors;
  }
}

/** The one ValidationPipe: unknown fields refused, field errors named, answered as problem+json. */
export function createValidationPipe(): ValidationPipe {
  return new WhitelistValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    exceptionFactory: (errors) => {
      const fields = flattenValidationErrors(errors);
      return new AppError('VALIDATION_FAILED', summariseFields(fields) || 'invalid request', { fields });
    },
  });
}
