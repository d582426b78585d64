import { randomUUID } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { data, log, type Logger, type NaturalDataset } from 'dcmjs';
import type { SrSeries } from './sr-series.util';

/**
 * Lesion findings as a DICOM Comprehensive SR following TID 1500 (Measurement Report), so a PACS
 * files the result with the source study and any TID 1500 viewer shows the boxes and numbers.
 *
 * Coding choices (PS3.16 codes where one fits, a local `99GW` scheme where none does):
 * - procedure reported: (47079000, SCT, "Ultrasonography of breast"), from CID 6050.
 * - each lesion is a TID 1410 Planar ROI group: Finding (52988006, SCT, "Lesion"), the box as a
 *   closed POLYLINE Image Region, then NUMs. The detector's score is not a probability of cancer,
 *   so it is (LESION-PROB, 99GW, "Lesion probability"), unit (1, UCUM, "no units").
 * - calibrated sizes: Area (42798000, SCT) in mm2, Width (103355008, SCT) and Height (121207, DCM)
 *   in mm; these are the box's extents along the image axes, not the lesion's long/short axes.
 *   Uncalibrated, only the pixel count is given, as (AREA-PX, 99GW, "Area in pixels") in
 *   `{pixels}`: a UCUM annotation equal to unity, as DICOM itself uses `{counts}`.
 * - the image-level malignancy probability is a TID 1501 group: (111047, DCM, "Probability of
 *   cancer"), unit 1, inferred from the source image.
 * - the model is named by TID 4019 Algorithm Name / Version in every group.
 */

export interface SrSourceImage {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  sopClassUID: string;
  /** Patient/study module values copied from the source so the PACS files the SR with its study (may be absent). */
  patient: { PatientName?: string; PatientID?: string; PatientBirthDate?: string; PatientSex?: string };
  study: {
    StudyDate?: string;
    StudyTime?: string;
    AccessionNumber?: string;
    ReferringPhysicianName?: string;
    StudyID?: string;
    /** The source's (0008,0201): the offset its dates and times are in, and so the SR's (see documentHeader). */
    TimezoneOffsetFromUTC?: string;
  };
  /** 1-based, set for multi-frame sources. */
  frameNumber?: number;
}

export interface SrFinding {
  /** Region on the source image's pixel grid (columns x, rows y), box covers [x, x+width) x [y, y+height). */
  box: { x: number; y: number; width: number; height: number };
  /** 0..1 */
  lesionProbability: number;
  areaPx: number;
  sizeMm?: { widthMm: number; heightMm: number; areaMm2: number };
  frameNumber?: number;
}

export interface SrOptions {
  model: { name: string; version: string };
  /** Image-level, 0..1. */
  malignancyProbability?: number;
  /** A UID for the gateway as observer device. */
  deviceObserverUID: string;
  /** e.g. 'regulated-inference-gateway' */
  manufacturer: string;
  now?: Date;
  /** Default '2.25' (UUID-derived UIDs). */
  uidRoot?: string;
  /** The series the SR goes in and its InstanceNumber: one series per study and model version (srSeries). */
  series: SrSeries;
  /** The data set's encoding; default explicit VR little endian, the default of DICOMweb (PS3.18 8.7.3.5.2). */
  transferSyntax?: SrTransferSyntax;
}

/** The transfer syntaxes the SR is written in, the default first, with their names in PS3.6. */
export const SR_TRANSFER_SYNTAXES = {
  '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
  '1.2.840.10008.1.2': 'Implicit VR Little Endian',
  '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR Little Endian',
} as const;
export type SrTransferSyntax = keyof typeof SR_TRANSFER_SYNTAXES;

type Code = readonly [value: string, scheme: string, meaning: string];

