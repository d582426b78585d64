import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHmac } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { data, log } from 'dcmjs';
import { preferredMediaType } from '../../src/domains/medical/accept-header.util';
import { AppError } from '../../src/common/errors/app-error';
import { answerContentType, answerForm } from '../../src/domains/medical/sr/sr-negotiation.util';
import { STORE_RESPONSE_TYPES } from '../../src/domains/medical/stow/stow.service';
import { buildLesionSr, newUid } from '../../src/domains/medical/sr/lesion-sr.util';
import { srSeries, uuidUid } from '../../src/domains/medical/sr/sr-series.util';
import { SR_FINDINGS, SR_OPTIONS, SR_SOURCE } from '../fixtures/sr-fixtures';

interface Code {
  CodeValue: string;
  CodingSchemeDesignator: string;
  CodeMeaning: string;
}
interface SopRef {
  ReferencedSOPClassUID: string;
  ReferencedSOPInstanceUID: string;
  ReferencedFrameNumber?: number | string;
}
/** The naturalized shape of the content items this SR uses. */
interface Item {
  RelationshipType?: string;
  ValueType: string;
  ConceptNameCodeSequence?: Code[];
  ConceptCodeSequence?: Code[];
  ContentTemplateSequence?: Array<{ MappingResource: string; TemplateIdentifier: string }>;
  ContentSequence?: Item[];
  TextValue?: string;
  UID?: string;
  GraphicType?: string;
  GraphicData?: number[];
  ReferencedSOPSequence?: SopRef[];
  MeasuredValueSequence?: Array<{
    NumericValue: number | string;
    FloatingPointValue?: number;
    MeasurementUnitsCodeSequence: Code[];
  }>;
}
type Document = Item & Record<string, unknown>;

const US_IMAGE = '1.2.840.10008.5.1.4.1.1.6.1';
const SOURCE = SR_SOURCE;
const FINDINGS = SR_FINDINGS;
const OPTIONS = SR_OPTIONS;

function parse(bytes: ArrayBuffer): { meta: Record<string, unknown>; doc: Document } {
  const file = data.DicomMessage.readFile(bytes);
  return {
    meta: data.DicomMetaDictionary.naturalizeDataset(file.meta),
    doc: data.DicomMetaDictionary.naturalizeDataset(file.dict) as unknown as Document,
  };
}

/** An item's attributes without dcmjs's bookkeeping. */
const fields = (item: object | undefined): Record<string, unknown> => {
  const { _vrMap, ...rest } = { ...item } as Record<string, unknown>;
  return rest;
};
const concept = (item: Item): string | undefined => item.ConceptNameCodeSequence?.[0]?.CodeValue;
const children = (item: Item, code?: string): Item[] =>
  (item.ContentSequence ?? []).filter((c) => code === undefined || concept(c) === code);
function only(item: Item, code: string): Item {
  const found = children(item, code);
  assert.equal(found.length, 1, `one (${code}) under (${concept(item)})`);
  return found[0];
}
const codeOf = (item: Item): [string, string] => {
  const c = item.ConceptCodeSequence?.[0];
  return [c?.CodeValue ?? '', c?.CodingSchemeDesignator ?? ''];
};
const numOf = (item: Item): [number, string] => {
  const m = item.MeasuredValueSequence?.[0];
  return [Number(m?.NumericValue), m?.MeasurementUnitsCodeSequence[0].CodeValue ?? ''];
};
const UID_2_25 = /^2\.25\.(0|[1-9][0-9]*)$/;

