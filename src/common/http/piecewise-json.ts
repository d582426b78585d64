import type { FastifyInstance } from 'fastify';

/**
 * An answer member that is an array of at least this many items is written in pieces (a fraud batch's
 * 1,000 to 10,000 results); anything smaller is JSON.stringify'd as Fastify would.
 */
export const PIECEWISE_FROM_ITEMS = 256;

/** Items per piece: a piece stays far below V8's large-object size (128 KB) for items of a few hundred bytes. */
const ITEMS_PER_PIECE = 64;

/**
 * Every JSON answer's serializer: `piecewiseJson` where it applies, else JSON.stringify. Set before the
 * routes are registered (Fastify copies it into each route's context then).
 */
export function registerPiecewiseJsonReplies(fastify: FastifyInstance): void {
  // Fastify's onSend and its writer take a Buffer as they take a string (its type says string only).
  fastify.setReplySerializer((payload) => (piecewiseJson(payload) ?? JSON.stringify(payload)) as string);
}

/**
 * The JSON text of `value` as JSON.stringify writes it, as UTF-8 bytes, for an object with a long array
 * member; undefined for anything else (the caller stringifies it whole). See writeInPieces: on this
 * project's VM a 317 KB answer (1,000 fraud results) took about 4 ms as one string against 1.3 ms in pieces.
 */
export function piecewiseJson(value: unknown): Buffer | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || hasToJson(value)) return undefined;
  const record = value as Record<string, unknown>;
  return writeInPieces(record, Object.keys(record), {
    long: (member) => !hasToJson(member),
    // As in JSON.stringify, a member that has no JSON form (undefined, a function, a symbol) is left out...
    member: (member) => JSON.stringify(member),
    items: (items) => {
      let text = '';
      // ...and an item that has none is null (a hole too: hence no map, which skips holes).
      for (let i = 0; i < items.length; i++)
        text += (i === 0 ? '' : ',') + ((JSON.stringify(items[i]) as string | undefined) ?? 'null');
      return text;
    },
  });
}

/** How writeInPieces writes an object's members and the items of its long arrays. */
export interface PieceWriter {
  /** Whether an array of PIECEWISE_FROM_ITEMS items or more is written in pieces (default: yes). */
  long?: (array: unknown[]) => boolean;
  /** A member's JSON text; undefined leaves the member out. */
  member: (value: unknown) => string | undefined;
  /** The JSON text of consecutive items of a long array, comma-separated, without brackets. */
  items: (items: unknown[]) => string;
}

/**
 * `record` as a JSON object of its `keys` in that order, as UTF-8 bytes, where a member is an array of
 * PIECEWISE_FROM_ITEMS items or more (else undefined): that array's items are written ITEMS_PER_PIECE at a
 * time and encoded at once, so that no string of the whole is built. V8 puts a string over 128 KB in its
 * large-object space, in fresh memory each time (page faults cost more than the writing on this project's
 * VM), and the HTTP layer would then measure and encode it again. Used for answers (piecewiseJson) and for
 * a large body's canonical bytes (the audit trail's canonicalJsonBytes).
 */
export function writeInPieces(
  record: Record<string, unknown>,
  keys: readonly string[],
  writer: PieceWriter,
): Buffer | undefined {
  const long = (value: unknown): value is unknown[] =>
    Array.isArray(value) && value.length >= PIECEWISE_FROM_ITEMS && (writer.long?.(value) ?? true);
  if (!keys.some((key) => long(record[key]))) return undefined;
  const pieces: Buffer[] = [];
  let text = '{';
  let members = 0;
  for (const key of keys) {
    const member = record[key];
    if (long(member)) {
      text += `${members++ === 0 ? '' : ','}${JSON.stringify(key)}:[`;
      for (let start = 0; start < member.length; start += ITEMS_PER_PIECE) {
        text += (start === 0 ? '' : ',') + writer.items(member.slice(start, start + ITEMS_PER_PIECE));
        pieces.push(Buffer.from(text));
        text = '';
      }
      text += ']';
    } else {
      const json = writer.member(member);
      if (json === undefined) continue;
      text += `${members++ === 0 ? '' : ','}${JSON.stringify(key)}:${json}`;
    }
  }
  pieces.push(Buffer.from(`${text}}`));
  return Buffer.concat(pieces);
}

function hasToJson(value: object): boolean {
  return typeof (value as { toJSON?: unknown }).toJSON === 'function';
}
