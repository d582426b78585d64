import { constants as bufferConstants } from 'node:buffer';
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import * as dicomParser from 'dicom-parser';
import type { UltrasoundRegion } from '../lesions/lesion-postprocess.util';
import { type TextDecode, textDecoderFor } from './character-set.util';
import { DicomRejected } from './dicom-rejected';
import {
  encapsulatedStartRejection,
  itemsPastSequenceRejection,
  LONG_VRS,
  sequenceRejection,
  tagAt,
  vrAt,
} from './dicom-sequence.util';
import { isDicomUid } from './dicom-uid.util';
import { PaletteLut, readPaletteLut } from './palette-lut.util';
import {
  attributeName,
  IMAGE_STORAGE_SOP_CLASSES,
  nonImageKind,
  SUPPORTED_TRANSFER_SYNTAXES,
  TAG,
  tagName,
  transferSyntaxName,
  TS,
} from './dicom-dictionary';

/** What the gateway knows about one image instance after parsing and validation. */
export interface DicomImage {
  transferSyntaxUID: string;
  sopClassUID: string;
  sopInstanceUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  modality: string;
  rows: number;
  columns: number;
  samplesPerPixel: number;
  photometric: string;
  planarConfiguration: number;
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: number;
  numberOfFrames: number;
  rescaleSlope?: number;
  rescaleIntercept?: number;
  windowCenter?: number;
  windowWidth?: number;
  voiLutFunction?: string;
  pixelSpacing?: number[];
  ultrasoundRegions: UltrasoundRegion[];
  /** A PALETTE COLOR image's palette: its frames are analysed as the RGB it gives. */
  palette?: PaletteLut;
  /** Patient and study attributes, kept only for the DICOM SR answer; never logged or stored. */
  patient: Record<string, string | undefined>;
  study: Record<string, string | undefined>;
  /** The parsed data set (for frame extraction). */
  readonly dataSet: dicomParser.DataSet;
}

export interface ParseLimits {
  /** Largest inflated size of a deflated data set (a zip bomb stops here). */
  maxInflatedBytes: number;
  maxRows: number;
  maxColumns: number;
  /** Most pixels decoded for one instance, Rows x Columns x frames analysed (MEDICAL_MAX_PIXELS); default 64 Mi. */
  maxPixels?: number;
  /** Most frames analysed: MEDICAL_MAX_FRAMES under the `all` policy, 1 under `first` / `middle`; default all. */
  maxAnalysedFrames?: number;
}

/**
 * Decoded bytes per encoded byte beyond which compressed pixel data is refused as implausible: RLE cannot pass
 * 64:1, JPEG lossless 16:1, lossy JPEG and JPEG 2000 of real images stay under a few hundred to one. Only
 * JPEG-LS or JPEG 2000 of an almost blank image goes further, so the bound applies from MIN_SUSPECT_BYTES on.
 */
const MAX_COMPRESSION_RATIO = 1000;
const MIN_SUSPECT_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_PIXELS = 64 * 1024 * 1024;

const PHOTOMETRICS = new Set([
  'MONOCHROME1',
  'MONOCHROME2',
  'PALETTE COLOR',
  'RGB',
  'YBR_FULL',
  'YBR_FULL_422',
  'YBR_RCT',
  'YBR_ICT',
]);
/** Photometric interpretations of one sample a pixel; the others have three. */
const ONE_SAMPLE = new Set(['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR']);

/** Samples in one native frame: YBR_FULL_422 stores Y1 Y2 Cb Cr per pair of pixels, two samples a pixel (PS3.3 C.7.6.3.1.2). */
export function nativeSamplesPerFrame(
  image: Pick<DicomImage, 'rows' | 'columns' | 'samplesPerPixel' | 'photometric'>,
): number {
  const pixels = image.rows * image.columns;
  return image.photometric === 'YBR_FULL_422' && image.samplesPerPixel === 3
    ? 2 * pixels
    : pixels * image.samplesPerPixel;
}

function asBytes(body: Uint8Array): Uint8Array {
  // dicom-parser's deflate path copies with Buffer methods; a plain Uint8Array view is enough elsewhere.
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

function parseErrorText(error: unknown): string {
  if (typeof error === 'string') return error;
  if (error instanceof Error) return error.message;
  if (error && typeof error === 'object' && 'exception' in error) return String(error.exception);
  return 'unreadable data set';
}

/** What a body without 'DICM' at byte 128 lacks: a file written without its preamble is told so (PS3.10 7.1). */
function withoutPrefix(bytes: Uint8Array): string {
  if (Buffer.from(bytes.subarray(0, 4)).toString('latin1') === 'DICM') {
    return "'DICM' is at byte 0, not 128: the 128-byte preamble before it is missing";
  }
  if (
    bytes.length >= 8 &&
    bytes[0] === 0x02 &&
    bytes[1] === 0x00 &&
    /^[A-Z]{2}$/.test(Buffer.from(bytes.subarray(4, 6)).toString('latin1'))
  ) {
    return "it starts with the file meta information (group 0002) without the 128-byte preamble and 'DICM' prefix before it";
  }
  return "no 'DICM' prefix at byte 128 (the file meta information is missing)";
}

/**
 * Reads the file meta group alone, to refuse an unsupported transfer syntax before touching the data set. Returns
 * the meta group too: its (0002,0002) and (0002,0003) name an instance whose data set cannot be read.
 */
function readFileMeta(bytes: Uint8Array): { transferSyntaxUID: string; meta: dicomParser.DataSet } {
  if (bytes.length < 132 || Buffer.from(bytes.subarray(128, 132)).toString('latin1') !== 'DICM') {
    throw new DicomRejected('NOT_DICOM', `not a DICOM Part 10 file: ${withoutPrefix(bytes)}`);
  }
  let meta: dicomParser.DataSet;
  try {
    meta = dicomParser.readPart10Header(bytes);
  } catch (error) {
    const text = parseErrorText(error);
    if (/DICM prefix not found/i.test(text)) {
      throw new DicomRejected(
        'NOT_DICOM',
        "not a DICOM Part 10 file: no 'DICM' prefix at byte 128 (the file meta information is missing)",
      );
    }
    throw cutInMeta(bytes) ?? new DicomRejected('MALFORMED', `the file meta information cannot be read (${text})`);
  }
  const ts = safeString(meta, TAG.TransferSyntaxUID);
  const named = (rejection: DicomRejected): DicomRejected => rejection.withSop(...metaSop(meta));
  if (!ts)
    throw named(
      metaOutOfStep(meta) ??
        new DicomRejected(
          'MALFORMED',
          'the file meta information has no transfer syntax',
          attributeName('TransferSyntaxUID'),
        ),
    );
  const overrun = metaOverrun(meta);
  if (overrun) throw named(overrun);
  if (!SUPPORTED_TRANSFER_SYNTAXES.has(ts)) {
    throw named(
      new DicomRejected(
        'UNSUPPORTED_TRANSFER_SYNTAX',
        `transfer syntax ${ts} (${transferSyntaxName(ts)}) is not supported; send one of: ${[...SUPPORTED_TRANSFER_SYNTAXES.values()].map((t) => t.name).join(', ')}`,
        attributeName('TransferSyntaxUID'),
      ),
    );
  }
  return { transferSyntaxUID: ts, meta };
}

/**
 * Why the file meta stopped being read before its transfer syntax, where its own group length tells: dicom-parser
 * reads group 0002 elements until a tag of another group, so one wrong length or VR put the rest out of step and
 * the refusal said that the file meta "has no transfer syntax", though it had one. Undefined where the elements read
 * reach the end (0002,0000) gives: the transfer syntax is truly absent.
 */
function metaOutOfStep(meta: dicomParser.DataSet): DicomRejected | undefined {
  const groupLength = meta.elements['x00020000'];
  if (groupLength && groupLength.length !== 4) {
    return new DicomRejected(
      'MALFORMED',
      `the file meta information cannot be read: its group length (0002,0000) (VR ${groupLength.vr ?? 'unknown'}) has a value length of ${groupLength.length}, which cannot be: it holds one UL value, of 4 bytes (PS3.10 7.1); the elements after it are read out of step, so (0002,0010) TransferSyntaxUID is not found`,
      '(0002,0000) FileMetaInformationGroupLength',
    );
  }
  if (!groupLength) return undefined;
  const size = meta.byteArray.length;
  // Cut inside the group length's value: reading it threw dicom-parser's string, which no caller took for a refusal.
  if (groupLength.dataOffset + 4 > size) return truncatedInMeta(size);
  const end = groupLength.dataOffset + 4 + meta.uint32('x00020000')!;
  const elements = Object.values(meta.elements).sort((a, b) => a.dataOffset - b.dataOffset);
  const last = elements[elements.length - 1];
  const lastEnd = last.dataOffset + last.length;
  if (lastEnd === end) return undefined;
  if (lastEnd >= size) return truncatedInMeta(size, end);
  return new DicomRejected(
    'MALFORMED',
    `the file meta information cannot be read past its element ${tagName(last.tag)} (VR ${last.vr ?? 'unknown'}, value length ${last.length}), which ends at byte ${lastEnd}, where its group length (0002,0000) gives its end at byte ${end}: that element's length or VR is wrong, or one before it, and the elements after it are read out of step, so (0002,0010) TransferSyntaxUID is not found`,
    tagName(last.tag),
  );
}

/**
 * The refusal of a file meta whose last element read runs past the end of the data, its transfer syntax read before
 * it: the data set would begin past the end, and dicom-parser's ByteStream threw its string ("parameter 'position'
 * cannot be greater than or equal to 'byteArray' length"), which was the reason. Where the group length (0002,0000)
 * ends the file meta inside the data, the file is not truncated: that element's length or VR is wrong.
 */
function metaOverrun(meta: dicomParser.DataSet): DicomRejected | undefined {
  const size = meta.byteArray.length;
  const elements = Object.values(meta.elements);
  const last = elements.reduce((a, b) => (b.dataOffset + b.length > a.dataOffset + a.length ? b : a));
  if (last.dataOffset + last.length <= size) return undefined;
  const groupLength = meta.elements['x00020000'];
  const end =
    groupLength?.length === 4 && groupLength.dataOffset + 4 <= size
      ? groupLength.dataOffset + 4 + meta.uint32('x00020000')!
      : undefined;
  if (end !== undefined && end >= size) return truncatedInMeta(size, end);
  const why =
    end !== undefined
      ? `, where its group length (0002,0000) gives its end at byte ${end}: that element's length or VR is wrong (the file is not truncated)`
      : ": that element's length or VR is wrong, or the file is truncated";
  return new DicomRejected(
    'MALFORMED',
    `the file meta information cannot be read: its element ${tagName(last.tag)} (VR ${last.vr ?? 'unknown'}) at byte ${last.dataOffset} has a value length of ${last.length}, which runs past the end of the data (${size} bytes in all)${why}`,
    tagName(last.tag),
  );
}

/**
 * The refusal of a file cut inside its file meta, read from its group length (0002,0000), the first element after
 * 'DICM' (PS3.10 7.1), where dicom-parser threw its string past the end of the data ("attempt to read past end of
 * buffer"). Undefined where that group length is not there to tell.
 */
function cutInMeta(bytes: Uint8Array): DicomRejected | undefined {
  if (bytes.length < 144) return undefined;
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.readUInt32LE(132) !== 0x00000002 || view.toString('latin1', 136, 138) !== 'UL') return undefined;
  const end = 144 + view.readUInt32LE(140);
  return end > bytes.length ? truncatedInMeta(bytes.length, end) : undefined;
}

