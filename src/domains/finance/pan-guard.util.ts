import { AppError, MAX_FIELD_ERRORS, moreFields, summariseFields } from '../../common/errors/app-error';
import { UNKNOWN_FIELD } from '../../common/errors/validation';
import { CARD_NUMBER_KEY, echoedKey } from '../../common/echoed-key';
import { lostDigitsOf, unkeptDigitsIn } from '../../common/http/json-lost-digits';
import { containsPan } from '../../common/pan';

export { CARD_NUMBER_KEY, echoedKey } from '../../common/echoed-key';
export { containsPan, luhnValid } from '../../common/pan';

/** The fields holding a card number that a body's scan found: the first paths, and how many there were in all. */
export interface PanFields {
  /** The paths of the first MAX_FIELD_ERRORS fields found (a refusal lists no more). */
  paths: string[];
  /** Every field found, the listed ones included. */
  count: number;
}

/**
 * The fields of a request body whose value or key looks like a card number: strings, and integers of 13 to 19
 * digits, however the JSON spells them (`4111111111111111.0`, `4.111111111111111e15`; past 2^53 by the digits the
 * text gave, which the parse lost: lostDigitsOf). A raw PAN must never reach the gateway's storage or logs. A path is
 * spelt out only for a field that is found, and only for the first MAX_FIELD_ERRORS (bodies of 10,000 transactions
 * are walked whole; one of 500,000 card numbers had a path made for each), the rest only counted; a key in it that
 * looks like a card number is named CARD_NUMBER_KEY. `unwalked`: a member of the body (an object) whose value is left
 * out (a batch's items, each checked on its own), the body walked as it is: the digits the parse lost are kept beside
 * it, not beside a copy.
 */
export function panScan(value: unknown, path = '', unwalked?: string, bodyDigits?: string): PanFields {
  const found: PanFields = { paths: [], count: 0 };
  const trail: Array<string | number> = [];
  const listed = new Set<string>();
  const hit = (): void => {
    if (found.count >= MAX_FIELD_ERRORS) {
      found.count++;
      return;
    }
    // Fields named alike (two card numbers as keys, each `(card number)`) are listed once.
    const named = pathOf(path, trail);
    if (listed.has(named)) return;
    listed.add(named);
    found.paths.push(named);
    found.count++;
  };
  /** `named`: the field is already found by its key (a card number as key and value is one field). */
  const walk = (v: unknown, holder?: object, key?: string | number, named = false): void => {
    if (typeof v === 'string') {
      if (!named && containsPan(v)) hit();
    } else if (typeof v === 'number') {
      if (!named && numberIsPan(v, holder, key, bodyDigits)) hit();
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        trail.push(i);
        walk(v[i], v, i);
        trail.pop();
      }
    } else if (v !== null && typeof v === 'object') {
      const record = v as Record<string, unknown>;
      for (const key of Object.keys(record)) {
        trail.push(key);
        const keyIsPan = keyContainsPan(key);
        if (keyIsPan) hit();
        if (record !== value || key !== unwalked) walk(record[key], record, key, keyIsPan);
        trail.pop();
      }
    }
  };
  walk(value);
  return found;
}

/** The paths panScan lists: of the first MAX_FIELD_ERRORS fields holding a card number. */
export function panFields(value: unknown, path = '', unwalked?: string): string[] {
  return panScan(value, path, unwalked).paths;
}

/** A number (member `key` of `holder`, or the whole body, sent as `bodyDigits`) whose value is an integer of 13 to 19 digits that passes the Luhn check. */
function numberIsPan(
  v: number,
  holder: object | undefined,
  key: string | number | undefined,
  bodyDigits: string | undefined,
): boolean {
  if (!Number.isInteger(v) || Math.abs(v) < 1e12) return false;
  const sent = holder !== undefined && key !== undefined ? lostDigitsOf(holder, key) : bodyDigits;
  // A body of more card numbers as numbers than were kept: those past the cap are refused unseen (unkeptDigitsIn).
  if (
    sent === undefined &&
    holder !== undefined &&
    !Number.isSafeInteger(v) &&
    Math.abs(v) <= 1e19 &&
    unkeptDigitsIn(holder)
  )
    return true;
  return containsPan(sent ?? String(v));
}

