/** The few attributes, transfer syntaxes and SOP classes the medical domain reads, by name. */
export const TAG = {
  MediaStorageSOPClassUID: 'x00020002',
  MediaStorageSOPInstanceUID: 'x00020003',
  TransferSyntaxUID: 'x00020010',
  SpecificCharacterSet: 'x00080005',
  SOPClassUID: 'x00080016',
  SOPInstanceUID: 'x00080018',
  StudyDate: 'x00080020',
  StudyTime: 'x00080030',
  AccessionNumber: 'x00080050',
  Modality: 'x00080060',
  ReferringPhysicianName: 'x00080090',
  TimezoneOffsetFromUTC: 'x00080201',
  PatientName: 'x00100010',
  PatientID: 'x00100020',
  PatientBirthDate: 'x00100030',
  PatientSex: 'x00100040',
  StudyInstanceUID: 'x0020000d',
  SeriesInstanceUID: 'x0020000e',
  StudyID: 'x00200010',
  SamplesPerPixel: 'x00280002',
  PhotometricInterpretation: 'x00280004',
  PlanarConfiguration: 'x00280006',
  NumberOfFrames: 'x00280008',
  Rows: 'x00280010',
  Columns: 'x00280011',
  PixelSpacing: 'x00280030',
  BitsAllocated: 'x00280100',
  BitsStored: 'x00280101',
  HighBit: 'x00280102',
  PixelRepresentation: 'x00280103',
  WindowCenter: 'x00281050',
  WindowWidth: 'x00281051',
  RescaleIntercept: 'x00281052',
  RescaleSlope: 'x00281053',
  VOILUTFunction: 'x00281056',
  SequenceOfUltrasoundRegions: 'x00186011',
  RegionSpatialFormat: 'x00186012',
  RegionLocationMinX0: 'x00186018',
  RegionLocationMinY0: 'x0018601a',
  RegionLocationMaxX1: 'x0018601c',
  RegionLocationMaxY1: 'x0018601e',
  PhysicalUnitsXDirection: 'x00186024',
  PhysicalUnitsYDirection: 'x00186026',
  PhysicalDeltaX: 'x0018602c',
  PhysicalDeltaY: 'x0018602e',
  ExtendedOffsetTable: 'x7fe00001',
  FloatPixelData: 'x7fe00008',
  DoubleFloatPixelData: 'x7fe00009',
  PixelData: 'x7fe00010',
} as const;

/** `x00280010` -> `(0028,0010) Rows`, for refusals that name the attribute. */
export function attributeName(keyword: keyof typeof TAG): string {
  const hex = TAG[keyword].slice(1).toUpperCase();
  return `(${hex.slice(0, 4)},${hex.slice(4)}) ${keyword}`;
}

/** `x7fe00010` -> `(7FE0,0010)`, with its keyword where the gateway knows it. */
export function tagName(tag: string): string {
  const hex = tag.slice(1).toUpperCase();
  const keyword = (Object.keys(TAG) as Array<keyof typeof TAG>).find((k) => TAG[k] === tag);
  return `(${hex.slice(0, 4)},${hex.slice(4)})${keyword ? ` ${keyword}` : ''}`;
}

export const TS = {
  ImplicitLittle: '1.2.840.10008.1.2',
  ExplicitLittle: '1.2.840.10008.1.2.1',
  Deflated: '1.2.840.10008.1.2.1.99',
  ExplicitBig: '1.2.840.10008.1.2.2',
  Rle: '1.2.840.10008.1.2.5',
  JpegBaseline: '1.2.840.10008.1.2.4.50',
  JpegExtended: '1.2.840.10008.1.2.4.51',
  JpegLossless: '1.2.840.10008.1.2.4.57',
  JpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  JpegLsLossless: '1.2.840.10008.1.2.4.80',
  JpegLsNearLossless: '1.2.840.10008.1.2.4.81',
  Jpeg2000Lossless: '1.2.840.10008.1.2.4.90',
  Jpeg2000: '1.2.840.10008.1.2.4.91',
  HtJpeg2000Lossless: '1.2.840.10008.1.2.4.201',
  HtJpeg2000LosslessRpcl: '1.2.840.10008.1.2.4.202',
  HtJpeg2000: '1.2.840.10008.1.2.4.203',
} as const;

export type Codec = 'native' | 'rle' | 'jpeg' | 'jpeg-ls' | 'jpeg2000' | 'htj2k';

/** Transfer syntaxes the gateway decodes, with the codec that reads their frames. */
export const SUPPORTED_TRANSFER_SYNTAXES: ReadonlyMap<string, { name: string; codec: Codec }> = new Map([
  [TS.ImplicitLittle, { name: 'Implicit VR Little Endian', codec: 'native' }],
  [TS.ExplicitLittle, { name: 'Explicit VR Little Endian', codec: 'native' }],
  [TS.Deflated, { name: 'Deflated Explicit VR Little Endian', codec: 'native' }],
  [TS.ExplicitBig, { name: 'Explicit VR Big Endian', codec: 'native' }],
  [TS.Rle, { name: 'RLE Lossless', codec: 'rle' }],
  [TS.JpegBaseline, { name: 'JPEG Baseline (Process 1)', codec: 'jpeg' }],
  [TS.JpegExtended, { name: 'JPEG Extended (Process 2 & 4)', codec: 'jpeg' }],
  [TS.JpegLossless, { name: 'JPEG Lossless (Process 14)', codec: 'jpeg' }],
  [TS.JpegLosslessSV1, { name: 'JPEG Lossless (Process 14, Selection Value 1)', codec: 'jpeg' }],
  [TS.JpegLsLossless, { name: 'JPEG-LS Lossless', codec: 'jpeg-ls' }],
  [TS.JpegLsNearLossless, { name: 'JPEG-LS Near-Lossless', codec: 'jpeg-ls' }],
  [TS.Jpeg2000Lossless, { name: 'JPEG 2000 Lossless', codec: 'jpeg2000' }],
  [TS.Jpeg2000, { name: 'JPEG 2000', codec: 'jpeg2000' }],
  [TS.HtJpeg2000Lossless, { name: 'HTJ2K Lossless', codec: 'htj2k' }],
  [TS.HtJpeg2000LosslessRpcl, { name: 'HTJ2K Lossless RPCL', codec: 'htj2k' }],
  [TS.HtJpeg2000, { name: 'HTJ2K', codec: 'htj2k' }],
]);

