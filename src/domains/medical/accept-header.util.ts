/** One media range of an Accept header, lower-cased, with its quality and its place in the header. */
interface MediaRange {
  type: string;
  quality: number;
  position: number;
}

function mediaRanges(accept: string): MediaRange[] {
  return accept.split(',').map((range, position) => {
    const [type, ...params] = range.split(';').map((p) => p.trim().toLowerCase());
    const q = params.find((p) => /^q\s*=/.test(p));
    const quality = q === undefined ? 1 : Number(q.slice(q.indexOf('=') + 1).trim());
    return { type, quality: Number.isFinite(quality) ? Math.min(1, Math.max(0, quality)) : 0, position };
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