/** The refusal of a data set cut inside the header of the element at `at`, where dicom-parser threw its string. */
function cutInHeader(ds: dicomParser.DataSet, at: number, explicit: boolean): DicomRejected | undefined {
  const size = ds.byteArray.length;
  const vr = explicit && at + 6 <= size ? vrAt(ds, at) : '';
  const headerBytes = LONG_VRS.has(vr) ? 12 : 8;
  if (at >= size || at + headerBytes <= size) return undefined;
  // Its size is known where its VR is (explicit VR) or needed none (implicit VR).
  const known = !explicit || vr !== '' ? `${headerBytes}-byte ` : '';
  const tag = at + 4 <= size ? tagAt(ds, at) : undefined;
  return new DicomRejected(
    'MALFORMED',
    `the file is truncated: it ends at byte ${size}, inside the ${known}header of the element ${tag ? `${tagName(tag)} ` : ''}at byte ${at}`,
    tag && tagName(tag),
  );
}

function truncatedInMeta(size: number, end?: number): DicomRejected {
  const gives = end === undefined ? '' : `, which its group length (0002,0000) gives to end at byte ${end}`;
  return new DicomRejected(
    'MALFORMED',
    `the file is truncated: it ends at byte ${size}, inside the file meta information${gives}`,
    '(0002,0000) FileMetaInformationGroupLength',
  );
}

/** The SOP class and instance the file meta names (MediaStorageSOPClassUID, MediaStorageSOPInstanceUID). */
function metaSop(meta: dicomParser.DataSet): [string | undefined, string | undefined] {
  return [safeString(meta, TAG.MediaStorageSOPClassUID), safeString(meta, TAG.MediaStorageSOPInstanceUID)];
}

function requiredString(ds: dicomParser.DataSet, keyword: keyof typeof TAG): string {
  const value = ds.string(TAG[keyword])?.trim();
  if (!value)
    throw new DicomRejected('MALFORMED', `${attributeName(keyword)} is missing or empty`, attributeName(keyword));
  return value;
}

/** A UID the answer copies (the SR's study, its reference to the image): refused here rather than an SR failing later. */
function requiredUid(
  ds: dicomParser.DataSet,
  keyword: 'SOPInstanceUID' | 'StudyInstanceUID' | 'SeriesInstanceUID',
): string {
  const value = requiredString(ds, keyword).replace(/\0+$/, '');
  if (!isDicomUid(value)) {
    throw new DicomRejected(
      'MALFORMED',
      `${attributeName(keyword)} is not a valid UID (PS3.5 9.1: at most 64 characters, numbers without leading zeros separated by dots)`,
      attributeName(keyword),
    );
  }
  return value;
}

function requiredUint16(ds: dicomParser.DataSet, keyword: keyof typeof TAG, allowed?: number[]): number {
  const element = ds.elements[TAG[keyword]];
  const value = element && element.length >= 2 ? ds.uint16(TAG[keyword]) : undefined;
  if (value === undefined) {
    throw new DicomRejected(
      'NO_PIXEL_DATA',
      `${attributeName(keyword)} is missing: the image pixel module is incomplete`,
      attributeName(keyword),
    );
  }
  if (allowed && !allowed.includes(value)) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      `${attributeName(keyword)} ${value} is not supported (expected ${allowed.join(' or ')})`,
      attributeName(keyword),
    );
  }
  return value;
}

/** A decimal string (DS, PS3.5 6.2): what `parseFloat` would also read out of `1abc` or `0x10`. */
const DECIMAL_STRING = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * A DS attribute's first value; undefined when absent or empty. A value that is no decimal string is refused naming
 * it: read with parseFloat, `abc` was NaN and then no value (a RescaleSlope of 1), and `2abc` was 2, so the image
 * was analysed through a modality LUT the file does not state.
 */
function optionalNumber(ds: dicomParser.DataSet, keyword: keyof typeof TAG): number | undefined {
  const text = ds.elements[TAG[keyword]] ? ds.string(TAG[keyword], 0)?.trim() : undefined;
  if (text === undefined || text === '') return undefined;
  const value = DECIMAL_STRING.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value)) {
    throw new DicomRejected(
      'MALFORMED',
      `${keyword} '${text.slice(0, 16)}' is not a decimal string (DS)`,
      attributeName(keyword),
    );
  }
  return value;
}

function numberList(ds: dicomParser.DataSet, keyword: keyof typeof TAG): number[] | undefined {
  const raw = ds.elements[TAG[keyword]] ? ds.string(TAG[keyword]) : undefined;
  if (!raw) return undefined;
  const values = raw.split('\\').map(Number);
  return values.every((v) => Number.isFinite(v) && v > 0) ? values : undefined;
}

function ultrasoundRegions(ds: dicomParser.DataSet): UltrasoundRegion[] {
  const items = ds.elements[TAG.SequenceOfUltrasoundRegions]?.items ?? [];
  const regions: UltrasoundRegion[] = [];
  for (const item of items) {
    const r = item.dataSet;
    if (!r) continue;
    const u16 = (tag: string): number | undefined => (r.elements[tag]?.length === 2 ? r.uint16(tag) : undefined);
    const u32 = (tag: string): number | undefined => (r.elements[tag]?.length === 4 ? r.uint32(tag) : undefined);
    const f64 = (tag: string): number | undefined => (r.elements[tag]?.length === 8 ? r.double(tag) : undefined);
    regions.push({
      regionSpatialFormat: u16(TAG.RegionSpatialFormat),
      physicalUnitsX: u16(TAG.PhysicalUnitsXDirection),
      physicalUnitsY: u16(TAG.PhysicalUnitsYDirection),
      physicalDeltaX: f64(TAG.PhysicalDeltaX),
      physicalDeltaY: f64(TAG.PhysicalDeltaY),
      minX0: u32(TAG.RegionLocationMinX0),
      minY0: u32(TAG.RegionLocationMinY0),
      maxX1: u32(TAG.RegionLocationMaxX1),
      maxY1: u32(TAG.RegionLocationMaxY1),
    });
  }
  return regions;
}

/**
 * Parses one DICOM Part 10 instance and checks that it is an image the gateway can read: supported
 * transfer syntax, an image storage SOP class, a complete image pixel module and pixel data whose size
 * fits its attributes. Throws DicomRejected with the precise reason; never anything else.
 */