/**
 * containsPan for object keys, remembered: a batch's items repeat the same few dozen keys (35 per fraud
 * transaction), each looked at once per item otherwise. Forgotten all at once when full, so that a body
 * of ever new keys cannot grow it.
 */
const keyVerdicts = new Map<string, boolean>();
const MAX_KEY_VERDICTS = 1024;

function keyContainsPan(key: string): boolean {
  let verdict = keyVerdicts.get(key);
  if (verdict === undefined) {
    verdict = containsPan(key);
    if (keyVerdicts.size >= MAX_KEY_VERDICTS) keyVerdicts.clear();
    keyVerdicts.set(key, verdict);
  }
  return verdict;
}

const ANY_DIGIT = /\p{Nd}/u;

/**
 * The path of a field that holds a card number, each key as errors may name it. Keys that are no card number each can
 * make one side by side (`"4111 1111"` holding `"1111 1111"` is named `4111 1111.1111 1111`, a card number printed in
 * groups): then each key with a digit is named CARD_NUMBER_KEY too, and every key where that is not enough (digits
 * NFKC makes of other characters), so the answer, and a batch's copy kept for its Idempotency-Key, holds none.
 */
function pathOf(root: string, trail: ReadonlyArray<string | number>): string {
  const path = joinedPath(root, trail, echoedKey);
  if (!containsPan(path)) return path;
  const withoutDigits = joinedPath(root, trail, (key) => (ANY_DIGIT.test(key) ? CARD_NUMBER_KEY : echoedKey(key)));
  return containsPan(withoutDigits) ? joinedPath(root, trail, () => CARD_NUMBER_KEY) : withoutDigits;
}

function joinedPath(root: string, trail: ReadonlyArray<string | number>, name: (key: string) => string): string {
  let path = root;
  for (const step of trail) {
    if (typeof step === 'number') path += `[${step}]`;
    else path = path ? `${path}.${name(step)}` : name(step);
  }
  return path;
}

/**
 * The refusal (422 PAN_DETECTED, each field named) for a body carrying a card number, if it does. A body that is one
 * itself is named `whole` ('(body)', as every other refusal of a whole body names it; a batch item '(item)'), not ''.
 * `unwalked`: as panScan takes it; `bodyDigits`: the digits as sent of a body that is one number past 2^53
 * (lostBodyDigits).
 */
export function panRefusal(
  body: unknown,
  whole = '(body)',
  unwalked?: string,
  bodyDigits?: string,
): AppError | undefined {
  const { paths, count } = panScan(body, '', unwalked, bodyDigits);
  if (count === 0) return undefined;
  const fields = paths.map((field) => ({
    field: field || whole,
    reason: 'looks like a card number (PAN); never send one',
  }));
  if (count > paths.length) fields.push(moreFields(count - paths.length));
  return new AppError('PAN_DETECTED', "a card number is not accepted; send the vault's card token instead", { fields });
}

/**
 * The finance routes take no query parameter. One was ignored, so a version pin or a flag the caller assumed
 * (`?version=2`, `?dryRun=true`) was answered, scored and audited by the default model as if it applied; it is
 * refused with 400 naming it, as the GET routes that take none refuse one (NoQueryDto). One that looks like a card
 * number, by name or value, is a 422 PAN_DETECTED as in a body (never echoed back as a field name).
 */
export function queryRefusal(query: unknown): AppError | undefined {
  if (typeof query !== 'object' || query === null) return undefined;
  const names = Object.keys(query);
  if (names.length === 0) return undefined;
  const pan = panRefusal(query);
  if (pan) return pan;
  const fields = names.map((name) => ({ field: echoedKey(name), reason: UNKNOWN_FIELD }));
  return new AppError('VALIDATION_FAILED', summariseFields(fields), { fields });
}
