import * as dicomParser from 'dicom-parser';
import { Context, NativeCodecs } from 'dcmjs-codecs';
import type { StoredFrame } from '../pixels/pixel-pipeline.util';
import { CodestreamHeader, j2kFrameHeader, jpegFrameHeader } from './codestream-header.util';
import { DicomImage, nativeSamplesPerFrame } from './dicom-parse.util';
import { DicomRejected } from './dicom-rejected';
import { valuesInWords } from './ow-bytes.util';
import { paletteToRgb } from './palette-lut.util';
import { rleFrameProblem } from './rle-frame.util';
import { attributeName, Codec, SUPPORTED_TRANSFER_SYNTAXES, TS } from './dicom-dictionary';

/** The part of the WebAssembly API used here (TypeScript declares it only with the DOM libraries). */
declare const WebAssembly: { RuntimeError: abstract new () => Error };

let codecsReady: Promise<void> | undefined;

/**
 * Loads the WebAssembly codecs (libjpeg-turbo 8/12/16-bit, CharLS, OpenJPEG, OpenJPH, RLE): once per process,
 * and again after a trap discarded them. Callers await it before decoding; it is settled at once when loaded.
 */
export function initialisePixelCodecs(): Promise<void> {
  codecsReady ??= NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false }).catch(
    (error: unknown) => {
      codecsReady = undefined; // the next call tries again
      throw error;
    },
  );
  return codecsReady;
}

/**
 * A WebAssembly trap stops the codec mid-call: its heap keeps what it had allocated (130 MB a time) and its
 * allocator and stack are in an unknown state (later decodes failed or spun forever). The instance is dropped
 * and a fresh one, with a fresh heap, is loaded.
 */
function discardPoisonedCodecs(): void {
  NativeCodecs.release();
  codecsReady = undefined;
  initialisePixelCodecs().catch(() => undefined); // a failure shows on the next decode's await
}

/** Which frames to analyse (0-based) under a frame policy. */
export function selectFrames(numberOfFrames: number, policy: 'all' | 'first' | 'middle', maxFrames: number): number[] {
  if (policy === 'first') return [0];
  if (policy === 'middle') return [Math.floor((numberOfFrames - 1) / 2)];
  if (numberOfFrames > maxFrames) {
    throw new DicomRejected(
      'TOO_MANY_FRAMES',
      `the instance has ${numberOfFrames} frames; at most ${maxFrames} are analysed per instance (MEDICAL_MAX_FRAMES), or set MEDICAL_FRAME_POLICY=first|middle`,
      attributeName('NumberOfFrames'),
    );
  }
  return Array.from({ length: numberOfFrames }, (_, i) => i);
}

/** Stored values of native (uncompressed) pixel data, sign-extended and masked to BitsStored. */
function nativeFrame(image: DicomImage, frame: number): Int32Array | Uint8Array | Uint16Array {
  const ds = image.dataSet;
  const element = ds.elements['x7fe00010'];
  const samples = nativeSamplesPerFrame(image);
  const bytesPer = image.bitsAllocated / 8;
  const start = element.dataOffset + frame * samples * bytesPer;
  const bytes = ds.byteArray;
  const bigEndian = image.transferSyntaxUID === TS.ExplicitBig;
  // 8-bit samples in OW words: each word's two bytes swapped in big endian, so a colour image's channels mixed and an
  // ultrasound multi-frame sent in big endian was analysed as another image.
  if (bigEndian && bytesPer === 1 && element.vr === 'OW') {
    return storedValues(
      valuesInWords(bytes, element.dataOffset, frame * samples, samples, true),
      0,
      samples,
      image,
      false,
    );
  }
  return storedValues(bytes, start, samples, image, bigEndian);
}

function storedValues(
  bytes: Uint8Array,
  start: number,
  samples: number,
  image: DicomImage,
  bigEndian: boolean,
): Int32Array | Uint8Array | Uint16Array {
  const { bitsAllocated, bitsStored, pixelRepresentation } = image;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const mask = bitsStored >= 32 ? 0xffffffff : 2 ** bitsStored - 1;
  const signBit = 2 ** (bitsStored - 1);
  // A view, not a copy: the frame is only read, and the request holds the body until it is answered.
  if (bitsAllocated === 8 && pixelRepresentation === 0 && bitsStored === 8)
    return bytes.subarray(start, start + samples);
  if (bitsAllocated === 16 && pixelRepresentation === 0 && bitsStored === 16 && !bigEndian) {
    const out = new Uint16Array(samples);
    for (let i = 0; i < samples; i++) out[i] = view.getUint16(start + 2 * i, true);
    return out;
  }
  const out = new Int32Array(samples);
  for (let i = 0; i < samples; i++) {
    let raw: number;
    if (bitsAllocated === 8) raw = bytes[start + i];
    else if (bitsAllocated === 16) raw = view.getUint16(start + 2 * i, !bigEndian);
    else raw = view.getUint32(start + 4 * i, !bigEndian);
    let v = raw & mask;
    if (pixelRepresentation === 1 && v >= signBit) v -= 2 * signBit;
    out[i] = v;
  }
  return out;
}