export function parseDicomImage(body: Uint8Array, limits: ParseLimits): DicomImage {
  const bytes = asBytes(body);
  const { transferSyntaxUID, meta } = readFileMeta(bytes);
  const [metaClassUID, metaInstanceUID] = metaSop(meta);
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(bytes, {
      inflater: (array: Uint8Array, position: number) => {
        const limit = inflatedLimit(array, position, limits);
        let full: Buffer;
        try {
          const deflated = array.subarray(position);
          // `info` gives the engine too, whose bytesWritten is the input the stream took: zlib ignores what follows.
          const { buffer: inflated, engine } = inflateRawSync(deflated, {
            maxOutputLength: limit.bytes,
            info: true,
          }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
          const trailing = bytesAfterDeflateStream(deflated, engine.bytesWritten, position);
          if (trailing) throw trailing;
          full = Buffer.allocUnsafe(position + inflated.length);
          full.set(inflated, position);
        } catch (error) {
          if (error instanceof DicomRejected) throw error;
          // zlib's "unexpected end of file": the stream was cut before its last block, as a truncated file is.
          if ((error as { code?: unknown }).code === 'Z_BUF_ERROR') {
            throw new DicomRejected(
              'MALFORMED',
              `the file is truncated: its deflated data set (transfer syntax ${TS.Deflated}) ends before the deflate stream does`,
            );
          }
          // zlib's "invalid stored block lengths" and the like: bytes that are no deflate stream, as an explicit VR
          // data set under a file meta naming the deflated syntax is; zlib's words alone named neither.
          if ((error as { code?: unknown }).code === 'Z_DATA_ERROR') {
            throw new DicomRejected(
              'MALFORMED',
              `the data set is not a deflate stream (zlib: ${(error as Error).message}), but the file meta information gives transfer syntax ${TS.Deflated} (${transferSyntaxName(TS.Deflated)}): either the transfer syntax is wrong or the deflated data set is damaged`,
              attributeName('TransferSyntaxUID'),
            );
          }
          // Past the limit, or more than this process can hold: Node's own words name neither the file nor the limit.
          if (!(error instanceof RangeError)) throw error;
          throw new DicomRejected('MALFORMED', tooLargeToInflate(limit, error));
        }
        full.set(array.subarray(0, position), 0);
        return full;
      },
      // Implicit VR reads every length right; explicit VR stops there, to read the rest past dicom-parser's misreading.
      untilTag: transferSyntaxUID === TS.ImplicitLittle ? undefined : TAG.ExtendedOffsetTable,
    });
    const undefinedLength = ds.elements[TAG.PixelData]?.hadUndefinedLength
      ? nativeUndefinedLength(transferSyntaxUID)
      : undefined;
    if (undefinedLength) throw undefinedLength;
    const definedLength = encapsulatedDefinedLength(ds, transferSyntaxUID);
    if (definedLength) throw definedLength;
    throwOnOverrun(ds, transferSyntaxUID);
    readPastExtendedOffsetTable(ds, transferSyntaxUID);
    const outOfStep = readOutOfStepRejection(ds, transferSyntaxUID);
    if (outOfStep) throw outOfStep;
    const itemsPast = itemsPastSequenceRejection(ds, transferSyntaxUID !== TS.ImplicitLittle);
    if (itemsPast) throw itemsPast;
  } catch (error) {
    // dicom-parser reads an explicit VR PixelData of undefined length as encapsulated, and stops at its first bytes.
    const undefinedLength = /basic offset table not found/.test(parseErrorText(error))
      ? nativeUndefinedLength(transferSyntaxUID)
      : undefined;
    // Named by the file meta's UIDs: the data set that would name the instance is what failed.
    const partial = (error as { dataSet?: dicomParser.DataSet } | null)?.dataSet;
    const stoppedAt = partial && whereParseStopped(partial, meta);
    const rejection =
      undefinedLength ??
      (partial &&
        (encapsulatedDefinedLength(partial, transferSyntaxUID) ??
          trailingBytesRejection(partial, transferSyntaxUID) ??
          impossibleLengthRejection(partial, transferSyntaxUID) ??
          sequenceRejection(partial, stoppedAt!, transferSyntaxUID !== TS.ImplicitLittle) ??
          encapsulatedStartRejection(partial, stoppedAt!, transferSyntaxUID !== TS.ImplicitLittle) ??
          readOutOfStepRejection(partial, transferSyntaxUID) ??
          overrunRejection(partial, transferSyntaxUID) ??
          cutInHeader(partial, stoppedAt!, transferSyntaxUID !== TS.ImplicitLittle) ??
          firstElementRejection(partial, meta, transferSyntaxUID))) ??
      dataSetRejection(error, stoppedAt);
    throw rejection.withSop(metaClassUID, metaInstanceUID);
  }
  try {
    return validateImage(ds, transferSyntaxUID, limits);
  } catch (error) {
    // dicom-parser reads values lazily: an element whose bounds a damaged file got wrong throws here.
    const rejection =
      error instanceof DicomRejected
        ? error
        : new DicomRejected('MALFORMED', `an attribute cannot be read (${parseErrorText(error)})`);
    // The data set's own UIDs, else the file meta's: a failure names its instance wherever it can be read.
    throw rejection.withSop(
      safeString(ds, TAG.SOPClassUID) ?? metaClassUID,
      safeString(ds, TAG.SOPInstanceUID) ?? metaInstanceUID,
    );
  }
}

/**
 * Refuses pixel data of undefined length (FFFFFFFFH) in a native transfer syntax: only encapsulated pixel data may
 * have one (PS3.5 A.4), native pixel data is a value of the length it states (PS3.5 7.1.1). dicom-parser read it as
 * encapsulated and the refusal was its own words ("basic offset table not found"); in implicit VR it took the rest of
 * the file as the pixels.
 */
function nativeUndefinedLength(transferSyntaxUID: string): DicomRejected | undefined {
  if (SUPPORTED_TRANSFER_SYNTAXES.get(transferSyntaxUID)?.codec !== 'native') return undefined;
  return new DicomRejected(
    'MALFORMED',
    `${attributeName('PixelData')} has an undefined length (FFFFFFFFH), but transfer syntax ${transferSyntaxUID} (${transferSyntaxName(transferSyntaxUID)}) is native (uncompressed): native pixel data cannot have an undefined length, only encapsulated pixel data may (PS3.5 A.4)`,
    attributeName('PixelData'),
  );
}

/**
 * Refuses pixel data of a defined length in a compressed transfer syntax: its pixel data is encapsulated, and PS3.5
 * A.4 gives encapsulated pixel data an undefined length (FFFFFFFFH), its fragments items up to a Sequence
 * Delimitation Item. dicom-parser read a defined length as native bytes: the refusal said "the file is truncated"
 * where the length ran past the data, else that the bytes were too few for the frames, neither of which is the fault.
 * An empty PixelData is left to the refusal of no pixel data.
 */
function encapsulatedDefinedLength(ds: dicomParser.DataSet, transferSyntaxUID: string): DicomRejected | undefined {
  const pixelData = ds.elements[TAG.PixelData];
  const codec = SUPPORTED_TRANSFER_SYNTAXES.get(transferSyntaxUID)?.codec;
  if (!pixelData || pixelData.hadUndefinedLength || pixelData.length === 0 || !codec || codec === 'native') {
    return undefined;
  }
  return new DicomRejected(
    'MALFORMED',
    `${attributeName('PixelData')} has a defined length (${pixelData.length}), but transfer syntax ${transferSyntaxUID} (${transferSyntaxName(transferSyntaxUID)}) is compressed: its pixel data is encapsulated, which must have an undefined length (FFFFFFFFH), its fragments in items ended by a Sequence Delimitation Item (PS3.5 A.4)`,
    attributeName('PixelData'),
  );
}

// The VRs that dicom-parser 1.8 reads with a 4-byte length in explicit VR; OV, SV and UV (2019) have one too, but it
// reads them with a 2-byte one and derails (cornerstonejs/dicomParser#284).
const PARSER_LONG_VRS = new Set(['OB', 'OD', 'OL', 'OW', 'SQ', 'OF', 'UC', 'UR', 'UT', 'UN']);
const LONG_VRS_PARSER_MISSES = new Set(['OV', 'SV', 'UV']);

/**
 * Reads the rest of an explicit VR data set that dicom-parser stopped at its Extended Offset Table (7FE0,0001),
 * OV, and the lengths (7FE0,0002), UV, that follow it (PS3.5 A.4): each of these is read with its 4-byte length,
 * the others by dicom-parser. Its misreading made a valid file with the table "truncated" (400). The table itself
 * is not used: it comes with an empty Basic Offset Table, and frames are found as without one.
 */
function readPastExtendedOffsetTable(ds: dicomParser.DataSet, transferSyntaxUID: string): void {
  const table = ds.elements[TAG.ExtendedOffsetTable];
  if (!table || transferSyntaxUID === TS.ImplicitLittle) return;
  delete ds.elements[TAG.ExtendedOffsetTable]; // read again below, with its true length
  const bytes = ds.byteArray;
  const stream = new dicomParser.ByteStream(
    ds.byteArrayParser,
    bytes,
    table.dataOffset - (PARSER_LONG_VRS.has(table.vr ?? '') ? 12 : 8),
  );
  while (stream.position < bytes.length) {
    const vr =
      stream.position + 6 <= bytes.length
        ? Buffer.from(bytes.subarray(stream.position + 4, stream.position + 6)).toString('latin1')
        : '';
    let element: dicomParser.Element;
    if (LONG_VRS_PARSER_MISSES.has(vr)) {
      const tag = dicomParser.readTag(stream);
      stream.seek(4); // VR and reserved bytes
      const length = stream.readUint32();
      element = { tag, vr, length, dataOffset: stream.position };
      if (length === 0xffffffff) {
        throw new DicomRejected(
          'MALFORMED',
          `the ${vr} element (${tag.slice(1, 5).toUpperCase()},${tag.slice(5).toUpperCase()}) has an undefined length, which its VR does not allow`,
        );
      }
      stream.seek(length);
    } else {
      element = dicomParser.readDicomElementExplicit(stream, ds.warnings);
    }
    ds.elements[element.tag] = element;
  }
  if (stream.position > bytes.length) {
    throw new DicomRejected('MALFORMED', 'the file is truncated: an element runs past the end of the data');
  }
}

