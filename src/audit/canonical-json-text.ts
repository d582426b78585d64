/**
 * The canonical JSON of a JSON text (canonicalJsonBytes of its parsed value), worked out from the text's bytes
 * without building the value: for the digest thread, which digests a large body the event loop has parsed.
 *
 * Why: parsing a 1,000-transaction fraud batch again (4-6 ms) and writing its canonical form from the value (6-10 ms,
 * most of it formatting 28,000 numbers) cost more CPU than scoring the batch. Most of the text is already canonical:
 * a number written as a JavaScript number prints (no exponent, at most 15 significant digits, no trailing zero in
 * its fraction; see numberIsCanonical) and a string of plain ASCII without escapes stand for themselves, so they are
 * copied; only the members of each object are put in key order. Everything else (an escape, a non-ASCII string, a
 * number written another way) is decoded and written as canonicalJson writes it.
 *
 * Undefined where the text is not what the event loop accepts (not valid JSON, a repeated member name, a byte
 * order mark, nesting past MAX_JSON_DEPTH), or where this would cost more than the parse (most numbers to write
 * again, objects nested to move their members many times): the caller then parses it and uses canonicalJsonBytes,
 * which is the definition this follows.
 */

import { MAX_JSON_DEPTH } from '../common/http/json-depth';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** Thrown inside the writer for a text it leaves to the parse and canonicalJsonBytes. */
const NOT_HERE = new Error('left to canonicalJsonBytes');

/**
 * Member orders seen lately: the raw key tokens of an object, in the text's order, with the order that sorts them.
 * Records built alike (a batch's transactions, their feature vectors) list the same keys in the same order, so most
 * objects skip decoding and sorting their keys.
 */
interface Shape {
  /** The key tokens, quotes included, one after another. */
  keys: Buffer;
  /** Where each key token ends in `keys`. */
  ends: number[];
  /** The members' indexes in key order. */
  order: number[];
}

const MAX_SHAPES = 16;

/**
 * The writer gives up (for the parse and canonicalJsonBytes) once more than REWRITES_ALLOWED numbers and more than
 * this share of all the numbers seen had to be written again.
 */
const MOSTLY_COPIED = 0.25;
const REWRITES_ALLOWED = 32;

/** The bytes the writer may move to put members in order, per byte of text (a batch moves about 2). */
const MOVED_PER_BYTE = 4;
/** ...and this many whatever the text's size: a small text costs little either way. */
const MOVED_ALWAYS = 64 * 1024;

/** Never throws: whatever it cannot write (or a fault of its own) is left to the parse and canonicalJsonBytes. */
export function canonicalJsonOfText(bytes: Uint8Array): Buffer | undefined {
  try {
    return new CanonicalWriter(bytes).document();
  } catch {
    return undefined;
  }
}

/** Whether a number token's own text is how JavaScript (and so canonicalJson) prints its value. */
function numberIsCanonical(
  src: Uint8Array,
  start: number,
  intStart: number,
  intEnd: number,
  fracEnd: number,
  exponent: boolean,
): boolean {
  if (exponent) return false;
  const intDigits = intEnd - intStart;
  const fracDigits = fracEnd === intEnd ? 0 : fracEnd - intEnd - 1;
  if (fracDigits > 0 && src[fracEnd - 1] === ZERO) return false; // 1.50 prints 1.5
  if (intDigits === 1 && src[intStart] === ZERO) {
    if (fracDigits === 0) return start === intStart; // -0 prints 0
    // 0.000001 prints so, 0.0000001 prints 1e-7; the leading zeros are not significant.
    let zeros = 0;
    while (src[intEnd + 1 + zeros] === ZERO) zeros++;
    return zeros <= 5 && fracDigits - zeros <= 15;
  }
  // At most 15 significant digits: the value's shortest round-trip digits are these (DBL_DIG), below 1e21.
  return intDigits + fracDigits <= 15;
}

class CanonicalWriter {
  private pos = 0;
  private out: Buffer;
  private len = 0;
  private scratch: Buffer;
  private readonly shapes: Shape[] = [];
  /** Arrays and objects open around the value being written. */
  private depth = 0;
  /** Bytes of members put in key order so far (see object). */
  private moved = 0;
  /** Numbers seen, and those of them written again (not canonical as sent). */
  private numbers = 0;
  private rewritten = 0;

  constructor(private readonly src: Uint8Array) {
    this.out = Buffer.allocUnsafe(src.length + 64);
    this.scratch = Buffer.allocUnsafe(1024);
  }

  document(): Buffer {
    if (this.src[0] === 0xef) throw NOT_HERE; // a BOM: the parse drops it; leave that to it
    this.value();
    this.whitespace();
    if (this.pos !== this.src.length) throw NOT_HERE;
    return this.out.subarray(0, this.len);
  }