const startsWith = (bytes: Uint8Array, marker: number[]): boolean => marker.every((b, k) => bytes[k] === b);
const JP2_SIGNATURE_BOX = [0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20];

/**
 * Whether an encoded frame begins with these bytes: JPEG and JPEG-LS with SOI (FFD8) and a marker, JPEG 2000 and
 * HTJ2K with SOC then SIZ (FF4F FF51), or the JP2 signature box the header check reads too, RLE with its header.
 */
const FRAME_START: Partial<Record<Codec, (bytes: Uint8Array) => boolean>> = {
  // RLE: a header of 1 to 15 segments whose first starts at byte 64 (PS3.5 G.5).
  rle: (bytes) =>
    bytes.length >= 8 &&
    bytes[1] === 0 &&
    bytes[2] === 0 &&
    bytes[3] === 0 &&
    bytes[0] >= 1 &&
    bytes[0] <= 15 &&
    bytes[4] === 64 &&
    bytes[5] === 0 &&
    bytes[6] === 0 &&
    bytes[7] === 0,
  jpeg: (bytes) => startsWith(bytes, [0xff, 0xd8, 0xff]),
  'jpeg-ls': (bytes) => startsWith(bytes, [0xff, 0xd8, 0xff]),
  jpeg2000: (bytes) => startsWith(bytes, [0xff, 0x4f, 0xff, 0x51]) || startsWith(bytes, JP2_SIGNATURE_BOX),
  htj2k: (bytes) => startsWith(bytes, [0xff, 0x4f, 0xff, 0x51]) || startsWith(bytes, JP2_SIGNATURE_BOX),
};

/** What begins each codec's frame, for a refusal that says which fragments were looked for. */
const CODESTREAM_START: Partial<Record<Codec, string>> = {
  rle: 'an RLE header',
  jpeg: 'a JPEG codestream (SOI)',
  'jpeg-ls': 'a JPEG-LS codestream (SOI)',
  jpeg2000: 'a JPEG 2000 codestream (SOC then SIZ, or a JP2 signature)',
  htj2k: 'an HTJ2K codestream (SOC then SIZ, or a JP2 signature)',
};

/** Whether an offset table has one entry per frame, each the offset of a fragment after the previous one's. */
function locatesFrames(table: number[], fragments: Array<{ offset: number }>, frames: number): boolean {
  if (table.length !== frames || table[0] !== 0) return false;
  const starts = new Set(fragments.map((f) => f.offset));
  return table.every((offset, k) => starts.has(offset) && (k === 0 || offset > table[k - 1]));
}

/** The encoded bytes of one frame of encapsulated pixel data. */
function encodedFrame(image: DicomImage, frame: number): Uint8Array {
  const ds = image.dataSet;
  const element = ds.elements['x7fe00010'];
  const fragments = element.fragments ?? [];
  const codec = SUPPORTED_TRANSFER_SYNTAXES.get(image.transferSyntaxUID)?.codec;
  const opens = codec === undefined ? undefined : FRAME_START[codec];
  const beginsFrame = (f: { position: number; length: number }): boolean =>
    opens !== undefined && opens(ds.byteArray.subarray(f.position, f.position + f.length));
  if (image.numberOfFrames === 1) {
    // One frame's fragments are all its own (PS3.5 A.4); more than one codestream among them is more frames than
    // NumberOfFrames (absent, or 1) gives, and all but the first went unanalysed, the codec reading the first only.
    const codestreams = fragments.filter(beginsFrame).length;
    if (codestreams > 1) {
      throw new DicomRejected(
        'MALFORMED',
        `the encapsulated pixel data holds ${codestreams} frames (fragments that begin a codestream), (0028,0008) NumberOfFrames gives 1`,
        attributeName('NumberOfFrames'),
      );
    }
    return dicomParser.readEncapsulatedPixelDataFromFragments(ds, element, 0, fragments.length) as Uint8Array;
  }
  let table = element.basicOffsetTable ?? [];
  // A Basic Offset Table has one entry per frame (PS3.5 A.4) or none. dcmjs writes one per fragment when it
  // writes a file it read (a frame in several fragments and no table comes back as many "frames", each its own
  // entry): so do the C-STOREs of dcmjs-dimse's CStoreRequest. Such a table locates no frame; the fragments do,
  // as they would without one. A table whose entries are not offsets of fragments, in order from 0 (PS3.5 A.4),
  // is left aside too: one measured from elsewhere made dicom-parser fail every frame (422).
  if (!locatesFrames(table, fragments, image.numberOfFrames)) table = [];
  if (table.length === 0 && fragments.length === image.numberOfFrames) {
    table = fragments.map((f) => f.offset);
  }
  if (table.length === 0 && codec === 'jpeg') {
    // No offset table and several fragments per frame: dicom-parser ends a JPEG frame at a fragment ending in EOI.
    table = dicomParser.createJPEGBasicOffsetTable(ds, element);
    if (table.length !== image.numberOfFrames) table = [];
  }
  let starts: number | undefined;
  if (table.length === 0 && opens) {
    // PS3.5 A.4: a frame may span fragments and the table may be empty. Each frame's first fragment begins with its
    // codestream's start marker, which JPEG's and JPEG-LS's entropy-coded data cannot hold (a byte after FF is 00
    // or RSTn, or below 80) and JPEG 2000's hardly; only a count of exactly NumberOfFrames is taken.
    table = fragments.filter(beginsFrame).map((f) => f.offset);
    starts = table.length;
  }
  if (table.length !== image.numberOfFrames) {
    // Said in numbers: how many fragments begin a frame against how many frames there are, so a sender can tell a
    // wrong NumberOfFrames from a frame cut before its start marker.
    const found =
      starts === undefined || codec === undefined
        ? ''
        : `, and ${starts} fragments (not ${image.numberOfFrames}, one per frame as (0028,0008) NumberOfFrames gives) ` +
          `begin ${CODESTREAM_START[codec]}`;
    throw new DicomRejected(
      'MALFORMED',
      `the encapsulated pixel data has ${fragments.length} fragments and no usable offset table for ` +
        `${image.numberOfFrames} frames${found}: the frames cannot be told apart`,
      attributeName('PixelData'),
    );
  }
  return dicomParser.readEncapsulatedImageFrame(ds, element, frame, table) as Uint8Array;
}

