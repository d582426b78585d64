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

function parseHeaders(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

const CRLF = Buffer.from('\r\n');

/**
 * Where the first delimiter starts: at the start of the body or of a line (RFC 2046 5.1.1: the delimiter is
 * CRLF, "--" and the boundary, the first one's CRLF optional). A preamble may hold the boundary elsewhere in a line.
 */
function firstDelimiter(body: Buffer, delimiter: Buffer): number {
  if (body.subarray(0, delimiter.length).equals(delimiter)) return 0;
  const afterCrlf = body.indexOf(Buffer.concat([CRLF, delimiter]));
  return afterCrlf < 0 ? -1 : afterCrlf + CRLF.length;
}

/** Splits a multipart body into its parts (at most `maxParts`); preamble and epilogue are ignored. */
export function splitMultipart(body: Buffer, boundary: string, maxParts = Infinity): MultipartPart[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let at = firstDelimiter(body, delimiter);
  if (at < 0) throw new MultipartError('the body contains no multipart boundary');
  for (;;) {
    let cursor = at + delimiter.length;
    if (body[cursor] === 0x2d && body[cursor + 1] === 0x2d) return parts; // closing delimiter
    // Transport padding, then CRLF, ends the delimiter line.
    while (body[cursor] === 0x20 || body[cursor] === 0x09) cursor++;
    if (body[cursor] !== 0x0d || body[cursor + 1] !== 0x0a)
      throw new MultipartError('malformed multipart delimiter line');
    cursor += 2;
    if (parts.length >= maxParts) {
      throw new MultipartError(`more than ${maxParts} parts in one request; send the instances in several requests`);
    }
    const next = body.indexOf(Buffer.concat([CRLF, delimiter]), cursor);
    if (next < 0) throw new MultipartError('the multipart body ends without a closing boundary (truncated upload?)');
    const headerEnd = body.indexOf('\r\n\r\n', cursor);
    let headers: Record<string, string> = {};
    let start: number;
    if (body[cursor] === 0x0d && body[cursor + 1] === 0x0a) {
      start = cursor + 2; // no headers
    } else if (headerEnd >= 0 && headerEnd < next) {
      headers = parseHeaders(body.subarray(cursor, headerEnd).toString('latin1'));
      start = headerEnd + 4;
    } else {
      throw new MultipartError(`part ${parts.length + 1} has no header/body separator`);
    }
    parts.push({ headers, body: body.subarray(start, next) });
    at = next + 2;
  }
}