/**
 * Throws, as dicom-parser does for explicit VR, where an element runs past the end of the data: its implicit VR
 * reader records the length an element claims and goes on, so a truncated implicit VR file was accepted, and
 * failed only at decoding ("Offset is outside the bounds of the DataView"), and appended junk was read as an element.
 */
function throwOnOverrun(ds: dicomParser.DataSet, transferSyntaxUID: string): void {
  const size = ds.byteArray.length;
  const overrun = Object.values(ds.elements).find((element) => element.dataOffset + element.length > size);
  if (!overrun) return;
  throw (
    trailingBytesRejection(ds, transferSyntaxUID) ??
    impossibleLengthRejection(ds, transferSyntaxUID) ??
    overrunRejection(ds, transferSyntaxUID) ??
    new DicomRejected(
      'MALFORMED',
      `the file is truncated: the element ${tagName(overrun.tag)} runs past the end of the data (${overrun.length} bytes from byte ${overrun.dataOffset}, ${size} bytes in all)`,
    )
  );
}

/** The value representations of PS3.5 6.2: an explicit VR element header names one of them. */
const VALUE_REPRESENTATIONS = new Set(
  'AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' '),
);

/**
 * The refusal of a data set read whole up to its PixelData and beyond, then followed by bytes that are no data
 * element: too few for an element's header, a tag not after the last one's (PS3.5 7.1 orders them), or, in explicit
 * VR, no value representation. DCMTK and dcm4che refuse such a file too, and PS3.10 7.2 pads a file with Data Set
 * Trailing Padding (FFFC,FFFC), an element, so they are not read past: they may be a multipart part's next instance
 * behind a boundary missed, which would go unanalysed, never said. It was refused as "truncated", which it is not.
 * Undefined where the bytes could begin an element cut short: a truncated file, refused as such.
 */
function trailingBytesRejection(ds: dicomParser.DataSet, transferSyntaxUID: string): DicomRejected | undefined {
  const size = ds.byteArray.length;
  const explicit = transferSyntaxUID !== TS.ImplicitLittle;
  const { last } = readInStep(ds, explicit);
  if (!last || last.tag < TAG.PixelData || !ds.elements[TAG.PixelData]) return undefined;
  const end = last.dataOffset + last.length;
  const why = notAnElement(ds, end, last.tag, explicit);
  if (!why) return undefined;
  // An odd length (PS3.5 7.1.1 makes every value's even) puts the next element out of step: say so first.
  const odd = last.length % 2 === 1 ? ` (its length, ${last.length}, is odd: PS3.5 7.1.1 makes it even)` : '';
  return new DicomRejected(
    'MALFORMED',
    `the data set is whole up to its last element ${tagName(last.tag)}${odd}, which ends at byte ${end}, but ${size - end} more byte(s) follow that are no data element (${why}): a data set ends with its last element (PS3.5 7.1), and a file is padded with Data Set Trailing Padding (FFFC,FFFC) (PS3.10 7.2); bytes appended to an instance, or the rest of a multipart body behind a boundary missed, are not read past`,
  );
}

/**
 * The last element of a data set read in step, and the first after it that is not: one whose value runs past the
 * end of the data, whose tag does not follow the last one's (PS3.5 7.1 orders them), whose group no data element
 * has, or, in explicit VR, that names no value representation (dicom-parser takes any two bytes for a VR).
 */
function readInStep(
  ds: dicomParser.DataSet,
  explicit: boolean,
): { last?: dicomParser.Element; next?: dicomParser.Element } {
  const size = ds.byteArray.length;
  const elements = Object.values(ds.elements).sort((a, b) => a.dataOffset - b.dataOffset);
  let last: dicomParser.Element | undefined;
  for (const element of elements) {
    const outOfStep =
      element.dataOffset + element.length > size ||
      (last && element.tag <= last.tag) ||
      notADataElement(element, explicit) !== undefined;
    if (outOfStep) return { last, next: element };
    last = element;
  }
  return { last };
}

/**
 * Groups no element of a data set has: 0001, 0003, 0005, 0007 and FFFF shall not be used (PS3.5 7.1), 0000 is a
 * command's (PS3.7) and FFFE an item's or a delimiter's, never a data element's. A tag read out of step has them.
 */
const GROUPS_OF_NO_ELEMENT = new Set(['0000', '0001', '0003', '0005', '0007', 'fffe', 'ffff']);

/** Why an element read at the top level cannot be a data element, or undefined where it can. */
function notADataElement(element: dicomParser.Element, explicit: boolean): string | undefined {
  if (GROUPS_OF_NO_ELEMENT.has(element.tag.slice(1, 5))) return 'its group is one no data element has (PS3.5 7.1)';
  if (explicit && !VALUE_REPRESENTATIONS.has(element.vr ?? '')) return 'it names no value representation';
  return undefined;
}

/** Bytes in one value of the VRs whose values have a fixed size (PS3.5 6.2). */
const VALUE_BYTES: Record<string, number> = {
  AT: 4,
  FD: 8,
  FL: 4,
  OD: 8,
  OF: 4,
  OL: 4,
  OV: 8,
  OW: 2,
  SL: 4,
  SS: 2,
  SV: 8,
  UL: 4,
  US: 2,
  UV: 8,
};

/** The image attributes of one US value (PS3.3 C.7.6.3): a length other than 2 is none, in either VR. */
const ONE_US_VALUE = new Set<string>(
  (
    [
      'Rows',
      'Columns',
      'SamplesPerPixel',
      'BitsAllocated',
      'BitsStored',
      'HighBit',
      'PixelRepresentation',
      'PlanarConfiguration',
    ] as const
  ).map((keyword) => TAG[keyword]),
);

/**
 * The refusal of a data set that stops being readable after an element whose own length cannot be: one the image
 * attributes give one US value of 2 bytes, a value not a whole number of its VR's values, an odd length (PS3.5
 * 7.1.1), or a native PixelData that claims more bytes than the data holds when the bytes after its header are all
 * that its image attributes need. The elements after such a length are read out of step, and one of them ran past
 * the end of the data: the refusal said "the file is truncated", which it is not. Undefined where no length is at
 * fault: a truncated file, refused as such.
 */
function impossibleLengthRejection(ds: dicomParser.DataSet, transferSyntaxUID: string): DicomRejected | undefined {
  const explicit = transferSyntaxUID !== TS.ImplicitLittle;
  const { last, next } = readInStep(ds, explicit);
  if (!next) return undefined;
  const wrong = firstWrongLength(ds, next, explicit) ?? (last && lengthCannotBe(last) ? last : undefined);
  if (wrong) return wrongLengthRejection(wrong);
  return pixelDataLengthRejection(ds, next, transferSyntaxUID);
}

function wrongLengthRejection(wrong: dicomParser.Element): DicomRejected {
  return new DicomRejected(
    'MALFORMED',
    `the element ${tagName(wrong.tag)} has a value length of ${wrong.length}, which cannot be: ${lengthCannotBe(wrong)}; the elements after it are read out of step, so the data set cannot be read (the file is not truncated, this length is wrong)`,
    tagName(wrong.tag),
  );
}

/**
 * The refusal of a data set that dicom-parser read to its very end out of step. A length one byte short or long
 * put the elements after it out of step, and the garbage they became can happen to end where the data does (a
 * value length that lands on a true element, or on the end): the parse succeeded, the elements skipped were missing,
 * and the refusal named one of them ("(0028,0010) Rows is missing", "SOPClassUID is missing or empty"), or the file
 * was analysed without them. Blamed as where the parse failed: the first element of an impossible length at whose
 * possible length the rest reads whole; else, where the element out of step is no data element at all, the last
 * element in step. Read as they are, as DCMTK and pydicom read them: elements merely out of order, each one a data
 * element, and one VR damaged in place with the elements after it in step. One pass over the elements for a valid
 * file.
 */