  private whitespace(): void {
    const src = this.src;
    let c = src[this.pos];
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = src[++this.pos];
  }

  private room(n: number): void {
    if (this.len + n <= this.out.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.len + n));
    this.out.copy(bigger, 0, 0, this.len);
    this.out = bigger;
  }

  private value(): void {
    this.whitespace();
    const c = this.src[this.pos];
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      // The event loop refuses a body nested deeper (before any digest is used).
      if (++this.depth > MAX_JSON_DEPTH) throw NOT_HERE;
      if (c === OPEN_BRACE) this.object();
      else this.array();
      this.depth--;
    } else if (c === QUOTE) this.string();
    else if (c === MINUS || (c >= ZERO && c <= NINE)) this.number();
    else if (c === 0x74) this.literal('true');
    else if (c === 0x66) this.literal('false');
    else if (c === 0x6e) this.literal('null');
    else throw NOT_HERE;
  }

  private literal(word: string): void {
    const src = this.src;
    for (let i = 0; i < word.length; i++) if (src[this.pos + i] !== word.charCodeAt(i)) throw NOT_HERE;
    this.copy(this.pos, this.pos + word.length);
    this.pos += word.length;
  }

  /** Copies src[from, to) to the output. */
  private copy(from: number, to: number): void {
    this.room(to - from);
    const src = this.src;
    const out = this.out;
    let len = this.len;
    for (let i = from; i < to; i++) out[len++] = src[i];
    this.len = len;
  }

  /** Writes a text of ASCII characters (a number's). */
  private writeAscii(text: string): void {
    this.room(text.length);
    const out = this.out;
    let len = this.len;
    for (let i = 0; i < text.length; i++) out[len++] = text.charCodeAt(i);
    this.len = len;
  }

  private writeText(text: string): void {
    const n = Buffer.byteLength(text);
    this.room(n);
    this.out.write(text, this.len, 'utf8');
    this.len += n;
  }

  /** Scans a string token from its opening quote; true when it is plain ASCII with no escape (it stands for itself). */
  private stringToken(): boolean {
    const src = this.src;
    const n = src.length;
    let plain = true;
    let i = this.pos + 1;
    for (; i < n; i++) {
      const c = src[i];
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        plain = false;
        i++;
      } else if (c < 0x20) throw NOT_HERE;
      else if (c >= 0x80) plain = false;
    }
    if (i >= n) throw NOT_HERE;
    this.pos = i + 1;
    return plain;
  }

  /** The string a token src[start, end) stands for. */
  private decoded(start: number, end: number): string {
    const text = Buffer.from(this.src.buffer, this.src.byteOffset + start, end - start).toString('utf8');
    try {
      return JSON.parse(text) as string;
    } catch {
      throw NOT_HERE;
    }
  }

  private string(): void {
    const start = this.pos;
    if (this.stringToken()) this.copy(start, this.pos);
    else this.writeText(JSON.stringify(this.decoded(start, this.pos)));
  }

  private digits(): number {
    const src = this.src;
    const start = this.pos;
    let c = src[this.pos];
    while (c >= ZERO && c <= NINE) c = src[++this.pos];
    return this.pos - start;
  }

  private number(): void {
    const src = this.src;
    const start = this.pos;
    if (src[this.pos] === MINUS) this.pos++;
    const intStart = this.pos;
    const intDigits = this.digits();
    if (intDigits === 0 || (intDigits > 1 && src[intStart] === ZERO)) throw NOT_HERE;
    const intEnd = this.pos;
    if (src[this.pos] === DOT) {
      this.pos++;
      if (this.digits() === 0) throw NOT_HERE;
    }
    const fracEnd = this.pos;
    let exponent = false;
    if (src[this.pos] === 0x65 || src[this.pos] === 0x45) {
      exponent = true;
      this.pos++;
      if (src[this.pos] === 0x2b || src[this.pos] === MINUS) this.pos++;
      if (this.digits() === 0) throw NOT_HERE;
    }
    if (numberIsCanonical(src, start, intStart, intEnd, fracEnd, exponent)) {
      this.numbers++;
      this.copy(start, this.pos);
    } else {
      // Most numbers written another way (17 digits, as a float32 or a float64 often prints): the parse and
      // canonicalJsonBytes, which format numbers faster than one at a time, cost less than this would.
      if (++this.rewritten > MOSTLY_COPIED * ++this.numbers + REWRITES_ALLOWED) throw NOT_HERE;
      let token = '';
      for (let i = start; i < this.pos; i++) token += String.fromCharCode(src[i]);
      // JSON.stringify writes a number as String does (null when not finite), at a third of String's cost.
      this.writeAscii(JSON.stringify(Number(token)));
      return;
    }
  }

  private array(): void {
    const src = this.src;
    this.pos++;
    this.room(1);
    this.out[this.len++] = OPEN_BRACKET;
    this.whitespace();
    if (src[this.pos] === CLOSE_BRACKET) this.pos++;
    else {
      for (;;) {
        this.value();
        this.whitespace();
        const c = src[this.pos++];
        if (c === CLOSE_BRACKET) break;
        if (c !== COMMA) throw NOT_HERE;
        this.room(1);
        this.out[this.len++] = COMMA;
      }
    }
    this.room(1);
    this.out[this.len++] = CLOSE_BRACKET;
  }

  /**
   * An object: each member written as `"key":value` one after another, then the members put in key order (with
   * commas, in braces) through the scratch buffer.
   */
  private object(): void {
    const src = this.src;
    this.pos++;
    const objectStart = this.len;
    const keyStarts: number[] = [];
    const keyEnds: number[] = [];
    const memberEnds: number[] = [];
    this.whitespace();
    if (src[this.pos] === CLOSE_BRACE) this.pos++;
    else {
      for (;;) {
        this.whitespace();
        if (src[this.pos] !== QUOTE) throw NOT_HERE;
        keyStarts.push(this.pos);
        this.string();
        keyEnds.push(this.pos);
        this.whitespace();
        if (src[this.pos++] !== COLON) throw NOT_HERE;
        this.room(1);
        this.out[this.len++] = COLON;
        this.value();
        memberEnds.push(this.len);
        this.whitespace();
        const c = src[this.pos++];
        if (c === CLOSE_BRACE) break;
        if (c !== COMMA) throw NOT_HERE;
      }
    }
    const count = memberEnds.length;
    if (count === 0) {
      this.room(2);
      this.out[this.len++] = OPEN_BRACE;
      this.out[this.len++] = CLOSE_BRACE;
      return;
    }
    const order = this.orderOf(keyStarts, keyEnds);
    // Braces and the commas between members: count + 1 bytes more than the members.
    const size = this.len - objectStart + count + 1;
    // Each object's members are moved once more for each object around it: a text nested to make that cost more
    // than a few times its size is left to the parse, whose cost does not grow with the nesting.
    this.moved += size;
    if (this.moved > MOVED_PER_BYTE * this.src.length + MOVED_ALWAYS) throw NOT_HERE;
    this.room(count + 1);
    if (this.scratch.length < size) this.scratch = Buffer.allocUnsafe(Math.max(size, this.scratch.length * 2));
    const out = this.out;
    const scratch = this.scratch;
    let at = 0;
    scratch[at++] = OPEN_BRACE;
    for (let k = 0; k < count; k++) {
      const m = order[k];
      if (k > 0) scratch[at++] = COMMA;
      const from = m === 0 ? objectStart : memberEnds[m - 1];
      const to = memberEnds[m];
      if (to - from > 256) {
        out.copy(scratch, at, from, to);
        at += to - from;
      } else for (let i = from; i < to; i++) scratch[at++] = out[i];
    }
    scratch[at++] = CLOSE_BRACE;
    scratch.copy(out, objectStart, 0, at);
    this.len = objectStart + at;
  }

  /** The members' indexes in key order (by UTF-16 code unit, as Array.prototype.sort); NOT_HERE for a repeated key. */
  private orderOf(keyStarts: number[], keyEnds: number[]): number[] {
    const src = this.src;
    const count = keyStarts.length;
    search: for (let s = 0; s < this.shapes.length; s++) {
      const shape = this.shapes[s];
      if (shape.ends.length !== count) continue;
      let at = 0;
      for (let m = 0; m < count; m++) {
        const start = keyStarts[m];
        const length = keyEnds[m] - start;
        if (shape.ends[m] - at !== length) continue search;
        for (let i = 0; i < length; i++) if (shape.keys[at + i] !== src[start + i]) continue search;
        at += length;
      }
      if (s > 0) this.shapes.unshift(...this.shapes.splice(s, 1));
      return shape.order;
    }
    const names = keyStarts.map((start, m) => this.decoded(start, keyEnds[m]));
    const order = names.map((_, m) => m).sort((a, b) => (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : 0));
    for (let k = 1; k < count; k++) if (names[order[k]] === names[order[k - 1]]) throw NOT_HERE;
    const ends: number[] = [];
    const keys = Buffer.concat(
      keyStarts.map((start, m) => {
        ends.push((ends[m - 1] ?? 0) + keyEnds[m] - start);
        return Buffer.from(src.buffer, src.byteOffset + start, keyEnds[m] - start);
      }),
    );
    if (this.shapes.length >= MAX_SHAPES) this.shapes.pop();
    this.shapes.unshift({ keys, ends, order });
    return order;
  }
}
