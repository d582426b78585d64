/**
 * The series an SR goes in and its number there. DICOM's series holds instances of one modality made by one
 * equipment and process (PS3.3 A.1.2.3, C.7.3.1, C.7.5.1), so every SR this gateway writes for one study with one
 * model version goes in one series: a PACS receiving the SRs of a study's images sees one series of findings,
 * not one series per image.
 */
export interface SrSeries {
  seriesInstanceUID: string;
  /** 1 to 2^31 - 1, the range of IS (PS3.5 6.2). */
  instanceNumber: number;
}

/** A keyed hash of the labelled values, as hexadecimal (the audit secret's HMAC: stable for one server secret). */
export type KeyedHash = (parts: readonly string[]) => string;

const SERIES_LABEL = 'medical:sr-series:v1';
const INSTANCE_NUMBER_LABEL = 'medical:sr-instance-number:v1';
const MAX_IS = 2 ** 31 - 1;

/**
 * The SR series of a study under one model version, and the SR's number there, worked out from the study and the
 * source instance alone: a restarted gateway, or another sharing its secret, gives the same series and the same
 * number, with no counter to keep or share. The number is the source instance's (its keyed hash in 1..2^31-1), so
 * SRs of different images differ but for a chance of about n^2 / 2^32 among a study's n images, and the SR of an
 * image analysed again keeps its image's number. A model version of its own starts a series of its own, since the
 * series' equipment attributes (ManufacturerModelName, SoftwareVersions) name it. Keyed and labelled, the series UID
 * is neither the study's pseudonym in the audit trail nor linkable to it.
 */
export function srSeries(
  hash: KeyedHash,
  studyInstanceUID: string,
  sourceSopInstanceUID: string,
  model: { name: string; version: string },
): SrSeries {
  const numberHex = hash([INSTANCE_NUMBER_LABEL, sourceSopInstanceUID]).slice(0, 8);
  return {
    seriesInstanceUID: uuidUid(hash([SERIES_LABEL, studyInstanceUID, model.name, model.version])),
    instanceNumber: 1 + (Number.parseInt(numberHex, 16) % MAX_IS),
  };
}

/**
 * `2.25.` and the decimal value of a version 8 UUID (RFC 9562 5.8: its bits the maker's own) made of the first 128
 * bits of `hex`: a UID under 2.25 is a UUID's value (ISO/IEC 9834-8), so the version and variant bits are set.
 */
export function uuidUid(hex: string): string {
  if (!/^[0-9a-f]{32}/i.test(hex)) throw new RangeError('a UUID needs 128 bits of hexadecimal');
  const value = BigInt(`0x${hex.slice(0, 32)}`);
  const versioned = (value & ~(0xfn << 76n) & ~(0x3n << 62n)) | (0x8n << 76n) | (0x2n << 62n); // version 8, variant 10
  return `2.25.${versioned.toString(10)}`;
}
