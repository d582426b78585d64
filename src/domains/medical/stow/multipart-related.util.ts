/**
 * multipart/related (RFC 2387 over RFC 2046 framing) for DICOMweb STOW-RS bodies. Hand-written
 * because the maintained Node parsers (busboy, @fastify/multipart) only accept multipart/form-data;
 * it works on the already size-limited body and copies no part.
 */
export interface MultipartPart {
  headers: Record<string, string>;
  body: Uint8Array;
}

export class MultipartError extends Error {}

/** Whether a Content-Type is multipart/related at all (its parameters aside). */
export function isMultipartRelated(contentType: string | undefined): contentType is string {
  return contentType !== undefined && /^multipart\/related\s*(;|$)/i.test(contentType.trim());
}

/** The `boundary` and `type` parameters of a multipart/related Content-Type, or a MultipartError saying what is wrong. */
export function parseMultipartRelatedType(contentType: string | undefined): { boundary: string; type?: string } {
  if (!isMultipartRelated(contentType)) {
    throw new MultipartError('Content-Type must be multipart/related; type="application/dicom"; boundary=...');
  }
  const params = new Map<string, string>();
  for (const match of contentType.matchAll(/;\s*([A-Za-z0-9!#$&^_.+-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/g)) {
    const name = match[1].toLowerCase();
    const raw = match[2];
    // A quoted value must close: `boundary="abc` is not the boundary "ab".
    if (raw.startsWith('"') && !/^"(?:[^"\\]|\\.)*"$/.test(raw)) {
      throw new MultipartError(`the ${name} parameter of Content-Type has an unterminated quoted string`);
    }
    if (params.has(name)) throw new MultipartError(`the ${name} parameter of Content-Type is given twice`);
    params.set(name, raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw);
  }
  const boundary = params.get('boundary');
  if (!boundary || boundary.length > 70)
    throw new MultipartError('the multipart boundary parameter is missing or longer than 70 characters');
  return { boundary, type: params.get('type')?.toLowerCase() };
}

/**
 * A part's headers by lower-case name. A line that starts with a space or a tab continues the header before it
 * (folding, RFC 5322 2.2.3, which MIME part headers keep: RFC 2045 3): `Content-Type:` then ` application/dicom` on
 * the next line was read as an empty type, and the part refused as "Content-Type is , not application/dicom".
 */
function parseHeaders(block: string, lineBreak: string): Record<string, string> {
  const headers: Record<string, string> = {};
  const lines: string[] = [];
  for (const line of block.split(lineBreak)) {
    const folded = (line.startsWith(' ') || line.startsWith('\t')) && lines.length > 0;
    if (folded) lines[lines.length - 1] += ` ${line.trim()}`;
    else lines.push(line);
  }
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

const LF = 0x0a;
const CR = 0x0d;
const CRLF = Buffer.from('\r\n');
const BARE_LF = Buffer.from('\n');

/**
 * Where the first delimiter starts: at the start of the body or of a line (RFC 2046 5.1.1: the delimiter is
 * CRLF, "--" and the boundary, the first one's CRLF optional). A preamble may hold the boundary elsewhere in a
 * line. A line here ends in LF, with or without CR before it: the body's line breaks are not known yet.
 */
function firstDelimiter(body: Buffer, delimiter: Buffer): number {
  if (body.subarray(0, delimiter.length).equals(delimiter)) return 0;
  const afterLf = body.indexOf(Buffer.concat([Buffer.of(LF), delimiter]));
  return afterLf < 0 ? -1 : afterLf + 1;
}

/**
 * Splits a multipart body into its parts (at most `maxParts`); preamble and epilogue are ignored.
 *
 * RFC 2046 frames parts with CRLF. Some DICOMweb clients (bodies put together by scripts, `echo` and `printf`
 * with `\n`) end every line in bare LF instead: the preamble's, the delimiters', the part headers'. Such a body
 * was refused as having no boundary or a malformed delimiter line. The first delimiter line says which the body
 * uses, and the whole body is then read that way: after a CRLF, exactly as before (a part that holds LF "--"
 * boundary by chance is not split there); after a bare LF, each delimiter is LF "--" boundary, the part headers
 * end at an empty line, and a part's bytes run up to that LF. Nothing in a part's body is ever changed, only
 * where it ends: a binary DICOM part is the bytes between its blank line and the next delimiter, whichever
 * the line breaks.
 */
/**
 * Why a body holds no delimiter: empty, or none of its lines starts with the boundary the Content-Type names
 * (at most 70 characters, so it is quoted): a body written with another boundary than its header gives, most often.
 */
function noDelimiter(body: Buffer, boundary: string): string {
  if (body.length === 0) return 'the body is empty: it holds no multipart delimiter line';
  return `the body contains no multipart boundary: no line starts with "--${boundary}", the delimiter of the boundary the Content-Type names (is the body written with another boundary?)`;
}

export function splitMultipart(body: Buffer, boundary: string, maxParts = Infinity): MultipartPart[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let at = firstDelimiter(body, delimiter);
  if (at < 0) throw new MultipartError(noDelimiter(body, boundary));
  /** The body's line break, as its first delimiter line ends: CRLF (RFC 2046) or, tolerated, a bare LF. */
  let eol: Buffer | undefined;
  for (;;) {
    let cursor = at + delimiter.length;
    if (body[cursor] === 0x2d && body[cursor + 1] === 0x2d) return parts; // closing delimiter
    // Transport padding, then the line break, ends the delimiter line.
    while (body[cursor] === 0x20 || body[cursor] === 0x09) cursor++;
    eol ??= body[cursor] === CR && body[cursor + 1] === LF ? CRLF : body[cursor] === LF ? BARE_LF : undefined;
    if (eol === undefined || !startsWith(body, cursor, eol))
      throw new MultipartError('malformed multipart delimiter line');
    cursor += eol.length;
    if (parts.length >= maxParts) {
      throw new MultipartError(`more than ${maxParts} parts in one request; send the instances in several requests`);
    }
    const end = body.indexOf(Buffer.concat([eol, delimiter]), cursor);
    if (end < 0) throw new MultipartError('the multipart body ends without a closing boundary (truncated upload?)');
    const headerEnd = body.indexOf(Buffer.concat([eol, eol]), cursor);
    let headers: Record<string, string> = {};
    let start: number;
    if (startsWith(body, cursor, eol)) {
      start = cursor + eol.length; // no headers
    } else if (headerEnd >= 0 && headerEnd < end) {
      headers = parseHeaders(body.subarray(cursor, headerEnd).toString('latin1'), eol.toString('latin1'));
      start = headerEnd + 2 * eol.length;
    } else {
      throw new MultipartError(`part ${parts.length + 1} has no header/body separator`);
    }
    parts.push({ headers, body: body.subarray(start, end) });
    at = end + eol.length;
  }
}

function startsWith(body: Buffer, at: number, bytes: Buffer): boolean {
  return body.subarray(at, at + bytes.length).equals(bytes);
}