function readOutOfStepRejection(ds: dicomParser.DataSet, transferSyntaxUID: string): DicomRejected | undefined {
  const explicit = transferSyntaxUID !== TS.ImplicitLittle;
  const { last, next } = readInStep(ds, explicit);
  if (!next) return undefined;
  // Zero bytes after the last element, read as elements (0000,0000) of no value as DCMTK reads them: padding.
  if (last && ds.byteArray.subarray(last.dataOffset + last.length).every((byte) => byte === 0)) return undefined;
  const wrong = firstWrongLength(ds, next, explicit);
  if (wrong) return wrongLengthRejection(wrong);
  const why = notADataElement(next, explicit);
  if (!last || !why) return undefined;
  // One VR damaged in place, the elements after it in step: read as dicom-parser reads it, as DCMTK does.
  const inPlace = next.tag > last.tag && !GROUPS_OF_NO_ELEMENT.has(next.tag.slice(1, 5));
  if (inPlace && readsWholeFrom(ds, next.dataOffset + next.length, next.tag, explicit)) return undefined;
  return new DicomRejected(
    'MALFORMED',
    `the data set cannot be read past its element ${tagName(last.tag)} (VR ${last.vr ?? 'unknown'}, value length ${last.length}), which ends at byte ${last.dataOffset + last.length}: the bytes after it read as the element ${tagName(next.tag)}, which is no data element (${why}), so that element's length or the header after it is damaged and the elements after it are read out of step (the file is not truncated)`,
    tagName(last.tag),
  );
}

/** Positions tried by overrunRejection for where the elements after a length read whole: each costs such a reading. */
const MAX_RESUME_CANDIDATES = 16;
/** How far into an element's claimed value overrunRejection looks for the element after it. */
const MAX_RESUME_SEARCH_BYTES = 64 * 1024;

/**
 * The refusal of a data set read in step up to an element, a data element, whose value runs past the end of the
 * data: dicom-parser's "buffer overrun" was the reason ("the file is truncated: an element runs past the end of the
 * data (dicomParser:parseDicomDataSetExplicit: buffer overrun)"), naming neither the element nor where. Where the
 * elements read whole to the end from a position inside the value it claims, its length is wrong and the file is not
 * truncated: a UI of 13,376 bytes whose 64 bytes are followed by the rest of the data set. Else the file is
 * truncated inside it. Undefined where no element read in step runs past the end.
 */
function overrunRejection(ds: dicomParser.DataSet, transferSyntaxUID: string): DicomRejected | undefined {
  const explicit = transferSyntaxUID !== TS.ImplicitLittle;
  const size = ds.byteArray.length;
  const { last, next } = readInStep(ds, explicit);
  if (!next || notADataElement(next, explicit)) return undefined;
  if (last && next.tag <= last.tag) return outOfOrderOverrun(ds, last, next);
  if (next.dataOffset + next.length <= size) return undefined;
  const where = `${tagName(next.tag)}${next.vr ? ` (VR ${next.vr})` : ''}`;
  if (next.tag === TAG.PixelData && next.hadUndefinedLength) {
    return new DicomRejected(
      'MALFORMED',
      `the file is truncated: the encapsulated ${where} from byte ${next.dataOffset} runs past the end of the data (${size} bytes in all): a fragment's length runs past it, or its Sequence Delimitation Item (FFFE,E0DD) is missing`,
      tagName(next.tag),
    );
  }
  const resumes = resumePosition(ds, next, explicit);
  if (resumes !== undefined) {
    return new DicomRejected(
      'MALFORMED',
      `the element ${where} at byte ${next.dataOffset} has a value length of ${next.length}, which runs past the end of the data (${size} bytes in all), but the elements from byte ${resumes} on, ${resumes - next.dataOffset} bytes into that value, read whole to the end: this length is wrong (the file is not truncated)`,
      tagName(next.tag),
    );
  }
  return new DicomRejected(
    'MALFORMED',
    `the file is truncated: the element ${where} runs past the end of the data (${next.length} bytes from byte ${next.dataOffset}, ${size} bytes in all)`,
    tagName(next.tag),
  );
}

/**
 * The refusal of a data set whose elements stop following in tag order before one runs past the end of the data: a
 * chunk repeated, or a length that put them out of step onto elements of another tag. Undefined where none runs past.
 */
function outOfOrderOverrun(
  ds: dicomParser.DataSet,
  last: dicomParser.Element,
  next: dicomParser.Element,
): DicomRejected | undefined {
  const size = ds.byteArray.length;
  const overrun = Object.values(ds.elements).find((element) => element.dataOffset + element.length > size);
  if (!overrun) return undefined;
  return new DicomRejected(
    'MALFORMED',
    `the data set cannot be read past its element ${tagName(last.tag)} (VR ${last.vr ?? 'unknown'}, value length ${last.length}), which ends at byte ${last.dataOffset + last.length}: the element after it, ${tagName(next.tag)} at byte ${next.dataOffset}, does not follow it in tag order (PS3.5 7.1), and the element ${tagName(overrun.tag)} read at byte ${overrun.dataOffset} runs past the end of the data (${size} bytes in all): bytes are repeated there, or a length before them is wrong and the elements after it are read out of step`,
    tagName(last.tag),
  );
}

/** The first position inside an element's claimed value from which the elements after it read whole to the end. */
function resumePosition(ds: dicomParser.DataSet, element: dicomParser.Element, explicit: boolean): number | undefined {
  const size = ds.byteArray.length;
  const end = Math.min(size - 8, element.dataOffset + MAX_RESUME_SEARCH_BYTES);
  let tries = 0;
  for (let at = element.dataOffset; at <= end && tries < MAX_RESUME_CANDIDATES; at++) {
    // Only where an element after this one can begin: its tag after this one's, its VR one (explicit VR).
    const tag = tagAt(ds, at);
    if (tag <= element.tag || GROUPS_OF_NO_ELEMENT.has(tag.slice(1, 5))) continue;
    if (explicit && !VALUE_REPRESENTATIONS.has(vrAt(ds, at))) continue;
    // Implicit VR names no VR: a length that fits the data is what a text value's bytes seldom make.
    if (!explicit && at + 8 + ds.byteArrayParser.readUint32(ds.byteArray, at + 4) > size) continue;
    tries++;
    if (readsWholeFrom(ds, at, element.tag, explicit)) return at;
  }
  return undefined;
}

/** Elements of an impossible length tried by firstWrongLength: each costs a reading of the rest of the data set. */
const MAX_WRONG_LENGTH_CANDIDATES = 8;

/**
 * The first element before `next` whose length cannot be and at a length it can have lets the rest of the data set
 * be read whole. In implicit VR, whose elements name no VR, the elements read out of step after a Rows of length 1
 * looked in step (their tags rose) until one ran past the data: that one, or the one before it, was all there was to
 * blame, and the file was called truncated. Reading the rest again is what tells a wrong length from a sloppy one
 * (an odd length some writers leave) in a file that is truly cut short.
 */
function firstWrongLength(
  ds: dicomParser.DataSet,
  next: dicomParser.Element,
  explicit: boolean,
): dicomParser.Element | undefined {
  const candidates = Object.values(ds.elements)
    .filter((element) => element.dataOffset < next.dataOffset && lengthCannotBe(element))
    .sort((a, b) => a.dataOffset - b.dataOffset)
    .slice(0, MAX_WRONG_LENGTH_CANDIDATES);
  return candidates.find((element) =>
    lengthsItCanHave(element).some((length) => readsWholeFrom(ds, element.dataOffset + length, element.tag, explicit)),
  );
}

/** The lengths nearest an impossible one that an element can have: 2 for one US value, else whole values around it. */
function lengthsItCanHave(element: dicomParser.Element): number[] {
  if (ONE_US_VALUE.has(element.tag)) return [2];
  const bytes = VALUE_BYTES[element.vr ?? ''] ?? 2;
  const below = element.length - (element.length % bytes);
  return [below, below + bytes];
}

/** Whether the data from `position` on is elements in step, their tags after `previousTag`, up to its very end. */
function readsWholeFrom(ds: dicomParser.DataSet, position: number, previousTag: string, explicit: boolean): boolean {
  const size = ds.byteArray.length;
  if (position >= size) return position === size; // dicom-parser's ByteStream throws a string from there on
  const stream = new dicomParser.ByteStream(ds.byteArrayParser, ds.byteArray, position);
  let previous = previousTag;
  try {
    while (stream.position < size) {
      const element = explicit
        ? dicomParser.readDicomElementExplicit(stream, [])
        : dicomParser.readDicomElementImplicit(stream);
      if (element.tag <= previous || notADataElement(element, explicit)) return false;
      // dicom-parser misreads the OV and UV after it (readPastExtendedOffsetTable): in step so far is enough.
      if (element.tag === TAG.ExtendedOffsetTable) return true;
      previous = element.tag;
    }
  } catch {
    return false; // an item or a sequence read out of step
  }
  return stream.position === size;
}

/** Why an element's length cannot be its value's, or undefined where it can. */
function lengthCannotBe(element: dicomParser.Element): string | undefined {
  if (ONE_US_VALUE.has(element.tag) && element.length !== 2) {
    return 'the attribute holds one US value, of 2 bytes (PS3.3 C.7.6.3)';
  }
  const bytes = VALUE_BYTES[element.vr ?? ''];
  if (bytes && element.length % bytes !== 0) {
    return `it is not a whole number of ${element.vr} values of ${bytes} bytes (PS3.5 6.2)`;
  }
  if (element.length % 2 === 1) return 'it is odd, and PS3.5 7.1.1 makes every value length even';
  return undefined;
}

/**
 * The refusal of a native PixelData whose length runs past the end of the data though the bytes after its header
 * are all its image attributes need (a length of FFFFFFF0H in a whole file); undefined where they are fewer, as in
 * a truncated file.
 */
