import { AppError } from '../../common/errors/app-error';

/** One media range of an Accept header: its type and parameter names lower-cased, its quality, its place in the header. */
export interface MediaRange {
  type: string;
  /** Parameters other than q (and the accept-ext after it), by lower-cased name, values unquoted. */
  params: ReadonlyMap<string, string>;
  quality: number;
  position: number;
}

/** Splits at `separator` outside quoted strings (RFC 9110 5.6.4), so a quoted parameter value may hold one. */
function splitOutsideQuotes(text: string, separator: ',' | ';'): string[] {
  const pieces: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === '\\' && i + 1 < text.length) {
      current += c + text[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (!quoted && c === separator) {
      pieces.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  pieces.push(current);
  return pieces;
}

const unquote = (value: string): string =>
  value.startsWith('"') && value.endsWith('"') && value.length >= 2
    ? value.slice(1, -1).replace(/\\(.)/g, '$1')
    : value;

/** RFC 9110 12.4.2's qvalue: 0 to 1 with at most three decimals. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * A range's quality, or 400 naming Accept for a q that is no qvalue: read before as 0 (`q=abc`, so the range was
 * not accepted and the answer came in another type, or a 406 that did not say why) or as 1 (`q=1.5`).
 */
function qualityOf(value: string): number {
  if (QVALUE.test(value)) return Number(value);
  const reason = `q=${JSON.stringify(value.slice(0, 16))} is not a quality value: 0 to 1 with at most three decimals`;
  throw new AppError('VALIDATION_FAILED', `Accept: ${reason}`, { fields: [{ field: 'Accept', reason }] });
}

/** The media ranges of an Accept header, in order; 400 naming Accept for a quality value that is none. */
export function mediaRanges(accept: string): MediaRange[] {
  return splitOutsideQuotes(accept, ',').map((range, position) => {
    const [type, ...rest] = splitOutsideQuotes(range, ';').map((p) => p.trim());
    const params = new Map<string, string>();
    let quality = 1;
    for (const param of rest) {
      const eq = param.indexOf('=');
      const name = (eq < 0 ? param : param.slice(0, eq)).trim().toLowerCase();
      const value = eq < 0 ? '' : unquote(param.slice(eq + 1).trim());
      if (name === 'q') {
        quality = qualityOf(value);
        break; // what follows q is accept-ext, not a parameter of the media type (RFC 9110 12.5.1)
      }
      if (name && !params.has(name)) params.set(name, value);
    }
    return { type: type.toLowerCase(), params, quality, position };
  });
}

/**
 * Which of the media types an answer can be written in (`offered`, the default first) the Accept header prefers,
 * by its quality values (RFC 9110 12.5.1): each type takes its most specific range (`application/dicom` over
 * `application/*` over the full wildcard); at equal quality the type whose range is listed first, then the one
 * offered first. The default when there is no header; undefined when the header accepts none of them (not
 * listed, or q=0), which the caller answers with its default or with 406.
 */
export function preferredMediaType<T extends string>(accept: string | undefined, offered: readonly T[]): T | undefined {
  if (!accept?.trim()) return offered[0];
  const ranges = mediaRanges(accept);
  const preference = (type: string): { quality: number; position: number } => {
    const [major] = type.split('/');
    for (const candidate of [type, `${major}/*`, '*/*']) {
      const found = ranges.find((r) => r.type === candidate);
      if (found) return found;
    }
    return { quality: 0, position: Infinity };
  };
  let best: { type: T; quality: number; position: number } | undefined;
  for (const type of offered) {
    const { quality, position } = preference(type);
    if (quality === 0) continue;
    if (!best || quality > best.quality || (quality === best.quality && position < best.position)) {
      best = { type, quality, position };
    }
  }
  return best?.type;
}

/**
 * The media type of `offered` (the default first) the Accept header prefers, as `preferredMediaType` reads it; a
 * header that accepts none of them is a 406 (NOT_ACCEPTABLE) naming Accept and listing them. `writtenIn` ends the
 * sentence "the Accept header accepts none of the types ..." (e.g. "a store response is written in").
 */
export function acceptedMediaType<T extends string>(
  accept: string | undefined,
  offered: readonly T[],
  writtenIn: string,
): T {
  const type = preferredMediaType(accept, offered);
  if (type) return type;
  const listed = offered.join(', ');
  throw new AppError('NOT_ACCEPTABLE', `the Accept header accepts none of the types ${writtenIn} (${listed})`, {
    fields: [{ field: 'Accept', reason: `must accept one of ${listed}` }],
  });
}
