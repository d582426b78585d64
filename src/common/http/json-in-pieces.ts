import sjson from 'secure-json-parse';

/**
 * From this size a JSON body is parsed in pieces where it can be (parseJsonInPieces); below it one string
 * costs less than the splitting.
 */
export const PIECEWISE_PARSE_FROM_BYTES = 256 * 1024;
/** The start of the body read byte by byte, to find where the long array's items begin. */
const HEAD_BYTES = 32 * 1024;
/** No boundary between two items of an array near the top within this: not a body of one long array. */
const HEAD_LIMIT = 96 * 1024;
/** Roughly the size of each middle piece, and at most that of the last one (with what follows the array). */
const PIECE_BYTES = 48 * 1024;
const TAIL_BYTES = 64 * 1024;
/**
 * Cuts that may fail (fall inside an item) before the body is parsed whole instead, and the longest piece
 * tried: a body made to defeat the splitting costs at most a few extra pieces' parse.
 */
const MAX_FAILED_CUTS = 2;
const MAX_PIECE_BYTES = 4 * PIECE_BYTES;

/** As Fastify's JSON parser is told: a `__proto__` key, or `constructor` holding `prototype`, is an error. */
const parseText = (text: string): unknown =>
  sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
/** `},{`: where two objects of an array meet, in compact JSON. */
const BETWEEN_OBJECTS = Buffer.from('},{');
const CLOSE_AND_COMMA = Buffer.from('},');

/**
 * The value of a large JSON body made of one long array of objects (`{"transactions": [...], ...}` or
 * `[...]`), parsed without decoding the whole body into one string, which on this project's VM costs about
 * 2 ms per 500 KB (V8 keeps a string over 128 KB in its large-object space, in fresh memory each time). The
 * same value, and the same refusal of prototype keys, as Fastify's parser gives for the whole text.
 * Undefined for any body it does not split (another shape, a BOM, pretty-printed, invalid): the caller
 * parses that whole, and reports any error as before. It never throws.
 *
 * How: the head is read byte by byte up to a comma between two items of an array directly in the top-level
 * value; the middle is cut where the next item begins (Head.between) about every 48 KB, and each piece is parsed as `[piece]`, which
 * succeeds only if the cut fell between two items (a piece that is a whole sequence of values starting
 * between items ends between items; a cut inside a string or a nested value leaves a piece that is not
 * JSON); the tail is read byte by byte too, to count its items and to see that the array's key does not
 * come again after it. The head and tail together, without the middle, are parsed as one document, and the
 * middle's items put back in their place.
 */
export function parseJsonInPieces(bytes: Buffer): unknown {
  if (bytes.length < PIECEWISE_PARSE_FROM_BYTES) return undefined;
  try {
    return inPieces(bytes);
  } catch {
    return undefined; // a key token that is not JSON, say: the whole parse reports it
  }
}

function inPieces(bytes: Buffer): unknown {
  const head = scanHead(bytes);
  if (!head) return undefined;
  const middle: unknown[] = [];
  let from = head.cut + 1;
  let failed = 0;
  while (bytes.length - from > TAIL_BYTES) {
    let piece: unknown[] | undefined;
    let search = from + PIECE_BYTES;
    while (piece === undefined) {
      const found = bytes.indexOf(head.between, search);
      if (found < 0 || found - from > MAX_PIECE_BYTES) return undefined;
      const comma = found + 1;
      try {
        piece = parseText(`[${bytes.toString('utf8', from, comma)}]`) as unknown[];
        from = comma + 1;
      } catch {
        if (++failed > MAX_FAILED_CUTS) return undefined;
        search = comma;
      }
    }
    for (const item of piece) middle.push(item);
  }
  // `from - 1` is the comma after the last item parsed (the head's cut, or a middle piece's).
  const tail = scanTail(bytes, from - 1, head.key);
  if (!tail) return undefined;
  let skeleton: unknown;
  try {
    skeleton = parseText(bytes.toString('utf8', 0, head.cut) + bytes.toString('utf8', from - 1));
  } catch {
    return undefined;
  }
  const array = head.key === undefined ? skeleton : (skeleton as Record<string, unknown>)[head.key];
  if (!Array.isArray(array) || array.length !== head.items + tail.items) return undefined;
  const whole = array.slice(0, head.items).concat(middle, array.slice(head.items));
  if (head.key === undefined) return whole;
  (skeleton as Record<string, unknown>)[head.key] = whole;
  return skeleton;
}