function pixelDataLengthRejection(
  ds: dicomParser.DataSet,
  element: dicomParser.Element,
  transferSyntaxUID: string,
): DicomRejected | undefined {
  const size = ds.byteArray.length;
  if (element.tag !== TAG.PixelData || element.dataOffset + element.length <= size) return undefined;
  if (SUPPORTED_TRANSFER_SYNTAXES.get(transferSyntaxUID)?.codec !== 'native') return undefined;
  const needed = nativePixelBytes(ds);
  const held = size - element.dataOffset;
  if (needed === undefined || held < needed) return undefined;
  return new DicomRejected(
    'MALFORMED',
    `${attributeName('PixelData')} has a value length of ${element.length}, which cannot be: it runs past the end of the data (from byte ${element.dataOffset}, ${size} bytes in all), but the ${held} bytes after its header hold the ${needed} its image attributes need; the file is not truncated, this length is wrong`,
    attributeName('PixelData'),
  );
}

/** The bytes of native pixel data that a (partly read) data set's image attributes give, or undefined without them. */
function nativePixelBytes(ds: dicomParser.DataSet): number | undefined {
  const read = (keyword: keyof typeof TAG): number | undefined =>
    ds.elements[TAG[keyword]]?.length === 2 ? ds.uint16(TAG[keyword]) : undefined;
  const rows = read('Rows');
  const columns = read('Columns');
  const bitsAllocated = read('BitsAllocated');
  if (!rows || !columns || !bitsAllocated) return undefined;
  const photometric = safeString(ds, TAG.PhotometricInterpretation)?.toUpperCase() ?? '';
  const framesText = safeString(ds, TAG.NumberOfFrames);
  const frames = framesText && /^\d{1,9}$/.test(framesText) ? Math.max(1, Number(framesText)) : 1;
  const samplesPerPixel = read('SamplesPerPixel') ?? 1;
  return (nativeSamplesPerFrame({ rows, columns, samplesPerPixel, photometric }) * bitsAllocated * frames) / 8;
}

/** Why the bytes from `at` on cannot begin the element after `lastTag`; undefined where they can. */
function notAnElement(ds: dicomParser.DataSet, at: number, lastTag: string, explicit: boolean): string | undefined {
  if (ds.byteArray.length - at < 8) return 'too few for an element header';
  if (tagAt(ds, at) <= lastTag) return "their tag does not follow the last element's";
  if (explicit && !VALUE_REPRESENTATIONS.has(vrAt(ds, at))) return 'they name no value representation';
  return undefined;
}

/**
 * The refusal of a data set whose very first element is no data element, where dicom-parser read on into an element
 * past the end of the data: the data set begins where the file meta's elements end, so a damaged length of the last
 * of them, or a damaged first header, misplaces it. readOutOfStepRejection needs an element read in step to name.
 */
function firstElementRejection(
  ds: dicomParser.DataSet,
  meta: dicomParser.DataSet,
  transferSyntaxUID: string,
): DicomRejected | undefined {
  const explicit = transferSyntaxUID !== TS.ImplicitLittle;
  const { last, next } = readInStep(ds, explicit);
  const why = next && notADataElement(next, explicit);
  if (last || !next || !why) return undefined;
  const start = Math.max(...Object.values(meta.elements).map((element) => element.dataOffset + element.length));
  const metaLast = Object.values(meta.elements).find((element) => element.dataOffset + element.length === start)!;
  const groupLength = meta.elements['x00020000'];
  const end = groupLength?.length === 4 ? groupLength.dataOffset + 4 + meta.uint32('x00020000')! : undefined;
  const gives =
    end !== undefined && end !== start ? `; its group length (0002,0000) gives the file meta's end at byte ${end}` : '';
  return new DicomRejected(
    'MALFORMED',
    `the data set cannot be read from its start at byte ${start}, where the file meta information's last element ${tagName(metaLast.tag)} (VR ${metaLast.vr ?? 'unknown'}, value length ${metaLast.length}) ends${gives}: the bytes there read as the element ${tagName(next.tag)}, which is no data element (${why}), so that file meta element's length or the data set's first header is wrong`,
    tagName(metaLast.tag),
  );
}

/**
 * Where dicom-parser stopped reading a data set it failed on: after the last top-level element it gave back, or at
 * the data set's start. The element it was reading there is not among them (it records one once read whole).
 */
function whereParseStopped(partial: dicomParser.DataSet, meta: dicomParser.DataSet): number {
  // dicom-parser gives an element read to its delimiter the length before that 8-byte delimiter.
  const ends = [...Object.values(meta.elements), ...Object.values(partial.elements)].map(
    (element) => element.dataOffset + element.length + (element.hadUndefinedLength ? 8 : 0),
  );
  return Math.max(...ends);
}

/** Why dicom-parser could not read the data set, as a refusal. */
function dataSetRejection(error: unknown, stoppedAt?: number): DicomRejected {
  // The inflater's own refusals, thrown as they are or wrapped by dicom-parser.
  const inner = (error as { exception?: unknown } | null)?.exception ?? error;
  if (inner instanceof DicomRejected) return inner;
  const text = parseErrorText(error);
  if (/Maximum call stack size exceeded/.test(text)) {
    // dicom-parser reads nested sequences by recursion: a file nesting thousands of them.
    return new DicomRejected('MALFORMED', 'the data set nests sequences too deeply to be read');
  }
  if (/maxP ?osition/.test(text)) {
    // dicom-parser's words for an item whose length runs past the sequence, or the data, that holds it.
    return new DicomRejected(
      'MALFORMED',
      `a sequence item's length runs past the end of the sequence or of the data that holds it (${text})`,
    );
  }
  if (inner instanceof Error) {
    // A JavaScript error of dicom-parser's own (a TypeError), where sequenceRejection found no fault to name: its
    // text is the engine's, not the file's.
    const where = stoppedAt === undefined ? '' : ` from byte ${stoppedAt}, the element there or one inside it`;
    return new DicomRejected('MALFORMED', `the data set cannot be parsed${where}: its structure is damaged`);
  }
  const truncated = /overrun|past end|beyond|end of buffer/i.test(text);
  return new DicomRejected(
    'MALFORMED',
    truncated
      ? `the file is truncated: an element runs past the end of the data (${text})`
      : `the data set cannot be parsed (${text})`,
  );
}

function safeString(ds: dicomParser.DataSet, tag: string): string | undefined {
  try {
    return ds.string(tag)?.trim() || undefined;
  } catch {
    return undefined;
  }
}