const FRAME_HEADERS: Partial<Record<string, (bytes: Uint8Array) => CodestreamHeader | undefined>> = {
  jpeg: jpegFrameHeader,
  'jpeg-ls': jpegFrameHeader,
  jpeg2000: j2kFrameHeader,
  htj2k: j2kFrameHeader,
};

/** Refuses a frame whose own header disagrees with the image attributes, before a codec trusts them. */
function checkFrameHeader(image: DicomImage, frame: number, codec: string, encoded: Uint8Array): void {
  const read = FRAME_HEADERS[codec];
  if (!read) return;
  const header = read(encoded);
  const where = `frame ${frame + 1}`;
  if (!header) {
    throw new DicomRejected(
      'DECODE_FAILED',
      `${where} has no ${codec === 'jpeg2000' || codec === 'htj2k' ? 'SIZ' : 'SOF'} header to read its size from`,
      attributeName('PixelData'),
    );
  }
  if (header.fault !== undefined) {
    throw new DicomRejected(
      'DECODE_FAILED',
      `${where}: the encoded frame's header gives no image: ${header.fault}`,
      attributeName('PixelData'),
    );
  }
  if (header.columns !== image.columns || (header.rows !== 0 && header.rows !== image.rows)) {
    throw new DicomRejected(
      'DECODE_FAILED',
      `${where}: the encoded frame is ${header.columns}x${header.rows || '?'} (columns x rows), (0028,0011) Columns / (0028,0010) Rows say ${image.columns}x${image.rows}`,
      attributeName('Rows'),
    );
  }
  if (header.components !== image.samplesPerPixel) {
    throw new DicomRejected(
      'DECODE_FAILED',
      `${where}: the encoded frame has ${header.components} component(s), (0028,0002) SamplesPerPixel says ${image.samplesPerPixel}`,
      attributeName('SamplesPerPixel'),
    );
  }
  if (header.precision > image.bitsAllocated) {
    throw new DicomRejected(
      'DECODE_FAILED',
      `${where}: the encoded frame has ${header.precision}-bit samples, (0028,0100) BitsAllocated says ${image.bitsAllocated}`,
      attributeName('BitsAllocated'),
    );
  }
}

function decodeCompressed(image: DicomImage, frame: number): StoredFrame {
  const codec = SUPPORTED_TRANSFER_SYNTAXES.get(image.transferSyntaxUID)?.codec;
  if (codec === undefined || codec === 'native') {
    throw new DicomRejected(
      'MALFORMED',
      'encapsulated pixel data in an uncompressed transfer syntax',
      attributeName('PixelData'),
    );
  }
  const encoded = encodedFrame(image, frame);
  checkFrameHeader(image, frame, codec, encoded);
  if (codec === 'rle') {
    const problem = rleFrameProblem(encoded, {
      segments: image.samplesPerPixel * (image.bitsAllocated / 8),
      bytesPerSegment: image.rows * image.columns,
    });
    if (problem) throw new DicomRejected('DECODE_FAILED', `frame ${frame + 1}: ${problem}`, attributeName('PixelData'));
  }
  return runCodec(image, frame, codec, encoded);
}