const COMPREHENSIVE_SR = '1.2.840.10008.5.1.4.1.1.88.33';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99';
const DCMR_UID = '1.2.840.10008.8.1.1';
// Names this writer, not a file: fixed once from a random UUID.
const IMPLEMENTATION_CLASS_UID = '2.25.63768102400915240157087566270395696861';
const IMPLEMENTATION_VERSION_NAME = 'RIG_SR_1';
// High enough to sort after the modality's own series in a viewer.
const SERIES_NUMBER = 9901;
const LOCAL_SCHEME = '99GW';

const CODES = {
  report: ['126000', 'DCM', 'Imaging Measurement Report'],
  language: ['121049', 'DCM', 'Language of Content Item and Descendants'],
  englishUs: ['en-US', 'RFC5646', 'English (United States)'],
  observerType: ['121005', 'DCM', 'Observer Type'],
  device: ['121007', 'DCM', 'Device'],
  deviceObserverUid: ['121012', 'DCM', 'Device Observer UID'],
  deviceObserverName: ['121013', 'DCM', 'Device Observer Name'],
  deviceObserverManufacturer: ['121014', 'DCM', 'Device Observer Manufacturer'],
  deviceObserverModelName: ['121015', 'DCM', 'Device Observer Model Name'],
  procedureReported: ['121058', 'DCM', 'Procedure reported'],
  breastUltrasound: ['47079000', 'SCT', 'Ultrasonography of breast'],
  imageLibrary: ['111028', 'DCM', 'Image Library'],
  imageLibraryGroup: ['126200', 'DCM', 'Image Library Group'],
  imagingMeasurements: ['126010', 'DCM', 'Imaging Measurements'],
  measurementGroup: ['125007', 'DCM', 'Measurement Group'],
  trackingIdentifier: ['112039', 'DCM', 'Tracking Identifier'],
  trackingUid: ['112040', 'DCM', 'Tracking Unique Identifier'],
  finding: ['121071', 'DCM', 'Finding'],
  lesion: ['52988006', 'SCT', 'Lesion'],
  algorithmName: ['111001', 'DCM', 'Algorithm Name'],
  algorithmVersion: ['111003', 'DCM', 'Algorithm Version'],
  imageRegion: ['111030', 'DCM', 'Image Region'],
  lesionProbability: ['LESION-PROB', LOCAL_SCHEME, 'Lesion probability'],
  areaPx: ['AREA-PX', LOCAL_SCHEME, 'Area in pixels'],
  area: ['42798000', 'SCT', 'Area'],
  width: ['103355008', 'SCT', 'Width'],
  height: ['121207', 'DCM', 'Height'],
  probabilityOfCancer: ['111047', 'DCM', 'Probability of cancer'],
  sourceOfMeasurement: ['121112', 'DCM', 'Source of Measurement'],
  qualitativeEvaluations: ['C0034375', 'UMLS', 'Qualitative Evaluations'],
} as const satisfies Record<string, Code>;

const UNITS = {
  ratio: ['1', 'UCUM', 'no units'],
  mm: ['mm', 'UCUM', 'millimeter'],
  mm2: ['mm2', 'UCUM', 'square millimeter'],
  pixels: ['{pixels}', 'UCUM', 'pixels'],
} as const satisfies Record<string, Code>;

// Longest value dcmjs writes untruncated for the copied attributes (PS3.5 6.2); PN per component group.
const MAX_LENGTH = {
  PatientName: 64,
  PatientID: 64,
  PatientBirthDate: 8,
  PatientSex: 16,
  StudyDate: 8,
  StudyTime: 16,
  AccessionNumber: 16,
  ReferringPhysicianName: 64,
  StudyID: 16,
} as const;

const UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

