/**
 * `count` 8-bit values held in OW words (a PALETTE COLOR image's 8-bit entries, 8-bit samples in an OW PixelData), from
 * value `from` of the element whose value starts at `dataOffset`, in their order as values. A big endian data set
 * stores each word's two bytes swapped (PS3.5 7.3, as DCMTK writes one), counted from the element's start, so a run may
 * start mid-word; read as they lay, every pair of values was swapped.
 */
export function valuesInWords(
  bytes: Uint8Array,
  dataOffset: number,
  from: number,
  count: number,
  bigEndian: boolean,
): Uint8Array {
  if (!bigEndian) return bytes.subarray(dataOffset + from, dataOffset + from + count);
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = bytes[dataOffset + ((from + i) ^ 1)];
  return out;
}