interface Head {
  /** The comma between two items of the long array, at HEAD_BYTES or a little after. */
  cut: number;
  /** The array's key in the top-level object; undefined when the array is the top-level value. */
  key: string | undefined;
  /** Items of the array before the cut. */
  items: number;
  /**
   * What to look for where two items meet: `},` and the first item's opening up to its first key's colon
   * (`},{"transactionId":`, as a batch's items all begin), else `},{`. The rarer, the fewer false cuts.
   */
  between: Buffer;
}

/** Reads the head byte by byte: the first comma past HEAD_BYTES between two items of a top-level array or an array member of the top-level object. */
function scanHead(bytes: Buffer): Head | undefined {
  const stack: number[] = [];
  /** Commas seen at each open array's own level. */
  const commas: number[] = [];
  let keyStart = -1;
  let keyEnd = -1;
  let memberKey: { start: number; end: number } | undefined;
  /** Where each open array's first byte after `[` is. */
  const starts: number[] = [];
  const limit = Math.min(bytes.length, HEAD_LIMIT);
  for (let i = 0; i < limit; i++) {
    const c = bytes[i];
    if (c === QUOTE) {
      const end = stringEnd(bytes, i, limit);
      if (end < 0) return undefined;
      if (stack.length === 1 && stack[0] === OPEN_OBJECT) {
        keyStart = i;
        keyEnd = end + 1;
      }
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (c === OPEN_ARRAY && stack.length === 1 && stack[0] === OPEN_OBJECT)
        memberKey = { start: keyStart, end: keyEnd };
      stack.push(c);
      commas.push(0);
      starts.push(i + 1);
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop();
      commas.pop();
      starts.pop();
    } else if (c === COMMA && stack[stack.length - 1] === OPEN_ARRAY) {
      const depth = stack.length;
      const items = ++commas[depth - 1];
      const topArray = depth === 1 || (depth === 2 && stack[0] === OPEN_OBJECT);
      if (topArray && i >= HEAD_BYTES) {
        const between = firstItemOpening(bytes, starts[depth - 1], i);
        if (depth === 1) return { cut: i, key: undefined, items, between };
        if (!memberKey || memberKey.start < 0) return undefined;
        const key = parseText(bytes.toString('utf8', memberKey.start, memberKey.end));
        return typeof key === 'string' ? { cut: i, key, items, between } : undefined;
      }
    } else if (c === 0xef && i === 0) {
      return undefined; // a BOM: the whole path strips it
    }
  }
  return undefined;
}

/**
 * Reads the tail byte by byte from `comma` (between two items of the array): counts the items left, and
 * checks that the array's key does not come again in the top-level object (the last of a repeated key wins,
 * and the skeleton would hold the other value).
 */
function scanTail(bytes: Buffer, comma: number, key: string | undefined): { items: number } | undefined {
  let depth = 0;
  let items = 0;
  let closed = false;
  let lastString = -1;
  let lastStringEnd = -1;
  for (let i = comma; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === QUOTE) {
      const end = stringEnd(bytes, i, bytes.length);
      if (end < 0) return undefined;
      lastString = i;
      lastStringEnd = end + 1;
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (depth === 0 && !closed) {
        if (c !== CLOSE_ARRAY) return undefined;
        closed = true;
      } else depth--;
    } else if (c === COMMA && depth === 0 && !closed) {
      items++;
    } else if (c === COLON && closed && depth === 0 && key !== undefined && lastString >= 0) {
      // A key of the top-level object after the array.
      if (parseText(bytes.toString('utf8', lastString, lastStringEnd)) === key) return undefined;
    }
  }
  return closed ? { items } : undefined;
}

/** `},` and the array's first item up to its first key's colon, if it opens as `{"key":`; else `},{`. */
function firstItemOpening(bytes: Buffer, start: number, limit: number): Buffer {
  if (bytes[start] !== OPEN_OBJECT || bytes[start + 1] !== QUOTE) return BETWEEN_OBJECTS;
  const end = stringEnd(bytes, start + 1, limit);
  if (end < 0 || bytes[end + 1] !== COLON) return BETWEEN_OBJECTS;
  return Buffer.concat([CLOSE_AND_COMMA, bytes.subarray(start, end + 2)]);
}

/** The index of the quote that ends the string starting at `start`, or -1 if it does not end before `limit`. */
function stringEnd(bytes: Buffer, start: number, limit: number): number {
  for (let i = start + 1; i < limit; i++) {
    const c = bytes[i];
    if (c === BACKSLASH) i++;
    else if (c === QUOTE) return i;
  }
  return -1;
}