describe('medical: lesion findings as a TID 1500 Comprehensive SR', () => {
  it('is a Comprehensive SR in the source study, in its SR series, with the source patient and study', () => {
    const { meta, doc } = parse(buildLesionSr(SOURCE, FINDINGS, OPTIONS));
    assert.equal(meta.TransferSyntaxUID, '1.2.840.10008.1.2.1');
    assert.equal(meta.MediaStorageSOPClassUID, '1.2.840.10008.5.1.4.1.1.88.33');
    assert.equal(meta.MediaStorageSOPInstanceUID, doc.SOPInstanceUID);
    assert.equal(doc.SOPClassUID, '1.2.840.10008.5.1.4.1.1.88.33');
    assert.equal(doc.Modality, 'SR');
    assert.equal(doc.StudyInstanceUID, SOURCE.studyInstanceUID);
    for (const uid of [doc.SeriesInstanceUID, doc.SOPInstanceUID]) {
      assert.match(String(uid), UID_2_25);
      assert.ok(String(uid).length <= 64);
    }
    assert.notEqual(doc.SeriesInstanceUID, SOURCE.seriesInstanceUID);
    assert.notEqual(doc.SOPInstanceUID, SOURCE.sopInstanceUID);
    assert.equal(String(doc.PatientName), 'Doe^Jane');
    assert.equal(doc.PatientID, 'P-0001');
    assert.equal(doc.PatientBirthDate, '19700101');
    assert.equal(doc.PatientSex, 'F');
    assert.equal(doc.StudyDate, '20250301');
    assert.equal(doc.StudyTime, '093000');
    assert.equal(doc.AccessionNumber, 'ACC-1');
    assert.equal(doc.StudyID, 'S-1');
    // Absent in the source: present and empty (type 2).
    assert.deepEqual(doc.ReferringPhysicianName, []);
    assert.equal(doc.SpecificCharacterSet, undefined); // all ASCII: the default repertoire
    assert.equal(doc.ContentDate, '20250304');
    assert.equal(doc.ContentTime, '050607');
    assert.equal(doc.CompletionFlag, 'COMPLETE');
    assert.equal(doc.VerificationFlag, 'UNVERIFIED');
    assert.equal(Number(doc.SeriesNumber), 9901);
    assert.equal(doc.SeriesInstanceUID, OPTIONS.series.seriesInstanceUID, 'the series it is given');
    assert.equal(Number(doc.InstanceNumber), OPTIONS.series.instanceNumber);
    assert.equal(doc.Manufacturer, 'regulated-inference-gateway');
    assert.equal(doc.ManufacturerModelName, 'breast-us-lesion');
    assert.equal(doc.SoftwareVersions, '3.1.0');

    const evidence = doc.CurrentRequestedProcedureEvidenceSequence as Array<{
      StudyInstanceUID: string;
      ReferencedSeriesSequence: Array<{ SeriesInstanceUID: string; ReferencedSOPSequence: SopRef[] }>;
    }>;
    assert.equal(evidence.length, 1);
    assert.equal(evidence[0].StudyInstanceUID, SOURCE.studyInstanceUID);
    assert.equal(evidence[0].ReferencedSeriesSequence[0].SeriesInstanceUID, SOURCE.seriesInstanceUID);
    assert.deepEqual(fields(evidence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]), {
      ReferencedSOPClassUID: US_IMAGE,
      ReferencedSOPInstanceUID: SOURCE.sopInstanceUID,
    });
  });

  it('works out one SR series per study and model version, and a number per source image, from a keyed hash', () => {
    const hash = (parts: readonly string[]) => createHmac('sha256', 'secret').update(parts.join('\0')).digest('hex');
    const model = { name: 'breast-us-lesion', version: '3' };
    const of = (study: string, image: string, m = model) => srSeries(hash, study, image, m);
    const a = of('1.2.3', '1.2.3.4.1');
    assert.deepEqual(of('1.2.3', '1.2.3.4.1'), a, 'the same for the same study and image, whenever worked out');
    assert.equal(of('1.2.3', '1.2.3.4.2').seriesInstanceUID, a.seriesInstanceUID, 'another image of the study');
    assert.notEqual(of('1.2.3', '1.2.3.4.2').instanceNumber, a.instanceNumber);
    assert.notEqual(of('1.2.4', '1.2.3.4.1').seriesInstanceUID, a.seriesInstanceUID, 'another study');
    assert.notEqual(of('1.2.3', '1.2.3.4.1', { ...model, version: '4' }).seriesInstanceUID, a.seriesInstanceUID);
    const other = srSeries(
      (p) => createHmac('sha256', 'other').update(p.join('\0')).digest('hex'),
      '1.2.3',
      '1.2.3.4.1',
      model,
    );
    assert.notEqual(other.seriesInstanceUID, a.seriesInstanceUID, 'under another secret');
    // A version 8 UUID's value under 2.25, at most 64 characters; numbers in IS's 1..2^31-1.
    for (let i = 0; i < 200; i++) {
      const { seriesInstanceUID, instanceNumber } = of(`1.2.${i}`, `1.2.${i}.1`);
      assert.match(seriesInstanceUID, UID_2_25);
      const hex = BigInt(seriesInstanceUID.slice(5)).toString(16).padStart(32, '0');
      assert.equal(hex[12], '8', 'version 8');
      assert.ok(['8', '9', 'a', 'b'].includes(hex[16]), 'variant 10');
      assert.ok(Number.isInteger(instanceNumber) && instanceNumber >= 1 && instanceNumber <= 2 ** 31 - 1);
    }
    assert.equal(uuidUid('f'.repeat(32)), `2.25.${BigInt('0xffffffffffff8fffbfffffffffffffff').toString()}`);
    assert.throws(
      () => buildLesionSr(SOURCE, FINDINGS, { ...OPTIONS, series: { ...OPTIONS.series, instanceNumber: 2 ** 31 } }),
      /instanceNumber/,
    );
  });

  it('has the TID 1500 root, language, device observer, procedure and image library', () => {
    const { doc } = parse(buildLesionSr(SOURCE, FINDINGS, OPTIONS));
    assert.equal(doc.ValueType, 'CONTAINER');
    assert.equal(concept(doc), '126000');
    assert.deepEqual(fields(doc.ContentTemplateSequence?.[0]), {
      MappingResource: 'DCMR',
      MappingResourceUID: '1.2.840.10008.8.1.1',
      TemplateIdentifier: '1500',
    });
    assert.deepEqual(codeOf(only(doc, '121049')), ['en-US', 'RFC5646']);
    const observerType = only(doc, '121005');
    assert.equal(observerType.RelationshipType, 'HAS OBS CONTEXT');
    assert.deepEqual(codeOf(observerType), ['121007', 'DCM']);
    assert.equal(only(doc, '121012').UID, OPTIONS.deviceObserverUID);
    assert.equal(only(doc, '121013').TextValue, 'regulated-inference-gateway');
    assert.deepEqual(codeOf(only(doc, '121058')), ['47079000', 'SCT']);

    const library = only(only(doc, '111028'), '126200');
    const [entry] = children(library);
    assert.equal(entry.ValueType, 'IMAGE');
    assert.equal(entry.ReferencedSOPSequence?.[0].ReferencedSOPInstanceUID, SOURCE.sopInstanceUID);
    assert.equal(entry.ReferencedSOPSequence?.[0].ReferencedSOPClassUID, US_IMAGE);
  });

  it('holds one measurement group per finding with its box, probability and sizes', () => {
    const { doc } = parse(buildLesionSr(SOURCE, FINDINGS, OPTIONS));
    const groups = children(only(doc, '126010'));
    assert.equal(groups.length, FINDINGS.length);
    const trackingUids = new Set<string>();

    groups.forEach((group, i) => {
      assert.equal(concept(group), '125007');
      assert.equal(group.ContentTemplateSequence?.[0].TemplateIdentifier, '1410');
      assert.equal(only(group, '112039').TextValue, `lesion ${i + 1}`);
      const trackingUid = only(group, '112040').UID ?? '';
      assert.match(trackingUid, UID_2_25);
      trackingUids.add(trackingUid);
      const finding = only(group, '121071');
      assert.equal(finding.RelationshipType, 'HAS CONCEPT MOD');
      assert.deepEqual(codeOf(finding), ['52988006', 'SCT']);
      assert.equal(only(group, '111001').TextValue, 'breast-us-lesion');
      assert.equal(only(group, '111003').TextValue, '3.1.0');

      // The closed outline of pixels [x, x+w) x [y, y+h), as column/row pairs.
      const region = only(group, '111030');
      const { x, y, width: w, height: h } = FINDINGS[i].box;
      assert.equal(region.ValueType, 'SCOORD');
      assert.equal(region.GraphicType, 'POLYLINE');
      assert.deepEqual(Array.from(region.GraphicData ?? []), [x, y, x + w, y, x + w, y + h, x, y + h, x, y]);
      const [selectedFrom] = children(region);
      assert.equal(selectedFrom.RelationshipType, 'SELECTED FROM');
      assert.equal(selectedFrom.ValueType, 'IMAGE');
      const ref = selectedFrom.ReferencedSOPSequence?.[0];
      assert.equal(ref?.ReferencedSOPInstanceUID, SOURCE.sopInstanceUID);
      assert.equal(ref?.ReferencedSOPClassUID, US_IMAGE);
      const frame = FINDINGS[i].frameNumber;
      assert.equal(ref?.ReferencedFrameNumber === undefined ? undefined : Number(ref.ReferencedFrameNumber), frame);
    });
    assert.equal(trackingUids.size, FINDINGS.length);

    const [calibrated, uncalibrated] = groups;
    assert.deepEqual(numOf(only(calibrated, 'LESION-PROB')), [0.875, '1']);
    assert.deepEqual(numOf(only(calibrated, '42798000')), [24.75, 'mm2']);
    assert.deepEqual(numOf(only(calibrated, '103355008')), [4.5, 'mm']);
    assert.deepEqual(numOf(only(calibrated, '121207')), [6, 'mm']);
    assert.equal(children(calibrated, 'AREA-PX').length, 0);

    // No pixel spacing: no mm, only the pixel count under the local code.
    assert.deepEqual(numOf(only(uncalibrated, 'AREA-PX')), [48, '{pixels}']);
    assert.equal(children(uncalibrated, '42798000').length, 0);
    // 1/3 (18 characters) does not fit DS's 16 characters: rounded there, exact in FloatingPointValue.
    const probability = only(uncalibrated, 'LESION-PROB').MeasuredValueSequence?.[0];
    assert.ok(String(probability?.NumericValue).length <= 16);
    assert.equal(probability?.FloatingPointValue, FINDINGS[1].lesionProbability);
  });

  it('adds the image-level malignancy probability as its own group inferred from the source', () => {
    const { doc } = parse(buildLesionSr(SOURCE, FINDINGS, { ...OPTIONS, malignancyProbability: 0.2 }));
    const groups = children(only(doc, '126010'));
    assert.equal(groups.length, FINDINGS.length + 1);
    const imageLevel = groups[groups.length - 1];
    assert.equal(imageLevel.ContentTemplateSequence?.[0].TemplateIdentifier, '1501');
    const probability = only(imageLevel, '111047');
    assert.deepEqual(numOf(probability), [0.2, '1']);
    const [source] = children(probability, '121112');
    assert.equal(source.RelationshipType, 'INFERRED FROM');
    assert.equal(source.ReferencedSOPSequence?.[0].ReferencedSOPInstanceUID, SOURCE.sopInstanceUID);
  });

  it('reports no findings as an empty measurements container and a plain statement', () => {
    const { doc } = parse(buildLesionSr(SOURCE, [], OPTIONS));
    assert.equal(children(only(doc, '126010')).length, 0);
    assert.equal(only(only(doc, 'C0034375'), '121071').TextValue, 'No lesion detected');
    assert.equal(doc.CompletionFlag, 'COMPLETE');
  });

  it('declares UTF-8 only when some text needs it', () => {
    const source = { ...SOURCE, patient: { ...SOURCE.patient, PatientName: 'Müller^Zoë' } };
    const { doc } = parse(buildLesionSr(source, FINDINGS, OPTIONS));
    assert.equal(doc.SpecificCharacterSet, 'ISO_IR 192');
    assert.equal(String(doc.PatientName), 'Müller^Zoë');
  });

  it('writes nothing to stdout or stderr and leaves dcmjs logging as it was', () => {
    const written: string[] = [];
    const out = process.stdout.write.bind(process.stdout);
    const err = process.stderr.write.bind(process.stderr);
    const capture = (chunk: string | Uint8Array): boolean => (written.push(String(chunk)), true);
    const before = log.getLevel();
    process.stdout.write = capture;
    process.stderr.write = capture;
    try {
      buildLesionSr(SOURCE, FINDINGS, { ...OPTIONS, malignancyProbability: 0.3 });
      buildLesionSr(SOURCE, [], OPTIONS);
      assert.deepEqual(written, []);
      log.warn('capture check'); // proves a dcmjs message would have been seen here
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
    }
    assert.deepEqual(written, ['capture check\n']);
    assert.equal(log.getLevel(), before);
  });

  it('refuses inputs that would make an invalid SR, without echoing patient data', () => {
    assert.throws(
      () => buildLesionSr(SOURCE, [{ ...FINDINGS[0], lesionProbability: 1.2 }], OPTIONS),
      /findings\[0\]\.lesionProbability must be within 0\.\.1/,
    );
    assert.throws(
      () => buildLesionSr(SOURCE, [{ ...FINDINGS[0], box: { x: 0, y: 0, width: 0, height: 5 } }], OPTIONS),
      /findings\[0\]\.box/,
    );
    assert.throws(() => buildLesionSr(SOURCE, [{ ...FINDINGS[0], frameNumber: 0 }], OPTIONS), /frameNumber/);
    assert.throws(() => buildLesionSr({ ...SOURCE, sopInstanceUID: '1.2.03' }, FINDINGS, OPTIONS), /sopInstanceUID/);
    assert.throws(
      () => buildLesionSr(SOURCE, FINDINGS, { ...OPTIONS, model: { name: 'a\\b', version: '1' } }),
      /options\.model\.name/,
    );
  });

  it('leaves a copied patient or study value empty when it does not fit its VR, instead of failing', () => {
    const secret = 'SECRET-ID-'.repeat(7);
    const source = {
      ...SOURCE,
      patient: {
        PatientName: 'Doe^Jane',
        PatientID: secret,
        PatientBirthDate: '1970-01-01',
        PatientSex: 'FEMALE_SEX_TOO_LONG',
      },
      study: { StudyDate: '20250301', StudyTime: '9:30', AccessionNumber: 'ACC-12345678901234', StudyID: 'S\\1' },
    };
    const bytes = buildLesionSr(source, FINDINGS, OPTIONS);
    assert.ok(!Buffer.from(bytes).includes('SECRET'), 'the over-long PatientID is not written, not even cut');
    const { doc } = parse(bytes);
    for (const keyword of ['PatientID', 'PatientBirthDate', 'PatientSex', 'StudyTime', 'AccessionNumber', 'StudyID']) {
      assert.ok(keyword in doc, `${keyword} present (type 2)`);
      assert.ok([undefined, ''].includes(([] as unknown[]).concat(doc[keyword])[0] as string), `${keyword} empty`);
    }
    assert.equal(String(doc.PatientName), 'Doe^Jane', 'the values that fit are kept');
    assert.equal(doc.StudyDate, '20250301');
    assert.equal(doc.StudyInstanceUID, SOURCE.studyInstanceUID);
  });

  it("states the source's timezone offset and writes its own dates and times in it, or states none", () => {
    // OPTIONS.now is 2025-03-04T05:06:07Z; the source's study was at 09:30 of its own local time.
    const at = (offset: string | undefined): Document =>
      parse(buildLesionSr({ ...SOURCE, study: { ...SOURCE.study, TimezoneOffsetFromUTC: offset } }, FINDINGS, OPTIONS))
        .doc;
    const east = at('+0530');
    assert.equal(east.TimezoneOffsetFromUTC, '+0530');
    assert.deepEqual([east.ContentDate, east.ContentTime], ['20250304', '103607']);
    assert.deepEqual([east.InstanceCreationDate, east.InstanceCreationTime], ['20250304', '103607']);
    assert.deepEqual([east.SeriesDate, east.SeriesTime], [undefined, undefined], 'the series holds other SRs too');
    assert.deepEqual([east.StudyDate, east.StudyTime], ['20250301', '093000'], 'the study stays in its own offset');
    const west = at('-0600');
    assert.equal(west.TimezoneOffsetFromUTC, '-0600');
    assert.deepEqual([west.ContentDate, west.ContentTime], ['20250303', '230607'], 'the day before, there');
    assert.equal(at('+0000').ContentTime, '050607');
    // No offset, or one that is none (out of range, -0000, malformed): the SR claims none for the study's times.
    for (const offset of [undefined, '-0000', '+1500', '+0560', '0400', ' -0400', '-04:00']) {
      const doc = at(offset);
      assert.equal(doc.TimezoneOffsetFromUTC, undefined, String(offset));
      assert.deepEqual([doc.ContentDate, doc.ContentTime], ['20250304', '050607'], String(offset));
      assert.deepEqual([doc.StudyDate, doc.StudyTime], ['20250301', '093000'], String(offset));
    }
  });

  it('writes the data set in the transfer syntax asked for, named in its file meta', () => {
    const options = { ...OPTIONS, malignancyProbability: 0.2 };
    // UIDs made per SR aside, every transfer syntax holds the same document.
    const sameUids = (doc: Document): string => JSON.stringify(doc).replace(/2\.25\.[0-9]+/g, '2.25.x');
    const explicit = buildLesionSr(SOURCE, FINDINGS, options);
    const reference = parse(explicit);
    assert.equal(reference.meta.TransferSyntaxUID, '1.2.840.10008.1.2.1', 'explicit VR little endian by default');
    for (const ts of ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2', '1.2.840.10008.1.2.1.99'] as const) {
      const bytes = Buffer.from(buildLesionSr(SOURCE, FINDINGS, { ...options, transferSyntax: ts }));
      const { meta, doc } = parse(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
      assert.equal(meta.TransferSyntaxUID, ts);
      assert.equal(sameUids(doc), sameUids(reference.doc), ts);
      const dataset = bytes.subarray(144 + bytes.readUInt32LE(140));
      // The first element is (0008,0005) or (0008,0012): explicit VR spells its VR after the tag, implicit does not.
      if (ts === '1.2.840.10008.1.2') {
        assert.equal(dataset.readUInt16LE(0), 0x0008);
        assert.notEqual(dataset.toString('latin1', 4, 6), 'DA');
        assert.equal(dataset.readUInt32LE(4), 8, 'InstanceCreationDate: a 4-byte length, no VR');
      } else if (ts === '1.2.840.10008.1.2.1') {
        assert.equal(dataset.toString('latin1', 4, 6), 'DA');
      } else {
        assert.equal(dataset.length % 2, 0, 'the deflated stream is padded to an even length');
        const inflated = inflateRawSync(dataset);
        assert.ok(dataset.length < inflated.length / 2, `deflated: ${dataset.length} of ${inflated.length} bytes`);
        assert.equal(inflated.toString('latin1', 4, 6), 'DA', 'deflate raw of explicit VR little endian');
        const plain = Buffer.from(explicit);
        // Each SR's UIDs are made anew (UUID-derived, of varying length): counted aside, with their even-length pad.
        const withoutUids = (b: Buffer): number =>
          b.length - (b.toString('latin1').match(/2\.25\.[0-9]+\0?/g) ?? []).join('').length;
        const plainDataset = plain.subarray(144 + plain.readUInt32LE(140));
        assert.equal(withoutUids(inflated), withoutUids(plainDataset), 'the explicit data set, no less');
      }
    }
    assert.throws(
      () => buildLesionSr(SOURCE, FINDINGS, { ...options, transferSyntax: '1.2.840.10008.1.2.2' as never }),
      /options\.transferSyntax 1\.2\.840\.10008\.1\.2\.2 is not one the SR is written in/,
    );
  });

  it('makes UUID-derived UIDs under 2.25 or a given root', () => {
    const a = newUid();
    assert.match(a, UID_2_25);
    assert.ok(BigInt(a.slice(5)) < 2n ** 128n);
    assert.notEqual(a, newUid());
    assert.match(newUid('1.2.826.0.1.3680043.10'), /^1\.2\.826\.0\.1\.3680043\.10\.[1-9][0-9]*$/);
    assert.throws(() => newUid('1.2.'), /not a dotted decimal UID/);
    assert.throws(() => newUid('1.2.826.0.1.3680043.10.543.2.1'), /64 characters/);
  });
});

