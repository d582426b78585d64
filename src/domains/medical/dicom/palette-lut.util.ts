import * as dicomParser from 'dicom-parser';
import type { StoredFrame } from '../pixels/pixel-pipeline.util';
import { DicomRejected } from './dicom-rejected';
import { valuesInWords } from './ow-bytes.util';

/** A PALETTE COLOR image's lookup tables (PS3.3 C.7.6.3.1.5-6), each entry scaled to 8 bits. */
export interface PaletteLut {
  /** The stored value mapped to the first entry; lower values take the first, higher ones the last. */
  firstMapped: number;
  red: Uint8Array;
  green: Uint8Array;
  blue: Uint8Array;
}

const CHANNELS = [
  ['Red', 'x00281101', 'x00281201', 'x00281221'],
  ['Green', 'x00281102', 'x00281202', 'x00281222'],
  ['Blue', 'x00281103', 'x00281203', 'x00281223'],
] as const;

const tagName = (tag: string): string => `(${tag.slice(1, 5).toUpperCase()},${tag.slice(5).toUpperCase()})`;

/**
 * The palette of a PALETTE COLOR data set. The descriptor gives the number of entries (0 for 65536), the first
 * stored value mapped (signed where PixelRepresentation is 1) and the bits of an entry, 8 or 16; the data is OW,
 * one entry a 16-bit word, or two 8-bit entries a word where its length is the number of entries.
 */
export function readPaletteLut(ds: dicomParser.DataSet, signed: boolean): PaletteLut {
  const tables = CHANNELS.map(([colour, descriptorTag, dataTag, segmentedTag]) => {
    const descriptor = ds.elements[descriptorTag];
    const keyword = `${colour}PaletteColorLookupTableDescriptor`;
    if (!descriptor || descriptor.length !== 6) {
      throw new DicomRejected(
        'MALFORMED',
        `${tagName(descriptorTag)} ${keyword} is missing or not three values: a PALETTE COLOR image needs it`,
        `${tagName(descriptorTag)} ${keyword}`,
      );
    }
    const entries = ds.uint16(descriptorTag, 0) || 65536;
    const firstMapped = (signed ? ds.int16(descriptorTag, 1) : ds.uint16(descriptorTag, 1)) ?? 0;
    const bits = ds.uint16(descriptorTag, 2) ?? 0;
    const dataKeyword = `${tagName(dataTag)} ${colour}PaletteColorLookupTableData`;
    if (bits !== 8 && bits !== 16) {
      throw new DicomRejected(
        'UNSUPPORTED_PIXEL_FORMAT',
        `${tagName(descriptorTag)} ${keyword} gives ${bits} bits an entry; 8 or 16 are read`,
        `${tagName(descriptorTag)} ${keyword}`,
      );
    }
    const data = ds.elements[dataTag];
    if (!data) {
      throw new DicomRejected(
        ds.elements[segmentedTag] ? 'UNSUPPORTED_PIXEL_FORMAT' : 'MALFORMED',
        ds.elements[segmentedTag]
          ? `the palette is segmented, ${tagName(segmentedTag)} Segmented${colour}PaletteColorLookupTableData, which is not read; send it with ${dataKeyword}`
          : `${dataKeyword} is missing: a PALETTE COLOR image needs it`,
        dataKeyword,
      );
    }
    const table = new Uint8Array(entries);
    if (bits === 8 && data.length === entries + (entries % 2)) {
      // Two entries a 16-bit word, swapped in a big endian data set (as its 8-bit pixel data in OW).
      const bigEndian = ds.byteArrayParser === dicomParser.bigEndianByteArrayParser;
      table.set(valuesInWords(ds.byteArray, data.dataOffset, 0, entries, bigEndian));
    } else if (data.length >= 2 * entries) {
      const words = Array.from({ length: entries }, (_, k) => ds.uint16(dataTag, k) ?? 0);
      // 8 bits an entry in words whose values pass 255 are 16-bit entries mislabelled, as DCMTK reads them.
      const top = bits === 8 && words.some((word) => word > 255) ? 65535 : 2 ** bits - 1;
      words.forEach((word, k) => (table[k] = Math.round((Math.min(word, top) * 255) / top)));
    } else {
      throw new DicomRejected(
        'MALFORMED',
        `${dataKeyword} holds ${data.length} bytes; its descriptor's ${entries} entries of ${bits} bits need ${2 * entries}`,
        dataKeyword,
      );
    }
    return { firstMapped, table };
  });
  if (tables.some((t) => t.firstMapped !== tables[0].firstMapped || t.table.length !== tables[0].table.length)) {
    throw new DicomRejected(
      'MALFORMED',
      'the red, green and blue palette descriptors give different entries or first values mapped',
      `${tagName(CHANNELS[0][1])} RedPaletteColorLookupTableDescriptor`,
    );
  }
  return { firstMapped: tables[0].firstMapped, red: tables[0].table, green: tables[1].table, blue: tables[2].table };
}

/** A PALETTE COLOR frame's stored values through its palette: an interleaved 8-bit RGB frame. */
export function paletteToRgb(frame: StoredFrame, lut: PaletteLut): StoredFrame {
  const n = frame.rows * frame.columns;
  const last = lut.red.length - 1;
  const rgb = new Uint8Array(3 * n);
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const raw = frame.values[i] - lut.firstMapped;
    const k = raw < 0 ? 0 : raw > last ? last : raw;
    rgb[j] = lut.red[k];
    rgb[j + 1] = lut.green[k];
    rgb[j + 2] = lut.blue[k];
  }
  return { ...frame, samplesPerPixel: 3, photometric: 'RGB', planarConfiguration: 0, values: rgb };
}