/** Names of well-known transfer syntaxes the gateway does not decode, so a refusal can name them. */
const UNSUPPORTED_TRANSFER_SYNTAX_NAMES: Record<string, string> = {
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile',
  '1.2.840.10008.1.2.4.101': 'MPEG2 High Profile',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264',
  '1.2.840.10008.1.2.4.103': 'MPEG-4 AVC/H.264 BD-compatible',
  '1.2.840.10008.1.2.4.107': 'HEVC/H.265',
  '1.2.840.10008.1.2.4.92': 'JPEG 2000 Part 2 Multi-component Lossless',
  '1.2.840.10008.1.2.4.93': 'JPEG 2000 Part 2 Multi-component',
  '1.2.840.10008.1.2.4.94': 'JPIP Referenced',
  '1.2.840.10008.1.2.4.110': 'JPEG XL Lossless',
  '1.2.840.10008.1.2.4.112': 'JPEG XL',
  '1.2.840.10008.1.2.4.52': 'JPEG Extended (Process 3 & 5, retired)',
  '1.2.840.10008.1.2.4.53': 'JPEG Spectral Selection (retired)',
  '1.2.840.10008.1.2.4.55': 'JPEG Full Progression (retired)',
  '1.2.840.10008.1.2.4.58': 'JPEG Lossless Hierarchical (retired)',
  '1.2.840.10008.1.2.6.1': 'RFC 2557 MIME encapsulation',
};

export function transferSyntaxName(uid: string): string {
  return SUPPORTED_TRANSFER_SYNTAXES.get(uid)?.name ?? UNSUPPORTED_TRANSFER_SYNTAX_NAMES[uid] ?? 'unknown';
}

/** Image storage SOP classes whose pixels a 2D model can read (PS3.4 Annex B). */
export const IMAGE_STORAGE_SOP_CLASSES: ReadonlyMap<string, string> = new Map([
  ['1.2.840.10008.5.1.4.1.1.1', 'CR Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.1.1', 'Digital X-Ray Image Storage - For Presentation'],
  ['1.2.840.10008.5.1.4.1.1.1.1.1', 'Digital X-Ray Image Storage - For Processing'],
  ['1.2.840.10008.5.1.4.1.1.1.2', 'Digital Mammography X-Ray Image Storage - For Presentation'],
  ['1.2.840.10008.5.1.4.1.1.1.2.1', 'Digital Mammography X-Ray Image Storage - For Processing'],
  ['1.2.840.10008.5.1.4.1.1.2', 'CT Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.2.1', 'Enhanced CT Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.3', 'Ultrasound Multi-frame Image Storage (Retired)'],
  ['1.2.840.10008.5.1.4.1.1.3.1', 'Ultrasound Multi-frame Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.4', 'MR Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.4.1', 'Enhanced MR Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.6', 'Ultrasound Image Storage (Retired)'],
  ['1.2.840.10008.5.1.4.1.1.6.1', 'Ultrasound Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.7', 'Secondary Capture Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.7.2', 'Multi-frame Grayscale Byte Secondary Capture Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.7.3', 'Multi-frame Grayscale Word Secondary Capture Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.7.4', 'Multi-frame True Color Secondary Capture Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.12.1', 'X-Ray Angiographic Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.12.2', 'X-Ray Radiofluoroscopic Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.20', 'Nuclear Medicine Image Storage'],
  ['1.2.840.10008.5.1.4.1.1.128', 'Positron Emission Tomography Image Storage'],
]);

/** A readable name for SOP classes that are refused, by family, so the refusal says what the object is. */
export function nonImageKind(sopClassUid: string): string {
  const families: Array<[string, string]> = [
    ['1.2.840.10008.5.1.4.1.1.88.', 'a structured report (SR)'],
    ['1.2.840.10008.5.1.4.1.1.481.', 'a radiotherapy object (RT)'],
    ['1.2.840.10008.5.1.4.1.1.66.4', 'a segmentation (SEG)'],
    ['1.2.840.10008.5.1.4.1.1.66', 'a raw data / registration / fiducials object'],
    ['1.2.840.10008.5.1.4.1.1.9.', 'a waveform'],
    ['1.2.840.10008.5.1.4.1.1.11.', 'a presentation state'],
    ['1.2.840.10008.5.1.4.1.1.104.', 'an encapsulated document'],
    ['1.2.840.10008.5.1.4.1.1.77.', 'a visible light image (not analysed here)'],
  ];
  return families.find(([prefix]) => sopClassUid.startsWith(prefix))?.[1] ?? 'not an image storage object';
}
