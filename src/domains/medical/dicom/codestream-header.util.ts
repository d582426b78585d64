/**
 * The image size an encoded frame declares in its own header, read before any codec runs: a data set whose
 * Rows / Columns disagree with it made the WASM decoders write past their buffers (a trap that poisoned the
 * shared heap) or hand back a different image cut to the claimed size.
 */
export interface CodestreamHeader {
  columns: number;
  /** 0 when a JPEG frame leaves its height to a later DNL marker. */
  rows: number;
  components: number;
  /** Bits per sample of the first component. */
  precision: number;
  /** Why the header gives no image at all (an empty or negative size), for the refusal; absent when it gives one. */
  fault?: string;
}

// SOF0-3, 5-7, 9-11, 13-15 (ITU T.81 B.1.1.3) and JPEG-LS SOF55 (ITU T.87 C.2.2).
const SOF_MARKERS = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf, 0xf7]);
// Markers without a length field: TEM, RSTn, SOI.
const STANDALONE = (m: number): boolean => m === 0x01 || (m >= 0xd0 && m <= 0xd8);

/** The frame header (SOFn) of a JPEG or JPEG-LS stream; undefined when there is none before the first scan. */
export function jpegFrameHeader(bytes: Uint8Array): CodestreamHeader | undefined {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let i = 2;
  while (i + 1 < bytes.length) {
    if (bytes[i] !== 0xff) return undefined;
    while (i < bytes.length && bytes[i] === 0xff) i++; // fill bytes
    const marker = bytes[i++];
    if (STANDALONE(marker)) continue;
    if (marker === 0xda || marker === 0xd9 || i + 2 > bytes.length) return undefined; // scan or end before a frame header
    const length = (bytes[i] << 8) | bytes[i + 1];
    if (SOF_MARKERS.has(marker)) {
      if (length < 8 || i + 8 > bytes.length) return undefined;
      const columns = (bytes[i + 5] << 8) | bytes[i + 6];
      return {
        precision: bytes[i + 2],
        rows: (bytes[i + 3] << 8) | bytes[i + 4],
        columns,
        components: bytes[i + 7],
        // T.81 B.2.2: X, the number of samples per line, is 1 to 65535.
        ...(columns === 0 ? { fault: 'its SOF marker gives 0 samples per line' } : {}),
      };
    }
    if (length < 2) return undefined;
    i += length;
  }
  return undefined;
}

const JP2_SIGNATURE = [0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a];

/** The SIZ marker of a JPEG 2000 / HTJ2K codestream (ITU T.800 A.5.1), bare or in a JP2 file's jp2c box. */
export function j2kFrameHeader(bytes: Uint8Array): CodestreamHeader | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let start = 0;
  if (JP2_SIGNATURE.every((b, k) => bytes[k] === b)) {
    start = -1;
    for (let box = 0; box + 8 <= bytes.length;) {
      let length = view.getUint32(box);
      let header = 8;
      if (length === 1) {
        if (box + 16 > bytes.length) return undefined;
        length = Number(view.getBigUint64(box + 8));
        header = 16;
      } else if (length === 0) {
        length = bytes.length - box;
      }
      if (view.getUint32(box + 4) === 0x6a703263 /* 'jp2c' */) {
        start = box + header;
        break;
      }
      if (length < header) return undefined;
      box += length;
    }
    if (start < 0) return undefined;
  }
  // SOC, then SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz Ssiz...
  if (start + 43 > bytes.length || view.getUint16(start) !== 0xff4f || view.getUint16(start + 2) !== 0xff51) {
    return undefined;
  }
  const siz = start + 4;
  const [xsiz, ysiz, xosiz, yosiz] = [4, 8, 12, 16].map((at) => view.getUint32(siz + at));
  // T.800 A.5.1: the image area is the reference grid less its offset, so XOsiz < Xsiz and YOsiz < Ysiz; otherwise
  // the size came out as a negative number in the refusal.
  const empty = xosiz >= xsiz || yosiz >= ysiz;
  return {
    columns: empty ? 0 : xsiz - xosiz,
    rows: empty ? 0 : ysiz - yosiz,
    components: view.getUint16(siz + 36),
    precision: (bytes[siz + 38] & 0x7f) + 1,
    ...(empty
      ? {
          fault:
            `its SIZ marker puts the image offset outside the reference grid ` +
            `(XOsiz ${xosiz}, Xsiz ${xsiz}; YOsiz ${yosiz}, Ysiz ${ysiz}): it must be less than the grid's size`,
        }
      : {}),
  };
}