/** `root` + '.' + the decimal value of a random (v4) UUID; under '2.25' that is ISO/IEC 9834-8. */
export function newUid(root = '2.25'): string {
  if (!UID_PATTERN.test(root)) throw new RangeError(`UID root "${root}" is not a dotted decimal UID`);
  // Checked against the longest suffix (2^128 has 39 digits) so a root never works only sometimes.
  if (root.length + 1 + 39 > 64)
    throw new RangeError(`UID root "${root}" leaves no room for 39 digits in 64 characters`);
  return `${root}.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

/** Part 10 bytes of a Comprehensive SR holding `findings` on `source`, in `options.transferSyntax`. */
export function buildLesionSr(source: SrSourceImage, findings: SrFinding[], options: SrOptions): ArrayBuffer {
  checkInputs(source, findings, options);
  const now = options.now ?? new Date();
  const root = options.uidRoot ?? '2.25';
  const sopInstanceUID = newUid(root);
  const image = imageReference(source);

  const content: NaturalDataset = {
    ...documentHeader(source, options, now, sopInstanceUID),
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [code(CODES.report)],
    ContinuityOfContent: 'SEPARATE',
    ContentTemplateSequence: [template('1500')],
    ContentSequence: [
      codeItem('HAS CONCEPT MOD', CODES.language, CODES.englishUs),
      codeItem('HAS OBS CONTEXT', CODES.observerType, CODES.device),
      uidItem('HAS OBS CONTEXT', CODES.deviceObserverUid, options.deviceObserverUID),
      textItem('HAS OBS CONTEXT', CODES.deviceObserverName, options.manufacturer),
      textItem('HAS OBS CONTEXT', CODES.deviceObserverManufacturer, options.manufacturer),
      textItem('HAS OBS CONTEXT', CODES.deviceObserverModelName, options.model.name),
      codeItem('HAS CONCEPT MOD', CODES.procedureReported, CODES.breastUltrasound),
      container('CONTAINS', CODES.imageLibrary, '1600', [
        container('CONTAINS', CODES.imageLibraryGroup, undefined, [imageItem('CONTAINS', undefined, image)]),
      ]),
      container('CONTAINS', CODES.imagingMeasurements, undefined, [
        ...findings.map((finding, i) => lesionGroup(finding, i + 1, source, options, root)),
        ...(options.malignancyProbability === undefined
          ? []
          : [imageGroup(options.malignancyProbability, options, image, root)]),
      ]),
      ...(findings.length === 0
        ? [
            container('CONTAINS', CODES.qualitativeEvaluations, undefined, [
              textItem('CONTAINS', CODES.finding, 'No lesion detected'),
            ]),
          ]
        : []),
    ],
  };
  // dcmjs writes text as UTF-8. Name it only when needed: plain ASCII is the default repertoire,
  // and DCMTK's VR checker (3.6.7) cannot check UTF-8. JSON escapes control characters.
  const dataset = /[^ -~]/.test(JSON.stringify(content)) ? { SpecificCharacterSet: 'ISO_IR 192', ...content } : content;

  const transferSyntax = options.transferSyntax ?? EXPLICIT_VR_LITTLE_ENDIAN;
  return withDcmjsSilent(() => {
    const part10 = (syntax: string, dict: NaturalDataset): ArrayBuffer => {
      const file = new data.DicomDict(
        data.DicomMetaDictionary.denaturalizeDataset({
          FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
          MediaStorageSOPClassUID: COMPREHENSIVE_SR,
          MediaStorageSOPInstanceUID: sopInstanceUID,
          TransferSyntaxUID: syntax,
          ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
          ImplementationVersionName: IMPLEMENTATION_VERSION_NAME,
        }),
      );
      file.dict = data.DicomMetaDictionary.denaturalizeDataset(dict);
      return file.write();
    };
    if (transferSyntax !== DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN) return part10(transferSyntax, dataset);
    // dcmjs reads deflated data sets but writes them plain under the deflated UID. PS3.5 A.5: the data set
    // encoded as explicit VR little endian, then deflated (RFC 1951, no zlib header); an odd length gets one NUL.
    const explicit = Buffer.from(part10(EXPLICIT_VR_LITTLE_ENDIAN, dataset));
    const deflated = deflateRawSync(explicit.subarray(afterFileMeta(explicit)));
    return toArrayBuffer(
      Buffer.concat([
        Buffer.from(part10(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, {})),
        deflated,
        ...(deflated.length % 2 ? [Buffer.alloc(1)] : []),
      ]),
    );
  });
}

/** Where the data set starts: after the preamble, DICM, the group length element (12 bytes) and the group it counts. */
function afterFileMeta(file: Buffer): number {
  return 128 + 4 + 12 + file.readUInt32LE(128 + 4 + 8);
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function documentHeader(source: SrSourceImage, options: SrOptions, now: Date, sopInstanceUID: string): NaturalDataset {
  // One offset holds for every date and time of an instance (PS3.3 C.12.1.1.8), the copied StudyDate and
  // StudyTime among them, which are in the source's: the SR's own are written in that offset and say so. A
  // source that states none leaves the SR stating none too, rather than claiming its study time is UTC.
  const zone = offsetMinutes(source.study.TimezoneOffsetFromUTC);
  const local = zone === undefined ? now : new Date(now.getTime() + zone * 60_000);
  const date = dicomDate(local);
  const time = dicomTime(local);
  return {
    SOPClassUID: COMPREHENSIVE_SR,
    SOPInstanceUID: sopInstanceUID,
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    ...(zone === undefined ? {} : { TimezoneOffsetFromUTC: source.study.TimezoneOffsetFromUTC }),
    StudyDate: copiedValue('StudyDate', source.study.StudyDate),
    StudyTime: copiedValue('StudyTime', source.study.StudyTime),
    AccessionNumber: copiedValue('AccessionNumber', source.study.AccessionNumber),
    ReferringPhysicianName: copiedValue('ReferringPhysicianName', source.study.ReferringPhysicianName),
    StudyID: copiedValue('StudyID', source.study.StudyID),
    StudyInstanceUID: source.studyInstanceUID,
    PatientName: copiedValue('PatientName', source.patient.PatientName),
    PatientID: copiedValue('PatientID', source.patient.PatientID),
    PatientBirthDate: copiedValue('PatientBirthDate', source.patient.PatientBirthDate),
    PatientSex: copiedValue('PatientSex', source.patient.PatientSex),
    Modality: 'SR',
    // One series holds every SR of the study: SeriesDate and SeriesTime (Type 3), when the series started, are left
    // out rather than each SR stating its own.
    SeriesInstanceUID: options.series.seriesInstanceUID,
    SeriesNumber: SERIES_NUMBER,
    SeriesDescription: 'AI lesion measurements',
    ReferencedPerformedProcedureStepSequence: [],
    Manufacturer: options.manufacturer,
    ManufacturerModelName: options.model.name,
    SoftwareVersions: options.model.version,
    InstanceNumber: options.series.instanceNumber,
    ContentDate: date,
    ContentTime: time,
    CompletionFlag: 'COMPLETE',
    VerificationFlag: 'UNVERIFIED',
    PerformedProcedureCodeSequence: [],
    CurrentRequestedProcedureEvidenceSequence: [
      {
        StudyInstanceUID: source.studyInstanceUID,
        ReferencedSeriesSequence: [
          {
            SeriesInstanceUID: source.seriesInstanceUID,
            ReferencedSOPSequence: [
              { ReferencedSOPClassUID: source.sopClassUID, ReferencedSOPInstanceUID: source.sopInstanceUID },
            ],
          },
        ],
      },
    ],
    // Required once a code outside PS3.16's list of schemes appears.
    CodingSchemeIdentificationSequence: [
      {
        CodingSchemeDesignator: LOCAL_SCHEME,
        CodingSchemeName: 'Inference gateway local codes',
        CodingSchemeResponsibleOrganization: options.manufacturer,
      },
    ],
  };
}

function lesionGroup(
  finding: SrFinding,
  index: number,
  source: SrSourceImage,
  options: SrOptions,
  root: string,
): NaturalDataset {
  const frame = finding.frameNumber ?? source.frameNumber;
  const measurements: NaturalDataset[] = [numItem(CODES.lesionProbability, finding.lesionProbability, UNITS.ratio)];
  if (finding.sizeMm) {
    measurements.push(
      numItem(CODES.area, finding.sizeMm.areaMm2, UNITS.mm2),
      numItem(CODES.width, finding.sizeMm.widthMm, UNITS.mm),
      numItem(CODES.height, finding.sizeMm.heightMm, UNITS.mm),
    );
  } else {
    measurements.push(numItem(CODES.areaPx, finding.areaPx, UNITS.pixels));
  }
  return container('CONTAINS', CODES.measurementGroup, '1410', [
    textItem('HAS OBS CONTEXT', CODES.trackingIdentifier, `lesion ${index}`),
    uidItem('HAS OBS CONTEXT', CODES.trackingUid, newUid(root)),
    codeItem('HAS CONCEPT MOD', CODES.finding, CODES.lesion),
    ...algorithmItems(options),
    {
      ...contentItem('CONTAINS', 'SCOORD', CODES.imageRegion),
      GraphicType: 'POLYLINE',
      GraphicData: boxOutline(finding.box),
      ContentSequence: [imageItem('SELECTED FROM', undefined, { ...imageReference(source), frame })],
    },
    ...measurements,
  ]);
}

function imageGroup(malignancy: number, options: SrOptions, image: ImageRef, root: string): NaturalDataset {
  const probability = numItem(CODES.probabilityOfCancer, malignancy, UNITS.ratio);
  probability.ContentSequence = [imageItem('INFERRED FROM', CODES.sourceOfMeasurement, image)];
  return container('CONTAINS', CODES.measurementGroup, '1501', [
    textItem('HAS OBS CONTEXT', CODES.trackingIdentifier, 'image'),
    uidItem('HAS OBS CONTEXT', CODES.trackingUid, newUid(root)),
    ...algorithmItems(options),
    probability,
  ]);
}

/**
 * The box's outline, closed (5 column/row points). SCOORD image coordinates put the top-left corner
 * of the top-left pixel at 0,0 and its centre at 0.5,0.5 (PS3.3 C.18.6.1.1), so pixel column c
 * spans [c, c+1): the outline of pixels [x, x+width) runs along x and x+width exactly.
 */
function boxOutline(box: SrFinding['box']): number[] {
  const left = box.x;
  const top = box.y;
  const right = box.x + box.width;
  const bottom = box.y + box.height;
  return [left, top, right, top, right, bottom, left, bottom, left, top];
}

function algorithmItems(options: SrOptions): NaturalDataset[] {
  return [
    textItem('HAS CONCEPT MOD', CODES.algorithmName, options.model.name),
    textItem('HAS CONCEPT MOD', CODES.algorithmVersion, options.model.version),
  ];
}

interface ImageRef {
  sopClassUID: string;
  sopInstanceUID: string;
  frame?: number;
}

function imageReference(source: SrSourceImage): ImageRef {
  return { sopClassUID: source.sopClassUID, sopInstanceUID: source.sopInstanceUID };
}

function code([value, scheme, meaning]: Code): NaturalDataset {
  return { CodeValue: value, CodingSchemeDesignator: scheme, CodeMeaning: meaning };
}

function template(id: string): NaturalDataset {
  return { MappingResource: 'DCMR', MappingResourceUID: DCMR_UID, TemplateIdentifier: id };
}

function contentItem(relationship: string, valueType: string, concept: Code | undefined): NaturalDataset {
  const item: NaturalDataset = { RelationshipType: relationship, ValueType: valueType };
  if (concept) item.ConceptNameCodeSequence = [code(concept)];
  return item;
}

function container(
  relationship: string,
  concept: Code,
  templateId: string | undefined,
  children: NaturalDataset[],
): NaturalDataset {
  const item = { ...contentItem(relationship, 'CONTAINER', concept), ContinuityOfContent: 'SEPARATE' };
  return {
    ...item,
    ...(templateId ? { ContentTemplateSequence: [template(templateId)] } : {}),
    ...(children.length > 0 ? { ContentSequence: children } : {}),
  };
}

function textItem(relationship: string, concept: Code, value: string): NaturalDataset {
  return { ...contentItem(relationship, 'TEXT', concept), TextValue: value };
}

function codeItem(relationship: string, concept: Code, value: Code): NaturalDataset {
  return { ...contentItem(relationship, 'CODE', concept), ConceptCodeSequence: [code(value)] };
}

function uidItem(relationship: string, concept: Code, uid: string): NaturalDataset {
  return { ...contentItem(relationship, 'UIDREF', concept), UID: uid };
}

function imageItem(relationship: string, concept: Code | undefined, image: ImageRef): NaturalDataset {
  const reference: NaturalDataset = {
    ReferencedSOPClassUID: image.sopClassUID,
    ReferencedSOPInstanceUID: image.sopInstanceUID,
  };
  if (image.frame !== undefined) reference.ReferencedFrameNumber = image.frame;
  return { ...contentItem(relationship, 'IMAGE', concept), ReferencedSOPSequence: [reference] };
}

function numItem(concept: Code, value: number, unit: Code): NaturalDataset {
  const text = decimalString(value);
  const measured: NaturalDataset = { NumericValue: text, MeasurementUnitsCodeSequence: [code(unit)] };
  // DS holds 16 characters; the exact double travels beside it when that is not enough.
  if (Number(text) !== value) measured.FloatingPointValue = value;
  return { ...contentItem('CONTAINS', 'NUM', concept), MeasuredValueSequence: [measured] };
}

/** Shortest rendering of `value` that fits DS's 16 characters (dcmjs would cut the string instead). */
function decimalString(value: number): string {
  const plain = String(value);
  if (plain.length <= 16) return plain;
  for (let digits = 15; digits > 0; digits--) {
    const rounded = String(Number(value.toPrecision(digits)));
    if (rounded.length <= 16) return rounded;
  }
  return value.toExponential(0);
}

/**
 * A TimezoneOffsetFromUTC in minutes east of UTC: &ZZXX, -1200 to +1400 (PS3.3 C.12.1.1.8), -0000 not allowed;
 * undefined for none, or for a value that is no such offset (the SR then states none, as for a source without).
 */
function offsetMinutes(value: string | undefined): number | undefined {
  const match = /^([+-])(\d{2})([0-5]\d)$/.exec(value ?? '');
  if (!match || value === '-0000') return undefined;
  const minutes = Number(match[2]) * 60 + Number(match[3]);
  const signed = match[1] === '-' ? -minutes : minutes;
  return signed >= -12 * 60 && signed <= 14 * 60 ? signed : undefined;
}

/** `at`'s UTC fields: the caller shifts it by the offset the SR states. */
function dicomDate(at: Date): string {
  return at.toISOString().slice(0, 10).replace(/-/g, '');
}

function dicomTime(at: Date): string {
  return at.toISOString().slice(11, 19).replace(/:/g, '');
}

/**
 * dcmjs logs through a process-wide loglevel and some messages quote element values, which here
 * are patient data: mute it for the synchronous build and put the levels back.
 */
function withDcmjsSilent<T>(build: () => T): T {
  const loggers: Logger[] = [log, log.getLogger('validation.dcmjs')];
  const levels = loggers.map((logger) => logger.getLevel());
  loggers.forEach((logger) => logger.setLevel('silent', false));
  try {
    return build();
  } finally {
    loggers.forEach((logger, i) => logger.setLevel(levels[i], false));
  }
}

/** Refuses what would make an invalid SR. Messages name the field, never its value (patient data). */
function checkInputs(source: SrSourceImage, findings: SrFinding[], options: SrOptions): void {
  const uids: Array<[string, string]> = [
    ['source.studyInstanceUID', source.studyInstanceUID],
    ['source.seriesInstanceUID', source.seriesInstanceUID],
    ['source.sopInstanceUID', source.sopInstanceUID],
    ['source.sopClassUID', source.sopClassUID],
    ['options.deviceObserverUID', options.deviceObserverUID],
    ['options.series.seriesInstanceUID', options.series.seriesInstanceUID],
  ];
  for (const [field, uid] of uids) {
    if (uid.length > 64 || !UID_PATTERN.test(uid)) throw new RangeError(`${field} is not a valid UID`);
  }
  for (const [field, value] of [
    ['options.manufacturer', options.manufacturer],
    ['options.model.name', options.model.name],
    ['options.model.version', options.model.version],
  ] as const) {
    // LO: one value of up to 64 characters; a backslash would split it in two.
    if (value.length === 0 || value.length > 64 || value.includes('\\') || /[^ -~\u00a0-\uffff]/.test(value)) {
      throw new RangeError(`${field} must be 1 to 64 characters without backslash or control characters`);
    }
  }
  if (options.transferSyntax !== undefined && !Object.hasOwn(SR_TRANSFER_SYNTAXES, options.transferSyntax)) {
    throw new RangeError(`options.transferSyntax ${options.transferSyntax} is not one the SR is written in`);
  }
  const number = options.series.instanceNumber;
  if (!Number.isInteger(number) || number < 1 || number > 2 ** 31 - 1) {
    throw new RangeError('options.series.instanceNumber must be an integer from 1 to 2^31 - 1 (IS)');
  }
  checkFrame('source.frameNumber', source.frameNumber);
  checkProbability('options.malignancyProbability', options.malignancyProbability);
  findings.forEach((finding, i) => {
    const where = `findings[${i}]`;
    const { x, y, width, height } = finding.box;
    if (![x, y, width, height].every(Number.isFinite) || x < 0 || y < 0 || width <= 0 || height <= 0) {
      throw new RangeError(`${where}.box needs finite x, y >= 0 and width, height > 0`);
    }
    checkProbability(`${where}.lesionProbability`, finding.lesionProbability);
    if (!Number.isFinite(finding.areaPx) || finding.areaPx < 0) throw new RangeError(`${where}.areaPx must be >= 0`);
    if (finding.sizeMm) {
      const { widthMm, heightMm, areaMm2 } = finding.sizeMm;
      if (![widthMm, heightMm, areaMm2].every((v) => Number.isFinite(v) && v >= 0)) {
        throw new RangeError(`${where}.sizeMm values must be finite and >= 0`);
      }
    }
    checkFrame(`${where}.frameNumber`, finding.frameNumber);
  });
}

// What each copied attribute's VR allows beyond its length (PS3.5 6.2): DA, TM, CS; no backslash anywhere (VM 1).
const VALUE_PATTERN: Record<string, RegExp> = {
  PatientBirthDate: /^\d{8}$/,
  StudyDate: /^\d{8}$/,
  StudyTime: /^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$/,
  PatientSex: /^[A-Z0-9 _]*$/,
};

/**
 * A Type 2 value copied from the source, or null (present but empty) when the source's does not fit its VR:
 * the SR stays valid and the PACS still files it by its UIDs, rather than the answer failing.
 */
function copiedValue(keyword: keyof typeof MAX_LENGTH, value: string | undefined): string | null {
  if (value === undefined) return null;
  // One value (a backslash would make two) of printable characters.
  if (value.includes('\\') || /[^ -~\u00a0-\uffff]/.test(value)) return null;
  if (!fitsLength(keyword, value, MAX_LENGTH[keyword])) return null;
  return (VALUE_PATTERN[keyword]?.test(value) ?? true) ? value : null;
}

function fitsLength(keyword: string, value: string, max: number): boolean {
  if (keyword.endsWith('Name')) return value.split('=').every((group) => group.length <= max);
  return value.length <= max;
}

function checkProbability(field: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isFinite(value) && value >= 0 && value <= 1)) {
    throw new RangeError(`${field} must be within 0..1`);
  }
}

function checkFrame(field: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= 1)) {
    throw new RangeError(`${field} must be an integer >= 1`);
  }
}
