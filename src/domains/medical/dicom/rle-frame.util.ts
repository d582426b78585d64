/**
 * Checks one RLE Lossless frame against PS3.5 Annex G before the codec sees it: the RLE decoder takes
 * any header, so a damaged one came back as a garbage image and findings on it.
 */
export interface RleLayout {
  /** SamplesPerPixel x BitsAllocated / 8 (G.2). */
  segments: number;
  /** Rows x Columns: what each segment decodes to. */
  bytesPerSegment: number;
}

/** What is wrong with the frame, in words naming no pixel values; undefined when it is sound. */
export function rleFrameProblem(frame: Uint8Array, layout: RleLayout): string | undefined {
  if (frame.length < 64) return `the RLE frame is ${frame.length} bytes, shorter than its 64-byte header`;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const count = view.getUint32(0, true);
  if (count !== layout.segments) {
    return `the RLE header declares ${count} segment(s); SamplesPerPixel x BitsAllocated/8 needs ${layout.segments}`;
  }
  const offsets: number[] = [];
  for (let s = 0; s < count; s++) offsets.push(view.getUint32(4 + 4 * s, true));
  if (offsets[0] !== 64) return `the first RLE segment starts at byte ${offsets[0]}, not 64 (right after the header)`;
  for (let s = 0; s < count; s++) {
    if (offsets[s] >= frame.length) {
      return `RLE segment ${s + 1} starts at byte ${offsets[s]}, past the end of the ${frame.length}-byte frame`;
    }
    if (s > 0 && offsets[s] <= offsets[s - 1]) {
      return `RLE segment ${s + 1} starts at byte ${offsets[s]}, not after segment ${s} (${offsets[s - 1]})`;
    }
  }
  for (let s = 0; s < count; s++) {
    const produced = decodedLength(frame, offsets[s], s + 1 < count ? offsets[s + 1] : frame.length, layout);
    if (produced < layout.bytesPerSegment) {
      return `RLE segment ${s + 1} decodes to ${produced} bytes; Rows x Columns needs ${layout.bytesPerSegment}`;
    }
  }
  return undefined;
}

/** Bytes the PackBits segment [start, end) yields, counted up to what is needed (G.3.1); nothing is written. */
function decodedLength(frame: Uint8Array, start: number, end: number, layout: RleLayout): number {
  let produced = 0;
  let i = start;
  while (i < end && produced < layout.bytesPerSegment) {
    const n = frame[i++];
    if (n < 128) {
      const literal = Math.min(n + 1, end - i);
      produced += literal;
      i += literal;
    } else if (n > 128) {
      if (i >= end) break;
      produced += 257 - n;
      i++;
    }
    // n = 128 (-128): no operation.
  }
  return produced;
}