function validateImage(ds: dicomParser.DataSet, transferSyntaxUID: string, limits: ParseLimits): DicomImage {
  const sopClassUID = requiredString(ds, 'SOPClassUID');
  if (!IMAGE_STORAGE_SOP_CLASSES.has(sopClassUID)) {
    throw new DicomRejected(
      'NOT_AN_IMAGE',
      `SOP class ${sopClassUID} is ${nonImageKind(sopClassUID)}, not an image the lesion detector can analyse`,
      attributeName('SOPClassUID'),
    );
  }
  if (ds.elements[TAG.FloatPixelData] || ds.elements[TAG.DoubleFloatPixelData]) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      'float pixel data is not supported',
      attributeName('FloatPixelData'),
    );
  }
  const pixelData = ds.elements[TAG.PixelData];
  if (!pixelData || (pixelData.length === 0 && !pixelData.encapsulatedPixelData)) {
    throw new DicomRejected('NO_PIXEL_DATA', 'the instance has no pixel data', attributeName('PixelData'));
  }
  const rows = requiredUint16(ds, 'Rows');
  const columns = requiredUint16(ds, 'Columns');
  if (rows < 1 || columns < 1 || rows > limits.maxRows || columns > limits.maxColumns) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      `image size ${columns}x${rows} is outside 1..${limits.maxColumns} x 1..${limits.maxRows}`,
      attributeName('Rows'),
    );
  }
  const samplesPerPixel = requiredUint16(ds, 'SamplesPerPixel', [1, 3]);
  const bitsAllocated = requiredUint16(ds, 'BitsAllocated', [8, 16, 32]);
  const bitsStored = requiredUint16(ds, 'BitsStored');
  if (bitsStored < 1 || bitsStored > bitsAllocated) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      `BitsStored ${bitsStored} does not fit BitsAllocated ${bitsAllocated}`,
      attributeName('BitsStored'),
    );
  }
  // PS3.3 C.7.6.3.1.1: a pixel cell holds its stored bits from bit 0, so HighBit is one less than BitsStored. Read
  // otherwise (HighBit 9 of BitsStored 8: the value in bits 2-9), the decoder would take other bits than the image's.
  const highBit = ds.elements[TAG.HighBit]?.length === 2 ? ds.uint16(TAG.HighBit) : undefined;
  if (highBit !== undefined && highBit !== bitsStored - 1) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      `HighBit ${highBit} is not one less than BitsStored ${bitsStored}: stored values not aligned to bit 0 are not read`,
      attributeName('HighBit'),
    );
  }
  const pixelRepresentation = requiredUint16(ds, 'PixelRepresentation', [0, 1]);
  const photometric = requiredString(ds, 'PhotometricInterpretation').toUpperCase();
  if (!PHOTOMETRICS.has(photometric) || (samplesPerPixel === 1) !== ONE_SAMPLE.has(photometric)) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      `photometric interpretation ${photometric} with ${samplesPerPixel} sample(s) per pixel is not supported (MONOCHROME1, MONOCHROME2, PALETTE COLOR, RGB and YBR are)`,
      attributeName('PhotometricInterpretation'),
    );
  }
  const palette = photometric === 'PALETTE COLOR' ? readPaletteLut(ds, pixelRepresentation === 1) : undefined;
  const framesText = ds.string(TAG.NumberOfFrames)?.trim();
  const numberOfFrames = framesText ? Number(framesText) : 1;
  if (!Number.isInteger(numberOfFrames) || numberOfFrames < 1) {
    throw new DicomRejected(
      'MALFORMED',
      `NumberOfFrames '${framesText}' is not a positive integer`,
      attributeName('NumberOfFrames'),
    );
  }
  checkPixelBudget(rows, columns, numberOfFrames, limits);
  const rescaleSlope = optionalNumber(ds, 'RescaleSlope');
  const rescaleIntercept = optionalNumber(ds, 'RescaleIntercept');
  // Colour samples take no modality LUT (the pipeline scales them by BitsStored alone).
  if (samplesPerPixel === 1) checkModalityLut(rescaleSlope, rescaleIntercept, bitsStored, pixelRepresentation === 1);
  const planarConfiguration =
    samplesPerPixel === 3 && ds.elements[TAG.PlanarConfiguration] ? (ds.uint16(TAG.PlanarConfiguration) ?? 0) : 0;
  if (planarConfiguration !== 0 && planarConfiguration !== 1) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      `${attributeName('PlanarConfiguration')} ${planarConfiguration} is not 0 (interleaved) or 1 (planar)`,
      attributeName('PlanarConfiguration'),
    );
  }
  if (!pixelData.encapsulatedPixelData) {
    // Native 4:2:2 is defined interleaved only (Y1 Y2 Cb Cr per pixel pair): a planar one has no layout to read.
    if (photometric === 'YBR_FULL_422' && planarConfiguration === 1) {
      throw new DicomRejected(
        'UNSUPPORTED_PIXEL_FORMAT',
        `${attributeName('PlanarConfiguration')} 1 (planar) is not allowed with PhotometricInterpretation YBR_FULL_422, whose samples are interleaved in pixel pairs (PS3.3 C.7.6.3.1: it shall be 0)`,
        attributeName('PlanarConfiguration'),
      );
    }
    const frameBytes = nativeSamplesPerFrame({ rows, columns, samplesPerPixel, photometric }) * (bitsAllocated / 8);
    const needed = frameBytes * numberOfFrames;
    if (pixelData.length < needed) {
      throw new DicomRejected(
        'MALFORMED',
        `PixelData holds ${pixelData.length} bytes but ${numberOfFrames} frame(s) of ${columns}x${rows}x${samplesPerPixel} at ${bitsAllocated} bits need ${needed}`,
        attributeName('PixelData'),
      );
    }
    // A byte of padding, or some trailing bytes, are read past; a whole frame more than NumberOfFrames gives (a
    // multi-frame instance without it) would go unanalysed, never said.
    const held = Math.floor(pixelData.length / frameBytes);
    if (held > numberOfFrames) {
      throw new DicomRejected(
        'MALFORMED',
        `PixelData holds ${held} frames of ${columns}x${rows}x${samplesPerPixel} at ${bitsAllocated} bits (${pixelData.length} bytes), (0028,0008) NumberOfFrames gives ${numberOfFrames}`,
        attributeName('NumberOfFrames'),
      );
    }
  } else if ((pixelData.fragments?.length ?? 0) === 0) {
    throw new DicomRejected(
      'NO_PIXEL_DATA',
      'the encapsulated pixel data has no fragments',
      attributeName('PixelData'),
    );
  } else {
    const encoded = (pixelData.fragments ?? []).reduce((sum, fragment) => sum + fragment.length, 0);
    const claimed = rows * columns * samplesPerPixel * (bitsAllocated / 8) * numberOfFrames;
    if (claimed > MIN_SUSPECT_BYTES && claimed > MAX_COMPRESSION_RATIO * encoded) {
      throw new DicomRejected(
        'UNSUPPORTED_PIXEL_FORMAT',
        `${numberOfFrames} frame(s) of ${columns}x${rows}x${samplesPerPixel} at ${bitsAllocated} bits would decode to ${claimed} bytes from ${encoded} encoded: more than ${MAX_COMPRESSION_RATIO}:1, which no real image reaches`,
        attributeName('Rows'),
      );
    }
  }
  const text = (keyword: keyof typeof TAG): string | undefined => ds.string(TAG[keyword])?.trim() || undefined;
  // Names and other patient or study text in the data set's own character set (dicom-parser reads latin1).
  const decodeText = textDecoderOf(ds);
  const patientText = (keyword: keyof typeof TAG): string | undefined => {
    const element = ds.elements[TAG[keyword]];
    if (!decodeText || !element || element.length === 0) return text(keyword);
    const bytes = ds.byteArray.subarray(element.dataOffset, element.dataOffset + element.length);
    return (
      decodeText(bytes, element.vr ?? TEXT_VR[keyword])
        ?.replace(/[\0 ]+$/, '')
        .trim() || undefined
    );
  };
  const firstNumber = (keyword: keyof typeof TAG): number | undefined => {
    const v = ds.elements[TAG[keyword]] ? Number(ds.string(TAG[keyword])?.split('\\')[0]) : NaN;
    return Number.isFinite(v) ? v : undefined;
  };
  return {
    transferSyntaxUID,
    sopClassUID,
    sopInstanceUID: requiredUid(ds, 'SOPInstanceUID'),
    studyInstanceUID: requiredUid(ds, 'StudyInstanceUID'),
    seriesInstanceUID: requiredUid(ds, 'SeriesInstanceUID'),
    modality: requiredString(ds, 'Modality').toUpperCase(),
    rows,
    columns,
    samplesPerPixel,
    photometric,
    planarConfiguration,
    bitsAllocated,
    bitsStored,
    pixelRepresentation,
    numberOfFrames,
    rescaleSlope,
    rescaleIntercept,
    windowCenter: firstNumber('WindowCenter'),
    windowWidth: firstNumber('WindowWidth'),
    voiLutFunction: text('VOILUTFunction'),
    pixelSpacing: numberList(ds, 'PixelSpacing'),
    ultrasoundRegions: ultrasoundRegions(ds),
    palette,
    patient: {
      PatientName: patientText('PatientName'),
      PatientID: patientText('PatientID'),
      PatientBirthDate: text('PatientBirthDate'),
      PatientSex: text('PatientSex'),
    },
    study: {
      StudyDate: text('StudyDate'),
      StudyTime: text('StudyTime'),
      AccessionNumber: patientText('AccessionNumber'),
      ReferringPhysicianName: patientText('ReferringPhysicianName'),
      StudyID: patientText('StudyID'),
      TimezoneOffsetFromUTC: text('TimezoneOffsetFromUTC'),
    },
    dataSet: ds,
  };
}

export const BIG_ENDIAN_SYNTAX = TS.ExplicitBig;

/**
 * Refuses a modality LUT (RescaleSlope, RescaleIntercept) that takes stored values out of float32, the type the
 * pixel pipeline computes in: a slope of 1e300 made them Infinity, the window NaN, and the model ran on NaN and
 * reported no lesion. The LUT is linear, so the ends of the stored range bound it; a zero slope means 1, as the
 * pipeline reads it (applyModalityLut).
 */
function checkModalityLut(
  slope: number | undefined,
  intercept: number | undefined,
  bitsStored: number,
  signed: boolean,
): void {
  const m = slope !== undefined && slope !== 0 ? slope : 1;
  const b = intercept ?? 0;
  const low = signed ? -(2 ** (bitsStored - 1)) : 0;
  const high = signed ? 2 ** (bitsStored - 1) - 1 : 2 ** bitsStored - 1;
  const ends = [low * m + b, high * m + b];
  // Math.fround rounds as a Float32Array store does: Infinity exactly where the pipeline's value would be.
  if (ends.every((v) => Number.isFinite(Math.fround(v)))) return;
  const keyword = Number.isFinite(Math.fround(b)) ? 'RescaleSlope' : 'RescaleIntercept';
  throw new DicomRejected(
    'UNSUPPORTED_PIXEL_FORMAT',
    `${keyword} ${keyword === 'RescaleSlope' ? m : b}: the modality LUT (RescaleSlope ${m}, RescaleIntercept ${b}) takes the stored values ${low}..${high} (BitsStored ${bitsStored}) to ${Math.min(...ends)}..${Math.max(...ends)}, beyond the float32 range (about 3.4e38) pixels are computed in`,
    attributeName(keyword),
  );
}

/** Refuses an image with more pixels to analyse than MEDICAL_MAX_PIXELS allows. */
function checkPixelBudget(rows: number, columns: number, numberOfFrames: number, limits: ParseLimits): void {
  const analysedFrames = Math.min(numberOfFrames, limits.maxAnalysedFrames ?? numberOfFrames);
  const maxPixels = limits.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (rows * columns * analysedFrames > maxPixels) {
    throw new DicomRejected(
      'UNSUPPORTED_PIXEL_FORMAT',
      `${analysedFrames} frame(s) of ${columns}x${rows} to analyse are ${rows * columns * analysedFrames} pixels; at most ${maxPixels} are decoded per instance (MEDICAL_MAX_PIXELS)`,
      attributeName('Rows'),
    );
  }
}