/**
 * The codec call alone, trusting the image attributes (decodeFrame checks the frame's header first); a trap
 * discards the codec instance. Exported for the test that traps it on purpose.
 */
export function runCodec(
  image: DicomImage,
  frame: number,
  codec: Exclude<Codec, 'native'>,
  encoded: Uint8Array,
): StoredFrame {
  let context = new Context({
    width: image.columns,
    height: image.rows,
    bitsAllocated: image.bitsAllocated,
    bitsStored: image.bitsStored,
    samplesPerPixel: image.samplesPerPixel,
    pixelRepresentation: image.pixelRepresentation,
    planarConfiguration: image.planarConfiguration,
    photometricInterpretation: image.photometric,
    encodedBuffer: encoded,
  });
  try {
    switch (codec) {
      case 'rle':
        context = NativeCodecs.decodeRle(context);
        break;
      case 'jpeg':
        context = NativeCodecs.decodeJpeg(context, { convertColorspaceToRgb: true });
        break;
      case 'jpeg-ls':
        context = NativeCodecs.decodeJpegLs(context);
        break;
      case 'jpeg2000':
        context = NativeCodecs.decodeJpeg2000(context);
        break;
      case 'htj2k':
        context = NativeCodecs.decodeHtJpeg2000(context);
        break;
    }
  } catch (error) {
    // A RangeError is the codec's too: a WebAssembly stack overflow, or a typed array over its heap made from a
    // pointer or size the damaged stream left; either way its state is no longer known.
    if (error instanceof WebAssembly.RuntimeError || error instanceof RangeError) discardPoisonedCodecs();
    throw error;
  }
  const decoded = context.getDecodedBuffer();
  const samples = image.rows * image.columns * image.samplesPerPixel;
  const needed = samples * (image.bitsAllocated / 8);
  // Exactly: a shorter or longer buffer is another image than the attributes describe.
  if (!decoded || decoded.byteLength !== needed) {
    throw new DicomRejected(
      'DECODE_FAILED',
      `frame ${frame + 1} decoded to ${decoded?.byteLength ?? 0} bytes; Rows x Columns x SamplesPerPixel x BitsAllocated/8 is ${needed}`,
      attributeName('PixelData'),
    );
  }
  return {
    rows: image.rows,
    columns: image.columns,
    samplesPerPixel: image.samplesPerPixel,
    photometric: (context.getPhotometricInterpretation() ?? image.photometric).toUpperCase(),
    planarConfiguration: context.getPlanarConfiguration() ?? 0,
    values: storedValues(decoded, 0, samples, image, false),
  };
}

/**
 * Decodes one frame (0-based) to stored values, a PALETTE COLOR one to the 8-bit RGB its palette gives; a codec
 * failure becomes a DECODE_FAILED refusal.
 */
export function decodeFrame(image: DicomImage, frame: number): StoredFrame {
  const stored = decodeStoredFrame(image, frame);
  return image.palette ? paletteToRgb(stored, image.palette) : stored;
}

function decodeStoredFrame(image: DicomImage, frame: number): StoredFrame {
  const info = SUPPORTED_TRANSFER_SYNTAXES.get(image.transferSyntaxUID);
  try {
    if (info?.codec === 'native') {
      return {
        rows: image.rows,
        columns: image.columns,
        samplesPerPixel: image.samplesPerPixel,
        photometric: image.photometric,
        planarConfiguration: image.planarConfiguration,
        values: nativeFrame(image, frame),
      };
    }
    return decodeCompressed(image, frame);
  } catch (error) {
    if (error instanceof DicomRejected) throw error;
    const syntax = info?.name ?? image.transferSyntaxUID;
    throw new DicomRejected(
      'DECODE_FAILED',
      `frame ${frame + 1} could not be decoded as ${syntax}: ${codecFailure(error, syntax, info?.codec === 'native')}`,
      attributeName('PixelData'),
    );
  }
}

/**
 * Why a codec failed, in words for the sender. A WebAssembly trap's message ("unreachable", "memory access out of
 * bounds") or a RangeError's ("Start offset 16 is outside the bounds of the buffer", "Maximum call stack size
 * exceeded") names the machine's fault, not the frame's, and says nothing to a PACS; a codec's own message
 * (libjpeg's "Unsupported marker type 0xf7") is kept.
 */
function codecFailure(error: unknown, syntax: string, native: boolean): string {
  if (error instanceof WebAssembly.RuntimeError || error instanceof RangeError) {
    return native
      ? `the frame's pixel data cannot be read to its end at ${syntax}'s sample size`
      : `the frame's data is not a valid ${syntax} stream`;
  }
  return error instanceof Error ? error.message : String(error);
}