describe('medical: which answer the Accept header asks for', () => {
  it('reads quality values, the most specific range of each type, and the order at equal quality', () => {
    const cases: Array<[string | undefined, boolean]> = [
      [undefined, false],
      ['application/json', false],
      ['application/dicom', true],
      ['*/*', false],
      ['application/*', false],
      ['application/dicom, application/json', true],
      ['application/json, application/dicom', false],
      ['application/dicom;q=0', false],
      ['application/dicom;q=0.1, application/json;q=1', false],
      ['application/json;q=0.5, application/dicom', true],
      ['application/dicom; charset=binary; q=0.9, */*;q=0.8', true],
      ['*/*;q=0.9, application/dicom;q=0.5', false],
      ['application/*;q=0, application/dicom', true],
      ['text/html', false],
      ['APPLICATION/DICOM', true],
      ['application/dicom;q=0.125', true],
      ['application/dicom;q=1.000', true],
    ];
    for (const [accept, dicom] of cases) assert.equal(answerForm(accept).form === 'sr', dicom, String(accept));
    // A q that is no qvalue was read as 0 (abc: JSON came back) or 1 (1.5): now 400 naming Accept.
    for (const q of ['abc', '1.5', '-0', '0.1234', '', '.5', '1.01']) {
      assert.throws(
        () => answerForm(`application/dicom;q=${q}`),
        (error: unknown) =>
          error instanceof AppError &&
          error.code === 'VALIDATION_FAILED' &&
          error.fields[0].field === 'Accept' &&
          error.fields[0].reason.startsWith(`q=${JSON.stringify(q)} is not a quality value`),
        q,
      );
    }
  });

  it('writes the SR in the transfer syntax the transfer-syntax parameter names, the first acceptable by quality', () => {
    const [EXPLICIT, IMPLICIT, DEFLATED] = ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2', '1.2.840.10008.1.2.1.99'];
    const dicom = (ts: string): string => `application/dicom; transfer-syntax=${ts}`;
    const cases: Array<[string, string | undefined]> = [
      ['application/dicom', EXPLICIT],
      [dicom(EXPLICIT), EXPLICIT],
      [dicom(IMPLICIT), IMPLICIT],
      [dicom(DEFLATED), DEFLATED],
      [dicom('*'), EXPLICIT],
      [`application/dicom;transfer-syntax="${IMPLICIT}"`, IMPLICIT],
      [`Application/DICOM; Transfer-Syntax=${DEFLATED}`, DEFLATED],
      [`${dicom(IMPLICIT)};q=0.5, ${dicom(DEFLATED)}`, DEFLATED],
      [`${dicom(IMPLICIT)};q=0.5, ${dicom(DEFLATED)};q=0.5`, IMPLICIT],
      [`${dicom('1.2.840.10008.1.2.4.50')}, ${dicom(IMPLICIT)};q=0.4`, IMPLICIT],
      [`${dicom(IMPLICIT)};q=0.5, application/dicom`, EXPLICIT],
      [`${dicom(EXPLICIT)};q=0, ${dicom('*')}`, IMPLICIT],
      [`${dicom(EXPLICIT)};q=0, ${dicom(IMPLICIT)};q=0, ${dicom('*')};q=0.3`, DEFLATED],
      [`${dicom(DEFLATED)};q=0.5, application/json`, undefined],
      [`${dicom(DEFLATED)}, application/json`, DEFLATED],
      [`${dicom('1.2.840.10008.1.2.4.50')}, application/json;q=0.1`, undefined],
      [`${dicom('1.2.840.10008.1.2.4.50')}, */*;q=0.1`, undefined],
      [`${dicom('1.2.840.10008.1.2.4.50')};q=0, text/html`, undefined],
    ];
    for (const [accept, ts] of cases) {
      const answer = answerForm(accept);
      assert.deepEqual(answer, ts ? { form: 'sr', transferSyntax: ts } : { form: 'json' }, accept);
    }
    assert.equal(answerContentType(answerForm(dicom(IMPLICIT))), `application/dicom; transfer-syntax=${IMPLICIT}`);
    assert.equal(answerContentType(answerForm('application/json')), 'application/json');
  });

  it('refuses with 406 naming Accept a header that asks for DICOM only in transfer syntaxes it cannot write', () => {
    const refusals: Array<[string, RegExp]> = [
      [
        'application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50',
        /^transfer-syntax 1\.2\.840\.10008\.1\.2\.4\.50 is/,
      ],
      ['application/dicom; transfer-syntax=1.2.840.10008.1.2.2', /^transfer-syntax 1\.2\.840\.10008\.1\.2\.2 is/],
      [
        'application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50, application/dicom;transfer-syntax=1.2.840.10008.1.2.4.90;q=0.5, text/html',
        /^transfer-syntax 1\.2\.840\.10008\.1\.2\.4\.50, 1\.2\.840\.10008\.1\.2\.4\.90 is/,
      ],
      [
        'application/dicom; transfer-syntax=<script>, application/json;q=0',
        /^transfer-syntax a value that is not a transfer syntax UID is/,
      ],
      ['application/dicom; transfer-syntax=, application/dicom;q=0', /not a transfer syntax UID/],
      // Digits and dots that are no UID by PS3.5 9.1 (isDicomUid, as for a study UID in a path) are not named back
      // either: an empty component, a leading zero, a dot at an end, more than 64 characters.
      ...['1..2', '01.2', '1.2.', '.1', `1.2.840.10008.${'1'.repeat(51)}`].map((ts): [string, RegExp] => [
        `application/dicom; transfer-syntax=${ts}`,
        /^transfer-syntax a value that is not a transfer syntax UID is/,
      ]),
      // One that is a UID of 64 characters is, beside one that is none.
      [
        `application/dicom; transfer-syntax=1.2.840.10008.${'1'.repeat(50)}, application/dicom; transfer-syntax=1..2`,
        new RegExp(
          `^transfer-syntax 1\\.2\\.840\\.10008\\.${'1'.repeat(50)}, a value that is not a transfer syntax UID is`,
        ),
      ],
    ];
    for (const [accept, reason] of refusals) {
      assert.throws(
        () => answerForm(accept),
        (error: unknown) => {
          assert.ok(error instanceof AppError, accept);
          assert.equal(error.code, 'NOT_ACCEPTABLE');
          assert.equal(error.fields.length, 1);
          assert.equal(error.fields[0].field, 'Accept');
          assert.match(error.fields[0].reason, reason, accept);
          for (const ts of [
            '1.2.840.10008.1.2.1 (Explicit VR Little Endian)',
            '1.2.840.10008.1.2 (Implicit VR Little Endian)',
            '1.2.840.10008.1.2.1.99 (Deflated Explicit VR Little Endian)',
          ]) {
            assert.ok(error.detail.includes(ts), `${accept}: ${error.detail}`);
            assert.ok(error.fields[0].reason.includes(ts), `${accept}: ${error.fields[0].reason}`);
          }
          assert.ok(!error.detail.includes('<script>'));
          return true;
        },
      );
    }
  });

  it('chooses a STOW store response type the same way, and none when the header accepts neither (406)', () => {
    const cases: Array<[string | undefined, string | undefined]> = [
      [undefined, 'application/dicom+json'],
      ['', 'application/dicom+json'],
      ['*/*', 'application/dicom+json'],
      ['application/*', 'application/dicom+json'],
      ['application/json', 'application/json'],
      ['application/json, application/dicom+json', 'application/json'],
      ['application/dicom+json;q=0, */*', 'application/json'],
      ['application/dicom+xml, application/dicom+json;q=0.2', 'application/dicom+xml'],
      ['application/dicom+xml;q=0.2, application/dicom+json', 'application/dicom+json'],
      ['application/dicom+xml', 'application/dicom+xml'],
      ['application/dicom+json;q=0, application/json;q=0, application/dicom+xml;q=0.1', 'application/dicom+xml'],
      ['multipart/related; type="application/dicom+xml"', undefined],
      ['application/dicom', undefined],
      ['*/*;q=0', undefined],
      ['application/*;q=0, text/html', undefined],
      ['application/dicom+json;q=0, application/json;q=0, */*', 'application/dicom+xml'],
      ['application/dicom+json;q=0, application/json;q=0, application/dicom+xml;q=0, */*', undefined],
    ];
    for (const [accept, type] of cases) {
      assert.equal(preferredMediaType(accept, STORE_RESPONSE_TYPES), type, String(accept));
    }
  });
});