/** Deflated bytes inflated first, to read the image attributes: at most about 16 MiB once inflated (deflate stops near 1032:1). */
const PROBE_DEFLATED_BYTES = 16 * 1024;
/**
 * The image attributes (Rows, Columns) must come within this many inflated bytes: the head is inflated step by
 * step until they are found or it is this long, never past twice this (a step that overshoots is halved).
 */
const HEAD_WINDOW_BYTES = 16 * 1024 * 1024;
/** What a deflated data set may hold besides its pixel data (every other attribute, overlays, icons). */
const NON_PIXEL_BYTES = 64 * 1024 * 1024;
/** Output chunks of the head's inflate: Node's 16 KiB default makes inflating megabytes of zeros twice as slow. */
const HEAD_CHUNK_BYTES = 1024 * 1024;

/** How far a deflated data set may inflate, and what set that bound. */
interface InflatedLimit {
  bytes: number;
  /** `attributes`: the image size its head gives; `unsized`: a head that is damaged or all of it, without one; `maximum`: neither. */
  by: 'attributes' | 'unsized' | 'maximum';
}

/** The image size a data set's inflated head gives, or undefined where Rows or Columns are not in it. */
interface HeadSize {
  rows: number;
  columns: number;
  frames: number;
  samples: number;
  bytesPerSample: number;
}

function headSize(probe: Buffer): HeadSize | undefined {
  let ds: dicomParser.DataSet | undefined;
  try {
    ds = dicomParser.parseDicom(probe, { untilTag: TAG.PixelData, inflater: (whole: Uint8Array) => whole });
  } catch (error) {
    ds = (error as { dataSet?: dicomParser.DataSet }).dataSet; // cut off at the probe's end: what was read
  }
  const read = (tag: string): number | undefined => {
    const element = ds?.elements[tag];
    return element && element.length === 2 && element.dataOffset + 2 <= probe.length ? ds!.uint16(tag) : undefined;
  };
  const rows = read(TAG.Rows);
  const columns = read(TAG.Columns);
  if (!ds || rows === undefined || columns === undefined) return undefined;
  const framesText = ds.elements[TAG.NumberOfFrames] ? ds.string(TAG.NumberOfFrames)?.trim() : undefined;
  const frames = framesText && /^\d{1,9}$/.test(framesText) ? Math.max(1, Number(framesText)) : 1;
  const samples = read(TAG.SamplesPerPixel) ?? 1;
  const bytesPerSample = Math.ceil((read(TAG.BitsAllocated) ?? 16) / 8);
  return { rows, columns, frames, samples, bytesPerSample };
}

/**
 * How far a deflated data set may inflate: its pixel data as its own attributes size it, plus NON_PIXEL_BYTES,
 * within maxInflatedBytes and the largest Buffer Node can make. The attributes come from inflating the data set's
 * head in growing steps, so that a small file claiming a huge image is refused by the pixel budget, and one whose
 * attributes are not within the first HEAD_WINDOW_BYTES (a zip bomb hiding them behind gigabytes of zeros) is
 * refused, both before the rest is inflated. Where the head cannot be read (a damaged stream), or the whole data
 * set is shorter than the window, the whole inflate stops at the head's bound and names the fault.
 */
function inflatedLimit(array: Uint8Array, position: number, limits: ParseLimits): InflatedLimit {
  // maxOutputLength past Node's largest Buffer is refused by zlib itself, as is a data set that reaches it.
  const maximum = Math.min(limits.maxInflatedBytes, bufferConstants.MAX_LENGTH - position);
  const cap = Math.min(2 * HEAD_WINDOW_BYTES, maximum);
  const window = Math.min(HEAD_WINDOW_BYTES, Math.floor(cap / 2));
  const unsized: InflatedLimit = { bytes: cap, by: 'unsized' };
  const deflated = array.subarray(position);
  const preamble = array.subarray(0, position);
  if (deflated.length === 0) return unsized;
  let good = 0; // a prefix of the deflated bytes known to inflate short of the window without the attributes
  let over = Infinity; // the shortest prefix known to inflate past cap
  let length = Math.min(PROBE_DEFLATED_BYTES, deflated.length);
  let inflated = 0;
  while (length > good) {
    let head: Buffer;
    try {
      head = inflateRawSync(deflated.subarray(0, length), {
        finishFlush: zlibConstants.Z_SYNC_FLUSH,
        maxOutputLength: cap,
        chunkSize: HEAD_CHUNK_BYTES,
      });
    } catch (error) {
      if (!(error instanceof RangeError)) return unsized; // the whole inflate names the fault
      over = length;
      length = Math.floor((good + over) / 2);
      continue;
    }
    inflated = head.length;
    const size = headSize(Buffer.concat([preamble, head]));
    if (size) return sizedLimit(size, maximum, limits);
    if (length === deflated.length) return unsized; // all of it, without the attributes: validation names them
    if (head.length >= window) break;
    good = length;
    // Aim between the window and cap at the compression seen so far; halve the step where it overshot before.
    const ratio = Math.max(1, head.length / length);
    const next = Math.min(deflated.length, length + Math.ceil(((window + cap) / 2 - head.length) / ratio));
    length = next < over ? Math.max(next, good + 1) : Math.floor((good + over) / 2);
  }
  throw new DicomRejected(
    'MALFORMED',
    `the deflated data set (transfer syntax ${TS.Deflated}, ${transferSyntaxName(TS.Deflated)}) gives no image size (Rows, Columns) in its first ${inflated} inflated bytes; the gateway inflates at most ${cap} bytes of a data set looking for it, so that a small file cannot inflate without bound`,
  );
}

function sizedLimit(size: HeadSize, maximum: number, limits: ParseLimits): InflatedLimit {
  checkPixelBudget(size.rows, size.columns, size.frames, limits);
  const sized = size.rows * size.columns * size.samples * size.bytesPerSample * size.frames + NON_PIXEL_BYTES;
  return sized < maximum ? { bytes: sized, by: 'attributes' } : { bytes: maximum, by: 'maximum' };
}

/**
 * The refusal of bytes after a deflated data set's deflate stream: zlib stops at the stream's last block and ignored
 * them, so an instance with junk, or the next one of a multipart body behind a boundary missed, was accepted, where
 * the other transfer syntaxes refuse bytes after the data set (trailingBytesRejection). One NUL byte is read past:
 * pydicom's writer pads a stream of odd length with it, to give the file an even length.
 */
function bytesAfterDeflateStream(
  deflated: Uint8Array,
  streamBytes: number,
  position: number,
): DicomRejected | undefined {
  const trailing = deflated.length - streamBytes;
  if (trailing <= 0) return undefined;
  if (trailing === 1 && deflated[streamBytes] === 0) return undefined;
  return new DicomRejected(
    'MALFORMED',
    `the deflated data set (transfer syntax ${TS.Deflated}, ${transferSyntaxName(TS.Deflated)}) ends with its deflate stream at byte ${position + streamBytes}, but ${trailing} more byte(s) follow it: the data set is the whole deflate stream (PS3.5 A.5), and the only byte read past is one NUL, a stream's padding to an even length; bytes appended to an instance, or the rest of a multipart body behind a boundary missed, are not read past`,
  );
}

/** The refusal of a deflated data set that inflates past its limit, or past what the process can allocate. */
function tooLargeToInflate(limit: InflatedLimit, error: RangeError): string {
  if ((error as { code?: unknown }).code !== 'ERR_BUFFER_TOO_LARGE') {
    return `the deflated data set is too large to inflate in the memory the gateway has (at most ${limit.bytes} bytes are allowed)`;
  }
  switch (limit.by) {
    case 'attributes':
      return `the deflated data set inflates to more than ${limit.bytes} bytes, more than its image attributes and ${NON_PIXEL_BYTES} bytes of other attributes need`;
    case 'unsized':
      return `the deflated data set inflates to more than ${limit.bytes} bytes, the most the gateway inflates one data set to when its first bytes cannot be read for its image size`;
    case 'maximum':
      return `the deflated data set inflates to more than ${limit.bytes} bytes, the most the gateway inflates one data set to`;
  }
}

/**
 * The VRs of the patient and study text the SR copies, for an implicit VR data set (whose elements state none): the
 * character set decoder resets at a PN's `^` and `=` (PS3.5 6.1.2.5.3).
 */
const TEXT_VR: Partial<Record<keyof typeof TAG, string>> = {
  PatientName: 'PN',
  ReferringPhysicianName: 'PN',
  PatientID: 'LO',
  AccessionNumber: 'SH',
  StudyID: 'SH',
};

/** A decoder for the data set's text, or undefined where dicom-parser's latin1 reading is already right (or all there is). */
function textDecoderOf(ds: dicomParser.DataSet): TextDecode | undefined {
  return textDecoderFor(ds.string(TAG.SpecificCharacterSet));
}
