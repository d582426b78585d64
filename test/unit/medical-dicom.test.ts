import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as dicomParser from 'dicom-parser';
import { parseDicomImage } from '../../src/domains/medical/dicom/dicom-parse.util';
import { DicomRejected } from '../../src/domains/medical/dicom/dicom-rejected';
import { textDecoderFor } from '../../src/domains/medical/dicom/character-set.util';
import { decodeFrame, initialisePixelCodecs, selectFrames } from '../../src/domains/medical/dicom/pixel-decode.util';
import { deflatedBomb, rewriteDicom, withValueLength } from '../fixtures/dicom-crafted';
import { readdirSync } from 'node:fs';
import {
  DICOM_SKIP,
  dicomFile,
  localDicomFile,
  multipartRelated,
  rejectionOf,
  SHARED_DICOM,
  TEST_PARSE_LIMITS,
} from '../fixtures/dicom-files';
import {
  MultipartError,
  parseMultipartRelatedType,
  splitMultipart,
} from '../../src/domains/medical/stow/multipart-related.util';

const LIMITS = TEST_PARSE_LIMITS;
const local = localDicomFile;

/** A UID of the file meta group (0002,xxxx), read by the parser alone. */
function uidOf(file: Buffer, tag: string): string | undefined {
  return dicomParser.readPart10Header(file).string(`x${tag}`)?.trim();
}

function rejection(body: Buffer, limits: Parameters<typeof parseDicomImage>[1] = LIMITS): DicomRejected {
  return rejectionOf(() => parseDicomImage(body, limits), 'the file was accepted');
}

describe('medical: DICOM parsing and decoding', { skip: DICOM_SKIP }, () => {
  before(() => initialisePixelCodecs());

  it('decodes every lossless encoding of MR_small to exactly the same stored values', () => {
    const reference = Array.from(decodeFrame(parseDicomImage(dicomFile('MR_small.dcm'), LIMITS), 0).values);
    const variants: Array<[string, Buffer]> = [
      ['implicit VR little endian', dicomFile('MR_small_implicit.dcm')],
      ['explicit VR big endian', dicomFile('MR_small_bigendian.dcm')],
      ['RLE', dicomFile('MR_small_RLE.dcm')],
      ['JPEG-LS lossless', dicomFile('MR_small_jpeg_ls_lossless.dcm')],
      ['JPEG 2000 lossless', dicomFile('MR_small_jp2klossless.dcm')],
      ['deflated', local('MR_small_deflated.dcm')],
      ['JPEG lossless process 14', local('MR_small_jpeg_lossless_p14.dcm')],
      ['JPEG lossless SV1', local('MR_small_jpeg_lossless_sv1.dcm')],
    ];
    for (const [name, body] of variants) {
      const image = parseDicomImage(body, LIMITS);
      assert.deepEqual(Array.from(decodeFrame(image, 0).values), reference, name);
    }
  });

  it('reads 8-bit samples in OW words of a big endian file with each pair of bytes swapped, from any frame', () => {
    // 3x3, two frames of 9 samples (the second starts mid-word), samples 0 to 17; the same file in little endian.
    const samples = (name: string, frame: number): number[] =>
      Array.from(decodeFrame(parseDicomImage(local(name), LIMITS), frame).values);
    for (const name of ['US_8bit_ow_2frames_le.dcm', 'US_8bit_ow_2frames_bigendian.dcm']) {
      assert.deepEqual(samples(name, 0), [0, 1, 2, 3, 4, 5, 6, 7, 8], name);
      assert.deepEqual(samples(name, 1), [9, 10, 11, 12, 13, 14, 15, 16, 17], name);
    }
  });

  it("reads a big endian PALETTE COLOR image's 8-bit palette entries, two a swapped OW word, as in little endian", () => {
    const rgb = (name: string): number[] => Array.from(decodeFrame(parseDicomImage(local(name), LIMITS), 0).values);
    const little = rgb('SC_palette_le.dcm');
    assert.equal(little.length, 100 * 100 * 3);
    assert.deepEqual(rgb('SC_palette_bigendian.dcm'), little);
  });

  it('decodes lossy JPEG (12-bit extended, 8-bit baseline colour) and multi-frame encapsulated data', () => {
    const nm = parseDicomImage(dicomFile('JPEG-lossy.dcm'), LIMITS);
    assert.equal(nm.bitsStored, 12);
    const values = decodeFrame(nm, 0).values;
    assert.equal(values.length, 1024 * 256);
    assert.ok(
      Array.from(values).every((v) => v >= 0 && v <= 4095),
      '12-bit values',
    );
    const colour = decodeFrame(parseDicomImage(dicomFile('SC_rgb_jpeg_dcmtk.dcm'), LIMITS), 0);
    assert.equal(colour.photometric, 'RGB', 'YBR_FULL JPEG comes out as RGB');
    assert.equal(colour.values.length, 100 * 100 * 3);
    const us = parseDicomImage(dicomFile('US_multiframe_jpeg_baseline.dcm'), LIMITS);
    assert.equal(us.numberOfFrames, 8);
    // 44 fragments, no offset table: frames found by their JPEG start-of-image markers.
    assert.equal(decodeFrame(us, 7).values.length, 320 * 240 * 3);
    const rle = parseDicomImage(dicomFile('emri_small_RLE.dcm'), LIMITS);
    assert.equal(decodeFrame(rle, 9).values.length, 64 * 64);
  });

  it('reads rescale, window and calibration attributes', () => {
    const ct = parseDicomImage(dicomFile('CT_small.dcm'), LIMITS);
    assert.equal(ct.rescaleSlope, 1);
    assert.equal(ct.rescaleIntercept, -1024);
    assert.equal(ct.pixelRepresentation, 1);
    assert.equal(ct.pixelSpacing?.length, 2);
    const us = parseDicomImage(dicomFile('US_multiframe_jpeg_baseline.dcm'), LIMITS);
    assert.ok(us.ultrasoundRegions.length >= 1);
    assert.equal(us.ultrasoundRegions[0].minY0, 16);
  });

  it('refuses a whole instance followed by bytes that are no data element, saying so, not that it is truncated', () => {
    // DCMTK's dcmdump and dcm4che's DicomInputStream refuse these too; padding is an element, (FFFC,FFFC).
    const cases: Array<[string, string, Buffer, RegExp]> = [
      ['US1_UNCR.dcm', '(FFFC,FFFC)', Buffer.from('JUNKJUNKJUNK\x01\x02\x03', 'latin1'), /does not follow/],
      ['US1_UNCR.dcm', '(FFFC,FFFC)', Buffer.from('\r\n'), /too few for an element header/],
      ['US_multiframe_jpeg_baseline.dcm', '(7FE0,0010) PixelData', Buffer.alloc(100), /does not follow/],
      [
        'MR_small_bigendian.dcm',
        '(7FE0,0010) PixelData',
        Buffer.from('\xff\xff\xff\xffXYZW', 'latin1'),
        /no value representation/,
      ],
    ];
    for (const [name, last, junk, why] of cases) {
      const file = dicomFile(name);
      const refused = rejection(Buffer.concat([file, junk]));
      assert.equal(refused.reason, 'MALFORMED', name);
      assert.doesNotMatch(refused.detail, /truncated/, name);
      assert.ok(refused.detail.includes(`last element ${last}`), refused.detail);
      assert.ok(refused.detail.includes(`${junk.length} more byte(s) follow that are no data element`), refused.detail);
      assert.match(refused.detail, why, name);
      assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'), 'named by its file meta');
    }
    // Implicit VR too, whose elements dicom-parser read past the end of the data: the junk was taken as an element.
    const implicit = rejection(Buffer.concat([dicomFile('MR_small_implicit.dcm'), Buffer.from('JUNKJUNKJUNK')]));
    assert.match(implicit.detail, /last element \(7FE0,0010\) PixelData, which ends at byte \d+, but 12 more byte/);
    // PixelData one byte short: what follows is read out of step, with a VR of two odd bytes; its length is odd.
    const file = dicomFile('US1_UNCR.dcm');
    const pixelData = file.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42]));
    const short = Buffer.from(file);
    short.writeUInt32LE(file.readUInt32LE(pixelData + 8) - 1, pixelData + 8);
    assert.match(
      rejection(short).detail,
      /last element \(7FE0,0010\) PixelData \(its length, 921599, is odd: PS3\.5 7\.1\.1 makes it even\), which ends at byte \d+, but \d+ more byte\(s\) follow that are no data element \(they name no value representation\)/,
    );
    // Eight zero bytes read as an element, as DCMTK reads them: the instance stands.
    assert.equal(parseDicomImage(Buffer.concat([dicomFile('US1_UNCR.dcm'), Buffer.alloc(8)]), LIMITS).rows, 480);
  });

  it('refuses a truncated implicit VR file as truncated, naming the element cut short, before any frame is decoded', () => {
    const whole = dicomFile('MR_small_implicit.dcm');
    const cut = rejection(whole.subarray(0, whole.length - 100));
    assert.equal(cut.reason, 'MALFORMED');
    assert.match(
      cut.detail,
      /^the file is truncated: the element \(7FE0,0010\) PixelData runs past the end of the data/,
    );
    assert.equal(cut.sop?.instanceUID, uidOf(whole, '00020003'));
  });

  it('refuses a deflated file cut short as truncated, not as a data set that cannot be parsed', () => {
    // Found in the sweep: zlib's own words came through, "the data set cannot be parsed (unexpected end of file)".
    const whole = local('MR_small_deflated.dcm');
    const cut = rejection(whole.subarray(0, whole.length - 500));
    assert.equal(cut.reason, 'MALFORMED');
    assert.match(
      cut.detail,
      /^the file is truncated: its deflated data set \(transfer syntax 1\.2\.840\.10008\.1\.2\.1\.99\) ends before the deflate stream does$/,
    );
    assert.equal(cut.sop?.instanceUID, uidOf(whole, '00020003'));
  });

  it("refuses bytes after a deflated data set's deflate stream, naming them, but reads past one NUL of padding", () => {
    // Found in review: zlib stops at the stream's end and the rest was ignored; other transfer syntaxes refuse them.
    const whole = local('MR_small_deflated.dcm');
    for (const junk of [Buffer.from('JUNKJUNKJUNK'), Buffer.from('\r\n'), Buffer.alloc(2), whole]) {
      const refused = rejection(Buffer.concat([whole, junk]));
      assert.equal(refused.reason, 'MALFORMED');
      assert.equal(
        refused.detail,
        `the deflated data set (transfer syntax 1.2.840.10008.1.2.1.99, Deflated Explicit VR Little Endian) ends with its deflate stream at byte ${whole.length}, but ${junk.length} more byte(s) follow it: the data set is the whole deflate stream (PS3.5 A.5), and the only byte read past is one NUL, a stream's padding to an even length; bytes appended to an instance, or the rest of a multipart body behind a boundary missed, are not read past`,
      );
      assert.equal(refused.sop?.instanceUID, uidOf(whole, '00020003'));
    }
    // pydicom pads a deflate stream of odd length with one NUL byte.
    assert.equal(parseDicomImage(Buffer.concat([whole, Buffer.alloc(1)]), LIMITS).rows, 64);
    assert.equal(parseDicomImage(whole, LIMITS).rows, 64);
  });

  it('refuses a data set that is no deflate stream under the deflated transfer syntax naming TransferSyntaxUID', () => {
    // Found in the sweep: a file meta relabelled deflated gave zlib's words alone, "the data set cannot be parsed
    // (invalid stored block lengths)".
    const whole = local('MR_small_deflated.dcm');
    // An explicit VR data set under the deflated file's meta.
    const dataSetAt = (file: Buffer): number => 144 + dicomParser.readPart10Header(file).uint32('x00020000')!;
    const plain = dicomFile('MR_small.dcm');
    const relabelled = rejection(
      Buffer.concat([whole.subarray(0, dataSetAt(whole)), plain.subarray(dataSetAt(plain))]),
    );
    assert.equal(relabelled.reason, 'MALFORMED');
    assert.equal(relabelled.attribute, '(0002,0010) TransferSyntaxUID');
    assert.match(
      relabelled.detail,
      /^the data set is not a deflate stream \(zlib: [^)]+\), but the file meta information gives transfer syntax 1\.2\.840\.10008\.1\.2\.1\.99 \(Deflated Explicit VR Little Endian\): either the transfer syntax is wrong or the deflated data set is damaged$/,
    );
    assert.equal(relabelled.sop?.instanceUID, uidOf(whole, '00020003'));
  });

  it('refuses a file meta read out of step by a wrong length naming the element, not as having no transfer syntax', () => {
    // Found in the sweep: each was "the file meta information has no transfer syntax", though it has one.
    const whole = dicomFile('MR_small.dcm');
    const groupLength = Buffer.from(whole);
    groupLength.writeUInt16LE(3, 132 + 6);
    const short = rejection(groupLength);
    assert.equal(short.attribute, '(0002,0000) FileMetaInformationGroupLength');
    assert.equal(
      short.detail,
      'the file meta information cannot be read: its group length (0002,0000) (VR UL) has a value length of 3, which cannot be: it holds one UL value, of 4 bytes (PS3.10 7.1); the elements after it are read out of step, so (0002,0010) TransferSyntaxUID is not found',
    );
    const classUid = whole.indexOf(Buffer.from([2, 0, 2, 0, 0x55, 0x49]), 132);
    const longer = Buffer.from(whole);
    longer.writeUInt16LE(whole.readUInt16LE(classUid + 6) + 1, classUid + 6);
    const refused = rejection(longer);
    assert.equal(refused.reason, 'MALFORMED');
    assert.equal(refused.attribute, '(0002,0002) MediaStorageSOPClassUID');
    assert.match(
      refused.detail,
      /^the file meta information cannot be read past its element \(0002,0002\) MediaStorageSOPClassUID \(VR UI, value length 27\), which ends at byte \d+, where its group length \(0002,0000\) gives its end at byte \d+: that element's length or VR is wrong, or one before it/,
    );
  });

  it('refuses a file cut inside or just after its file meta group length as truncated, not with a string thrown', () => {
    // Found in the fuzz sweep (seed 482, MR_small_bigendian cut at byte 143): dicom-parser's own string came through,
    // "littleEndianByteArrayParser.readUint32: attempt to read past end of buffer", no DicomRejected.
    const whole = dicomFile('MR_small.dcm');
    for (const cut of [141, 142, 143, 144]) {
      const refused = rejection(whole.subarray(0, cut));
      assert.equal(refused.reason, 'MALFORMED', String(cut));
      assert.match(
        refused.detail,
        new RegExp(`^the file is truncated: it ends at byte ${cut}, inside the file meta information`),
      );
    }
  });

  it('refuses a whole file with one impossible element length naming the element and its length, not as truncated', () => {
    // Found in the sweep: each was "the file is truncated: an element runs past the end of the data (buffer overrun)".
    const rows = (name: string, length: number): Buffer => {
      const file = Buffer.from(dicomFile(name));
      if (name.includes('implicit')) file.writeUInt32LE(length, file.indexOf(Buffer.from([0x28, 0, 0x10, 0]), 132) + 4);
      else file.writeUInt16LE(length, file.indexOf(Buffer.from([0x28, 0, 0x10, 0, 0x55, 0x53]), 132) + 6);
      return file;
    };
    for (const [name, length] of [
      ['MR_small.dcm', 3],
      ['MR_small.dcm', 0],
      ['US1_UNCR.dcm', 3],
      ['MR_small_implicit.dcm', 0],
      // Found in review: in implicit VR the elements read out of step after it look in step (their tags rise) until
      // one runs past the data, which was all there was to blame: "the file is truncated: the element (C304,7A02) ...".
      ['MR_small_implicit.dcm', 1],
    ] as const) {
      const refused = rejection(rows(name, length));
      assert.equal(refused.reason, 'MALFORMED', name);
      assert.equal(refused.attribute, '(0028,0010) Rows', name);
      assert.equal(
        refused.detail,
        `the element (0028,0010) Rows has a value length of ${length}, which cannot be: the attribute holds one US value, of 2 bytes (PS3.3 C.7.6.3); the elements after it are read out of step, so the data set cannot be read (the file is not truncated, this length is wrong)`,
      );
    }
    for (const name of ['MR_small.dcm', 'MR_small_implicit.dcm']) {
      const file = Buffer.from(dicomFile(name));
      const tag = file.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]));
      file.writeUInt32LE(0xfffffff0, tag + (name.includes('implicit') ? 4 : 8));
      const refused = rejection(file);
      assert.equal(refused.attribute, '(7FE0,0010) PixelData', name);
      assert.match(
        refused.detail,
        /^\(7FE0,0010\) PixelData has a value length of 4294967280, which cannot be: it runs past the end of the data \(from byte \d+, \d+ bytes in all\), but the \d+ bytes after its header hold the 8192 its image attributes need; the file is not truncated, this length is wrong$/,
        name,
      );
      assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'), name);
    }
    // Any element of an odd length in implicit VR: Modality's 2 bytes read as 3.
    const implicit = Buffer.from(dicomFile('MR_small_implicit.dcm'));
    implicit.writeUInt32LE(3, implicit.indexOf(Buffer.from([0x08, 0, 0x60, 0, 2, 0, 0, 0]), 132) + 4);
    const modality = rejection(implicit);
    assert.equal(modality.attribute, '(0008,0060) Modality');
    assert.match(
      modality.detail,
      /^the element \(0008,0060\) Modality has a value length of 3, which cannot be: it is odd/,
    );
    // Cut short, the same file is still truncated.
    const whole = dicomFile('MR_small.dcm');
    assert.match(rejection(whole.subarray(0, whole.length - 2000)).detail, /^the file is truncated/);
  });

  it('refuses a data set read out of step into bytes that run past its end naming the last element read in step, not as truncated', () => {
    // Found in the fuzz sweep (the largest group of its damaged headers): a length put the elements after it out of
    // step, one of them ran past the end of the data, and the refusal was "the file is truncated: an element runs past
    // the end of the data (dicomParser:parseDicomDataSetExplicit: buffer overrun)", which it is not.
    for (const [name, end, next] of [
      ['MR_small.dcm', 458, '(0018,4955)'],
      ['MR_small_bigendian.dcm', 474, '(0018,5549)'],
    ] as const) {
      const file = withValueLength(dicomFile(name), 'x00080016', 28);
      const refused = rejection(file);
      assert.equal(refused.reason, 'MALFORMED', name);
      assert.equal(refused.attribute, '(0008,0016) SOPClassUID', name);
      assert.equal(
        refused.detail,
        `the data set cannot be read past its element (0008,0016) SOPClassUID (VR UI, value length 28), which ends at byte ${end}: the bytes after it read as the element ${next}, which is no data element (it names no value representation), so that element's length or the header after it is damaged and the elements after it are read out of step (the file is not truncated)`,
        name,
      );
      assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'), name);
    }
    // Each of MR_small's first elements two bytes long: never "truncated", never dicom-parser's words.
    for (const element of Object.values(dicomParser.parseDicom(dicomFile('MR_small.dcm')).elements)) {
      if (element.tag.startsWith('x0002') || element.dataOffset > 1000) continue;
      const refused = rejection(withValueLength(dicomFile('MR_small.dcm'), element.tag, element.length + 2));
      assert.doesNotMatch(refused.detail, /the file is truncated|dicomParser/, element.tag);
    }
  });

  it('refuses an element whose length runs past the end naming it, as a wrong length where the rest reads whole after its value', () => {
    // Found in the fuzz sweep: a StudyInstanceUID of 13,376 bytes was "the file is truncated: an element runs past
    // the end of the data (dicomParser:parseDicomDataSetExplicit: buffer overrun)" in explicit VR, and said truncated
    // in implicit VR too, though the elements after its 42 bytes are all there.
    for (const [name, at, vr] of [
      ['MR_small.dcm', 1012, ' (VR UI)'],
      ['MR_small_bigendian.dcm', 1028, ' (VR UI)'],
      ['MR_small_implicit.dcm', 1026, ''],
    ] as const) {
      const file = dicomFile(name);
      const wrong = rejection(withValueLength(file, 'x0020000d', 13376));
      assert.equal(wrong.reason, 'MALFORMED', name);
      assert.equal(wrong.attribute, '(0020,000D) StudyInstanceUID', name);
      assert.equal(
        wrong.detail,
        `the element (0020,000D) StudyInstanceUID${vr} at byte ${at} has a value length of 13376, which runs past the end of the data (${file.length} bytes in all), but the elements from byte ${at + 42} on, 42 bytes into that value, read whole to the end: this length is wrong (the file is not truncated)`,
        name,
      );
      // Cut inside that value: truncated, and the element named.
      const cut = rejection(file.subarray(0, at + 10));
      assert.equal(cut.attribute, '(0020,000D) StudyInstanceUID', name);
      assert.equal(
        cut.detail,
        `the file is truncated: the element (0020,000D) StudyInstanceUID${vr} runs past the end of the data (42 bytes from byte ${at}, ${at + 10} bytes in all)`,
        name,
      );
    }
  });

  it('refuses an element that runs past the end of its sequence item naming the sequence and the element, not as truncated', () => {
    // SC_rgb's (0008,2112) holds one item of 184 bytes; its (0008,1150) claiming 256 ran past it, and the refusal
    // was dicom-parser's "buffer overrun", said to be the file's truncation.
    const file = Buffer.from(dicomFile('SC_rgb_jpeg_dcmtk.dcm'));
    assert.equal(file.toString('latin1', 714, 720), '\x08\x00P\x11UI');
    file.writeUInt16LE(256, 720);
    const refused = rejection(file);
    assert.equal(refused.attribute, '(0008,2112)');
    assert.equal(
      refused.detail,
      "the sequence (0008,2112) at byte 694 cannot be read: the element (0008,1150) at byte 714, in its item that ends at byte 898, has a value length of 256, which runs past that item's end: this length, or the item's, is wrong",
    );
  });

  it('refuses a sequence of defined length that its items run past, at the top or nested, where dicom-parser read on', () => {
    // dicom-parser reads the whole of an item that begins inside its sequence and goes on after it: SC_rgb's
    // (0008,2112) at a length of 1 to 7 (no item fits) or its nested (0040,A170) at 4 were accepted.
    for (const length of [1, 4, 7]) {
      const file = Buffer.from(dicomFile('SC_rgb_jpeg_dcmtk.dcm'));
      assert.equal(file.toString('latin1', 694, 700), '\x08\x00\x12\x21SQ');
      file.writeUInt32LE(length, 702);
      const refused = rejection(file);
      assert.equal(refused.reason, 'MALFORMED');
      assert.equal(refused.attribute, '(0008,2112)');
      assert.equal(
        refused.detail,
        `the sequence (0008,2112) at byte 694 cannot be read: its value length is ${length}, which cannot be: its value is items, each beginning with an 8-byte item header (FFFE,E000) (PS3.5 7.5), so it is 0 or at least 8 bytes long; this length is wrong, and the elements after it are read out of step`,
      );
    }
    const nested = Buffer.from(dicomFile('SC_rgb_jpeg_dcmtk.dcm'));
    assert.equal(nested.toString('latin1', 820, 826), '\x40\x00\x70\xa1SQ');
    nested.writeUInt32LE(4, 828);
    const inner = rejection(nested);
    assert.equal(inner.reason, 'MALFORMED');
    assert.match(
      inner.detail,
      /^the sequence \(0040,A170\)[^ ]* at byte 820 cannot be read: its value length is 4, which cannot be/,
    );
  });

  it('refuses a file meta element that runs past the end of the data naming it, not in a ByteStream string', () => {
    // Found in the fuzz sweep: (0002,0012) or (0002,0013) of a length past the end, read after the transfer syntax,
    // put the data set's start past the end of the data, and the refusal was "the data set cannot be parsed
    // (dicomParser.ByteStream: parameter 'position' cannot be greater than or equal to 'byteArray' length)".
    const file = Buffer.from(dicomFile('MR_small.dcm'));
    assert.equal(file.toString('latin1', 274, 280), '\x02\x00\x12\x00UI');
    file.writeUInt16LE(0x3000, 280);
    const refused = rejection(file);
    assert.equal(refused.reason, 'MALFORMED');
    assert.equal(refused.attribute, '(0002,0012)');
    assert.equal(
      refused.detail,
      "the file meta information cannot be read: its element (0002,0012) (VR UI) at byte 282 has a value length of 12288, which runs past the end of the data (9830 bytes in all), where its group length (0002,0000) gives its end at byte 334: that element's length or VR is wrong (the file is not truncated)",
    );
    assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'));
    // The file cut inside that element's value is truncated inside its file meta.
    const cut = rejection(dicomFile('MR_small.dcm').subarray(0, 290));
    assert.equal(
      cut.detail,
      'the file is truncated: it ends at byte 290, inside the file meta information, which its group length (0002,0000) gives to end at byte 334',
    );
  });

  it("refuses a file cut inside an element's header as truncated there, naming the byte and the element, not in dicom-parser's words", () => {
    // Found in the fuzz sweep: "the file is truncated: an element runs past the end of the data
    // (littleEndianByteArrayParser.readUint16: attempt to read past end of buffer)", and "the file meta information
    // cannot be read (dicomParser.readFixedString: attempt to read past end of buffer)" for a cut inside the file meta.
    for (const [name, at, header] of [
      ['MR_small.dcm', 1488, '12-byte '],
      ['MR_small_bigendian.dcm', 1504, '12-byte '],
      ['MR_small_implicit.dcm', 1502, '8-byte '],
    ] as const) {
      const file = dicomFile(name);
      const inLength = rejection(file.subarray(0, at + 7));
      assert.equal(inLength.attribute, '(7FE0,0010) PixelData', name);
      assert.equal(
        inLength.detail,
        `the file is truncated: it ends at byte ${at + 7}, inside the ${header}header of the element (7FE0,0010) PixelData at byte ${at}`,
        name,
      );
      const inTag = rejection(file.subarray(0, at + 2));
      assert.equal(
        inTag.detail,
        `the file is truncated: it ends at byte ${at + 2}, inside the ${name.includes('implicit') ? header : ''}header of the element at byte ${at}`,
        name,
      );
    }
    for (const cut of [149, 155]) {
      assert.equal(
        rejection(dicomFile('MR_small.dcm').subarray(0, cut)).detail,
        `the file is truncated: it ends at byte ${cut}, inside the file meta information, which its group length (0002,0000) gives to end at byte 334`,
      );
    }
  });

  it("refuses a data set whose first element is no data element naming the file meta's last element, not as truncated", () => {
    // Found in the fuzz sweep: a file meta element's damaged length put the data set's start inside its value or past
    // it, the bytes there read as an element that ran past the end, and the refusal was "the file is truncated: an
    // element runs past the end of the data (dicomParser:parseDicomDataSetExplicit: buffer overrun)".
    const file = Buffer.from(dicomFile('MR_small.dcm'));
    assert.equal(file.toString('latin1', 274, 280), '\x02\x00\x12\x00UI');
    file.writeUInt16LE(10, 280); // (0002,0012) ImplementationClassUID, 18 bytes, said to be 10
    const refused = rejection(file);
    assert.equal(refused.reason, 'MALFORMED');
    assert.equal(refused.attribute, '(0002,0012)');
    assert.equal(
      refused.detail,
      "the data set cannot be read from its start at byte 292, where the file meta information's last element (0002,0012) (VR UI, value length 10) ends; its group length (0002,0000) gives the file meta's end at byte 334: the bytes there read as the element (2E31,3935), which is no data element (it names no value representation), so that file meta element's length or the data set's first header is wrong",
    );
    assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'));
  });

  it('refuses a whole file read to its end out of step by a length one byte short or long, naming the element', () => {
    // Found in the sweep: the elements read out of step after such a length can end where the data does, so the
    // parse succeeded without the elements they hid, and the refusal named one of those as missing, or the file was
    // analysed without them (MR_small's PatientID of length 3 was accepted).
    for (const [name, tag, length, was] of [
      ['MR_small.dcm', 'x00100020', 3, 'accepted'],
      ['MR_small.dcm', 'x00200052', 43, '(0028,0010) Rows is missing'],
      ['JPEG-lossy.dcm', 'x00080008', 35, '(0008,0016) SOPClassUID is missing or empty'],
      ['CT_small.dcm', 'x00191039', 3, '(0020,000D) StudyInstanceUID is missing or empty'],
      ['MR_small_bigendian.dcm', 'x00280010', 3, '(0028,0011) Columns is missing'],
    ] as const) {
      const file = withValueLength(dicomFile(name), tag, length);
      const refused = rejection(file);
      const hex = `(${tag.slice(1, 5).toUpperCase()},${tag.slice(5).toUpperCase()})`;
      assert.equal(refused.reason, 'MALFORMED', `${name} ${tag}, which was ${was}`);
      assert.ok(refused.attribute?.startsWith(hex), `${name}: ${refused.attribute}`);
      assert.ok(
        refused.detail.startsWith(`the element ${refused.attribute} has a value length of ${length}, which cannot be:`),
        refused.detail,
      );
      assert.match(refused.detail, /the file is not truncated, this length is wrong\)$/, name);
      assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'), name);
    }
    // A length two bytes long is a length that can be: the bytes read after it as an element, with no VR, are blamed.
    const even = rejection(withValueLength(dicomFile('MR_small.dcm'), 'x00100020', 6));
    assert.equal(even.attribute, '(0010,0020) PatientID');
    assert.match(
      even.detail,
      /^the data set cannot be read past its element \(0010,0020\) PatientID \(VR LO, value length 6\), which ends at byte \d+: the bytes after it read as the element \([0-9A-F]{4},[0-9A-F]{4}\), which is no data element \(it names no value representation\), so that element's length or the header after it is damaged and the elements after it are read out of step \(the file is not truncated\)$/,
    );
    // One VR damaged in place, the elements after it in step, is read as dicom-parser and DCMTK read it.
    const file = Buffer.from(dicomFile('MR_small.dcm'));
    file.write('XX', dicomParser.parseDicom(file).elements.x00100020.dataOffset - 4, 'latin1');
    assert.equal(parseDicomImage(file, LIMITS).rows, 64);
    // Every valid file still reads.
    for (const name of [
      'MR_small.dcm',
      'MR_small_bigendian.dcm',
      'MR_small_implicit.dcm',
      'CT_small.dcm',
      'JPEG-lossy.dcm',
    ]) {
      assert.ok(parseDicomImage(dicomFile(name), LIMITS).rows > 0, name);
    }
  });

  it("refuses native pixel data of undefined length saying so, not in dicom-parser's words", () => {
    // Found in the sweep: "the data set cannot be parsed (...: basic offset table not found)"; implicit VR accepted it.
    for (const name of ['MR_small.dcm', 'MR_small_bigendian.dcm', 'MR_small_implicit.dcm']) {
      const file = Buffer.from(dicomFile(name));
      const big = name.includes('bigendian');
      const tag = file.lastIndexOf(Buffer.from(big ? [0x7f, 0xe0, 0x00, 0x10] : [0xe0, 0x7f, 0x10, 0x00]));
      file.writeUInt32LE(0xffffffff, tag + (name.includes('implicit') ? 4 : 8));
      const refused = rejection(file);
      assert.equal(refused.reason, 'MALFORMED', name);
      assert.equal(refused.attribute, '(7FE0,0010) PixelData', name);
      assert.match(
        refused.detail,
        /^\(7FE0,0010\) PixelData has an undefined length \(FFFFFFFFH\), but transfer syntax [\d.]+ \([^)]+\) is native \(uncompressed\): native pixel data cannot have an undefined length, only encapsulated pixel data may \(PS3\.5 A\.4\)$/,
        name,
      );
      assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'), name);
    }
  });

  it('refuses encapsulated pixel data of a defined length saying that it must be undefined, not as truncated', () => {
    // Found in review: a length past the data was "the file is truncated", one within it "PixelData holds N bytes but
    // 1 frame(s) ... need M", as if the fragments were native pixels.
    for (const name of ['MR_small_RLE.dcm', 'SC_rgb_jpeg_dcmtk.dcm', 'MR_small_jp2klossless.dcm']) {
      const whole = dicomFile(name);
      const tag = whole.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]));
      const delimiter = whole.indexOf(Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]), tag);
      // The items and their delimiter, as a writer that counted them would give; and a length past the data.
      for (const length of [delimiter + 8 - (tag + 12), 0x10000]) {
        const file = Buffer.from(whole);
        file.writeUInt32LE(length, tag + 8);
        const refused = rejection(file);
        assert.equal(refused.reason, 'MALFORMED', name);
        assert.equal(refused.attribute, '(7FE0,0010) PixelData', name);
        assert.match(
          refused.detail,
          new RegExp(
            `^\\(7FE0,0010\\) PixelData has a defined length \\(${length}\\), but transfer syntax [\\d.]+ \\(.+\\) is compressed: its pixel data is encapsulated, which must have an undefined length \\(FFFFFFFFH\\), its fragments in items ended by a Sequence Delimitation Item \\(PS3\\.5 A\\.4\\)$`,
          ),
          name,
        );
        assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'), name);
      }
    }
  });

  it('refuses each broken or unsupported file with its own reason', () => {
    const noMeta = rejection(dicomFile('no_meta.dcm'));
    assert.equal(noMeta.reason, 'NOT_DICOM');
    assert.equal(noMeta.sop, undefined, 'nothing to name the instance by');
    const truncated = rejection(dicomFile('MR_truncated.dcm'));
    assert.equal(truncated.reason, 'MALFORMED');
    assert.match(truncated.detail, /truncated/);
    // The data set cannot be read, its file meta can: the refusal names the instance by (0002,0002) and (0002,0003).
    assert.deepEqual(truncated.sop, {
      classUID: uidOf(dicomFile('MR_truncated.dcm'), '00020002'),
      instanceUID: uidOf(dicomFile('MR_truncated.dcm'), '00020003'),
    });
    const sr = rejection(dicomFile('test-SR.dcm'));
    assert.equal(sr.reason, 'NOT_AN_IMAGE');
    assert.equal(sr.sop?.classUID, '1.2.840.10008.5.1.4.1.1.88.33', 'the refusal names its instance');
    assert.equal(rejection(dicomFile('rtplan.dcm')).reason, 'NOT_AN_IMAGE');
    assert.match(rejection(dicomFile('liver_1frame.dcm')).detail, /segmentation/);
    const mpeg = rejection(local('MR_small_mpeg2_syntax.dcm'));
    assert.equal(mpeg.reason, 'UNSUPPORTED_TRANSFER_SYNTAX');
    assert.match(mpeg.detail, /1\.2\.840\.10008\.1\.2\.4\.100 \(MPEG2 Main Profile\) is not supported/);
    assert.equal(mpeg.attribute, '(0002,0010) TransferSyntaxUID');
    assert.deepEqual(mpeg.sop, {
      classUID: uidOf(local('MR_small_mpeg2_syntax.dcm'), '00020002'),
      instanceUID: uidOf(local('MR_small_mpeg2_syntax.dcm'), '00020003'),
    });
    assert.ok(mpeg.sop?.classUID && mpeg.sop.instanceUID, 'the file meta names the instance');
    assert.equal(rejection(Buffer.alloc(0)).reason, 'NOT_DICOM');
    const short = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.from([2, 0, 0, 0])]);
    assert.equal(rejection(short).reason, 'MALFORMED');
  });

  it('tells a Part 10 file without its preamble, and a sequence item longer than its sequence, for what they are', () => {
    const file = dicomFile('MR_small.dcm');
    const noPreamble = rejection(file.subarray(128));
    assert.equal(noPreamble.reason, 'NOT_DICOM');
    assert.equal(
      noPreamble.detail,
      "not a DICOM Part 10 file: 'DICM' is at byte 0, not 128: the 128-byte preamble before it is missing",
    );
    const metaFirst = rejection(file.subarray(132));
    assert.equal(metaFirst.reason, 'NOT_DICOM');
    assert.equal(
      metaFirst.detail,
      "not a DICOM Part 10 file: it starts with the file meta information (group 0002) without the 128-byte preamble and 'DICM' prefix before it",
    );
    // (0008,1115) ReferencedSeriesSequence, undefined length, whose one item claims 0xFFFFFFF0 bytes.
    const pixels = dicomParser.parseDicom(file).elements.x7fe00010.dataOffset - 12;
    const sequence = Buffer.alloc(20);
    sequence.writeUInt16LE(0x0008, 0);
    sequence.writeUInt16LE(0x1115, 2);
    sequence.write('SQ', 4, 'latin1');
    sequence.writeUInt32LE(0xffffffff, 8);
    sequence.writeUInt16LE(0xfffe, 12);
    sequence.writeUInt16LE(0xe000, 14);
    sequence.writeUInt32LE(0xfffffff0, 16);
    const longItem = rejection(Buffer.concat([file.subarray(0, pixels), sequence, file.subarray(pixels)]));
    assert.equal(longItem.reason, 'MALFORMED');
    // Its sequence, item and bytes named, where dicom-parser's words were the reason ("... 'maxP osition'").
    assert.equal(
      longItem.detail,
      `the sequence (0008,1115) at byte ${pixels} cannot be read: its item at byte ${pixels + 12} has a length of 4294967280, which runs past the end of the data at byte ${file.length + 20}: the item's length is wrong, or the file is truncated`,
    );
    assert.equal(longItem.attribute, '(0008,1115)');
  });

  it("refuses an item of undefined length that the data ends inside, naming its sequence, not in a TypeError's words", () => {
    // Found in the sweep: "the data set cannot be parsed (TypeError: Cannot read properties of undefined (reading
    // 'push'))", dicom-parser failing to record its own warning. The sequence is walked, not that text matched.
    for (const [name, itemLength, sequence, within] of [
      ['SC_rgb_jpeg_dcmtk.dcm', 58, '(0040,A170) at byte 820', '(0008,2112) at byte 694'],
      ['test-SR.dcm', 78, '(0040,A088) at byte 1090', '(0040,A073) at byte 1008'],
    ] as const) {
      const file = Buffer.from(dicomFile(name));
      const item = file.indexOf(Buffer.from([0xfe, 0xff, 0x00, 0xe0, itemLength, 0, 0, 0]), 132);
      assert.ok(item > 0, name);
      file.writeUInt32LE(0xffffffff, item + 4);
      const refused = rejection(file);
      assert.equal(refused.reason, 'MALFORMED', name);
      assert.equal(
        refused.detail,
        `the sequence ${sequence}, in the sequence ${within} cannot be read: its item of undefined length (FFFFFFFFH) at byte ${item} has no Item Delimitation Item (FFFE,E00D) before the data ends at byte ${file.length}: the delimiter is missing, or the file is truncated`,
        name,
      );
      assert.equal(refused.attribute, within.slice(0, 11), name);
      assert.equal(refused.sop?.instanceUID, uidOf(file, '00020003'), name);
    }
  });

  it("refuses a sequence whose items go wrong past its length, after another of undefined length, or cut, naming it, not in dicom-parser's words", () => {
    // Found in the fuzz sweep, each "the data set cannot be parsed (dicomParser.readSequenceItem: item tag (FFFE,E000)
    // not found at offset ...)" or "... (dicomParser.parseDicomDataSetExplicit: invalid value for parameter 'maxP
    // osition')". SC_rgb's (0008,9215) at byte 898, of 60 bytes, claims 13,172,796.
    const long = Buffer.from(dicomFile('SC_rgb_jpeg_dcmtk.dcm'));
    assert.equal(long.toString('latin1', 898, 904), '\x08\x00\x15\x92SQ');
    long.writeUInt32LE(0x00c9003c, 906);
    assert.equal(
      rejection(long).detail,
      "the sequence (0008,9215) at byte 898 cannot be read: at byte 970, where an Item (FFFE,E000) must begin (PS3.5 7.5), is the tag (0010,0010) PatientName: the sequence's length (13172796, past the end of the data at byte 3424), or an item's length before it, is wrong",
    );
    // JPEG-lossy's (0008,9215), of undefined length, follows (0008,2112), of undefined length too: its first item's
    // tag damaged. Where the parse stopped is after (0008,2112)'s delimiter, which its length does not count.
    const lossy = Buffer.from(dicomFile('JPEG-lossy.dcm'));
    assert.equal(lossy.toString('latin1', 1070, 1076), '\x08\x00\x15\x92SQ');
    lossy.writeUInt16LE(0xffff, 1084);
    const item = rejection(lossy);
    assert.equal(item.attribute, '(0008,9215)');
    assert.equal(
      item.detail,
      "the sequence (0008,9215) at byte 1070 cannot be read: at byte 1082, where an Item (FFFE,E000) or its Sequence Delimitation Item (FFFE,E0DD) must begin (PS3.5 7.5), is the tag (FFFE,FFFF): the sequence's length, or an item's length before it, is wrong",
    );
    // Cut inside the item of SC_rgb's (0008,2112).
    assert.equal(
      rejection(dicomFile('SC_rgb_jpeg_dcmtk.dcm').subarray(0, 881)).detail,
      "the sequence (0008,2112) at byte 694 cannot be read: its item at byte 706 has a length of 184, which runs past the end of the data at byte 881: the item's length is wrong, or the file is truncated",
    );
  });

  it("refuses encapsulated pixel data that does not begin with an item naming it and the tag found, not in dicom-parser's words", () => {
    // Found in the fuzz sweep: "the data set cannot be parsed (dicomParser.findEndOfEncapsulatedElement: basic offset
    // table not found)".
    const file = Buffer.from(dicomFile('MR_small_jp2klossless.dcm'));
    assert.equal(file.readUInt32LE(1532), 0xe000fffe);
    file.writeUInt16LE(0xffe8, 1532);
    const refused = rejection(file);
    assert.equal(refused.reason, 'MALFORMED');
    assert.equal(refused.attribute, '(7FE0,0010) PixelData');
    assert.equal(
      refused.detail,
      "(7FE0,0010) PixelData at byte 1520 has an undefined length (FFFFFFFFH), so is encapsulated, but its value at byte 1532 begins with the tag (FFE8,E000), where the Item (FFFE,E000) of its Basic Offset Table must be (PS3.5 A.4): the pixel data's header or its first item is damaged",
    );
  });

  it("refuses a sequence of a defined length under 8 naming it, not in dicom-parser's words", () => {
    // Found in the sweep: test-SR's empty (0008,1111) one byte long was "the data set cannot be parsed
    // (dicomParser.readSequenceItem: item tag (FFFE,E000) not found at offset 710)": the next element's header read
    // as an item, at an offset 8 bytes past it.
    for (const length of [1, 2, 7]) {
      const refused = rejection(withValueLength(dicomFile('test-SR.dcm'), 'x00081111', length));
      assert.equal(refused.reason, 'MALFORMED', `length ${length}`);
      assert.equal(refused.attribute, '(0008,1111)', `length ${length}`);
      assert.equal(
        refused.detail,
        `the sequence (0008,1111) at byte 690 cannot be read: its value length is ${length}, which cannot be: its value is items, each beginning with an 8-byte item header (FFFE,E000) (PS3.5 7.5), so it is 0 or at least 8 bytes long; this length is wrong, and the elements after it are read out of step`,
      );
    }
    // Long enough for an item, but no item where its value begins: that tag and byte are named.
    const refused = rejection(withValueLength(dicomFile('test-SR.dcm'), 'x00081111', 8));
    assert.match(
      refused.detail,
      /^the sequence \(0008,1111\) at byte 690 cannot be read: at byte 702, where an Item \(FFFE,E000\) must begin \(PS3\.5 7\.5\), is the tag \([0-9A-F]{4},[0-9A-F]{4}\)/,
    );
  });

  it('refuses a file nesting sequences deeper than the parser can recurse, saying so', () => {
    // Explicit VR little endian: a meta group, then 100,000 sequences of undefined length, each in an item of the one before.
    const element = (group: number, el: number, vr: string, value: Buffer): Buffer => {
      const head = Buffer.alloc(8);
      head.writeUInt16LE(group, 0);
      head.writeUInt16LE(el, 2);
      head.write(vr, 4, 'latin1');
      head.writeUInt16LE(value.length, 6);
      return Buffer.concat([head, value]);
    };
    const tag = (group: number, el: number, length: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeUInt16LE(group, 0);
      b.writeUInt16LE(el, 2);
      b.writeUInt32LE(length >>> 0, 4);
      return b;
    };
    const meta = Buffer.concat([
      element(2, 0x10, 'UI', Buffer.from('1.2.840.10008.1.2.1\0')),
      element(2, 0x02, 'UI', Buffer.from('1.2.840.10008.5.1.4.1.1.6.1\0')),
    ]);
    const sequence = Buffer.alloc(12);
    sequence.writeUInt16LE(0x0040, 0);
    sequence.writeUInt16LE(0xa730, 2);
    sequence.write('SQ', 4, 'latin1');
    sequence.writeUInt32LE(0xffffffff, 8);
    const open = Buffer.concat([sequence, tag(0xfffe, 0xe000, 0xffffffff)]);
    const close = Buffer.concat([tag(0xfffe, 0xe00d, 0), tag(0xfffe, 0xe0dd, 0)]);
    const depth = 100_000;
    const file = Buffer.concat([
      Buffer.alloc(128),
      Buffer.from('DICM'),
      element(2, 0, 'UL', Buffer.from(Uint32Array.of(meta.length).buffer)),
      meta,
      element(8, 0x60, 'CS', Buffer.from('US')),
      Buffer.concat(Array.from({ length: depth }, () => open)),
      Buffer.concat(Array.from({ length: depth }, () => close)),
    ]);
    const deep = rejection(file);
    assert.equal(deep.reason, 'MALFORMED');
    assert.equal(deep.detail, 'the data set nests sequences too deeply to be read');
  });

  it('refuses a SOP, study or series UID that is not a valid UID, naming the attribute (400)', () => {
    const file = dicomFile('US1_UNCR.dcm');
    assert.equal(parseDicomImage(rewriteDicom(file, {}), LIMITS).modality, 'US', 'the rewritten file itself is sound');
    const cases: Array<[string, string, string]> = [
      ['SOPInstanceUID', '1.2.03.4', '(0008,0018) SOPInstanceUID'],
      ['StudyInstanceUID', '1.2.abc', '(0020,000D) StudyInstanceUID'],
      ['SeriesInstanceUID', '1..2', '(0020,000E) SeriesInstanceUID'],
      ['SOPInstanceUID', '1.2.3.', '(0008,0018) SOPInstanceUID'],
    ];
    for (const [keyword, value, attribute] of cases) {
      const refused = rejection(rewriteDicom(file, { [keyword]: value }));
      assert.equal(refused.reason, 'MALFORMED', keyword);
      assert.equal(refused.attribute, attribute);
      assert.match(refused.detail, /is not a valid UID/);
      assert.ok(!refused.detail.includes(value), 'the value is not echoed');
    }
  });

  it('refuses a deflated zip bomb from its attributes, before inflating it whole', () => {
    // 16384 x 16384 claimed: the pixel budget refuses it from the first inflated bytes. Inflating it whole
    // would pass maxInflatedBytes (32 MiB here) and name only a Buffer that could not be made.
    const huge = rejection(deflatedBomb(16_384, 16_384, 40 * 1024 * 1024), { ...LIMITS, maxInflatedBytes: 32 << 20 });
    assert.equal(huge.reason, 'UNSUPPORTED_PIXEL_FORMAT');
    assert.match(huge.message, /MEDICAL_MAX_PIXELS/);
    // 512 x 512 claimed, 70 MB of zeros: inflating stops at the image's own size plus room for other attributes.
    const padded = rejection(deflatedBomb(512, 512, 70 * 1024 * 1024), { ...LIMITS, maxInflatedBytes: 1 << 30 });
    assert.equal(padded.reason, 'MALFORMED');
    assert.match(padded.message, /inflates to more than 67371008 bytes/);
    // A deflated image of the size it claims is read.
    assert.equal(parseDicomImage(deflatedBomb(64, 64, 64 * 64), LIMITS).rows, 64);
  });

  it('reads a deflated data set whose image attributes come after other data, within the first 16 MiB', () => {
    // 2 MiB that deflate does not shrink before Rows / Columns: the head is inflated in growing steps until found.
    const random = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < random.length; i += 4) random.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
    assert.equal(parseDicomImage(deflatedBomb(64, 64, 64 * 64, random), LIMITS).rows, 64);
    // 12 MiB of zeros before them: the first step inflates past them.
    const padded = deflatedBomb(64, 64, 64 * 64, 12 * 1024 * 1024);
    assert.equal(parseDicomImage(padded, LIMITS).rows, 64);
    // A limit past the largest Buffer Node can make (4 x a body limit of 1 GiB or more, on Node 20) is held to
    // that size, rather than zlib refusing the option in its own words ("options.maxOutputLength" is out of range).
    assert.equal(parseDicomImage(padded, { ...LIMITS, maxInflatedBytes: 2 ** 60 }).rows, 64);
  });

  it('refuses a deflate bomb hiding the image attributes behind gigabytes, having inflated at most 32 MiB', () => {
    // As found in review: 2 GiB of zeros in a private element before Rows / Columns, about 2 MB deflated. With the
    // limit at 4 x a 512 MiB body it was inflated whole (2 GiB, 30 s of a blocked event loop) and answered 200.
    const bomb = deflatedBomb(64, 64, 64 * 64, 2 * 1024 * 1024 * 1024 - 2);
    assert.ok(bomb.length < 4 * 1024 * 1024, `${bomb.length} bytes`);
    const started = process.hrtime.bigint();
    const refused = rejection(bomb, { ...LIMITS, maxInflatedBytes: 2 * 1024 * 1024 * 1024 });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.equal(refused.reason, 'MALFORMED');
    assert.equal(refused.attribute, undefined, 'the data set as a whole is at fault');
    const match =
      /^the deflated data set \(transfer syntax 1\.2\.840\.10008\.1\.2\.1\.99, Deflated Explicit VR Little Endian\) gives no image size \(Rows, Columns\) in its first (\d+) inflated bytes; the gateway inflates at most 33554432 bytes of a data set looking for it/.exec(
        refused.detail,
      );
    assert.ok(match, refused.detail);
    assert.ok(Number(match[1]) >= 16 * 1024 * 1024 && Number(match[1]) <= 32 * 1024 * 1024, match[1]);
    assert.ok(ms < 10_000, `${ms} ms`); // a few hundred ms on a busy two-core machine; 30 s inflating it whole
    // 40 MiB of zeros, past the 32 MiB the head is ever inflated to: refused the same way under the test limit.
    assert.match(rejection(deflatedBomb(64, 64, 64 * 64, 40 * 1024 * 1024)).detail, /gives no image size/);
    // Under a small limit the head is bounded by it: at most the limit inflated, half of it searched.
    const small = rejection(deflatedBomb(64, 64, 64 * 64, 8 * 1024 * 1024), { ...LIMITS, maxInflatedBytes: 4_000_000 });
    assert.match(small.detail, /the gateway inflates at most 4000000 bytes of a data set looking for it/);
  });

  it('refuses a RescaleSlope or RescaleIntercept that takes the stored values out of float32, naming it', () => {
    // Found in review: (0028,1053) 1e300 on a US image ran the model on NaN and answered no lesion (an SR: 500).
    const us = (changes: Record<string, unknown>): Buffer =>
      rewriteDicom(dicomFile('MR_small.dcm'), { Modality: 'US', WindowCenter: null, WindowWidth: null, ...changes });
    const slope = rejection(us({ RescaleSlope: 1e300, RescaleIntercept: 0 }));
    assert.equal(slope.reason, 'UNSUPPORTED_PIXEL_FORMAT');
    assert.equal(slope.attribute, '(0028,1053) RescaleSlope');
    assert.match(
      slope.detail,
      /^RescaleSlope 1e\+300: the modality LUT .* takes the stored values -32768\.\.32767 \(BitsStored 16\)/,
    );
    const intercept = rejection(us({ RescaleSlope: 1, RescaleIntercept: -1e39 }));
    assert.equal(intercept.attribute, '(0028,1052) RescaleIntercept');
    // Large but within float32 at 16 bits signed (32768 x 1e33 = 3.3e37): read, as is a zero slope (taken as 1).
    assert.equal(parseDicomImage(us({ RescaleSlope: 1e33 }), LIMITS).rescaleSlope, 1e33);
    assert.equal(parseDicomImage(us({ RescaleSlope: 0 }), LIMITS).rescaleSlope, 0);
    // Colour samples take no modality LUT: a slope there changes nothing and is not refused.
    const rgb = rewriteDicom(dicomFile('US1_UNCR.dcm'), { RescaleSlope: 1e300 });
    assert.equal(parseDicomImage(rgb, LIMITS).samplesPerPixel, 3);
  });

  it('refuses a RescaleSlope or RescaleIntercept that is no decimal string, rather than reading it as 1 or 0', () => {
    // Found by this session's sweep: parseFloat read `abc` as no value (a slope of 1) and `2abc` as 2.
    const us = (changes: Record<string, unknown>): Buffer =>
      rewriteDicom(dicomFile('MR_small.dcm'), { Modality: 'US', WindowCenter: null, WindowWidth: null, ...changes });
    for (const [keyword, value, tag] of [
      ['RescaleSlope', 'abc', '(0028,1053)'],
      ['RescaleSlope', '2abc', '(0028,1053)'],
      ['RescaleIntercept', '0x10', '(0028,1052)'],
    ]) {
      const refused = rejection(us({ RescaleSlope: 1, RescaleIntercept: 0, [keyword]: value }));
      assert.equal(refused.reason, 'MALFORMED', `${keyword} ${value}`);
      assert.equal(refused.attribute, `${tag} ${keyword}`);
      assert.equal(refused.detail, `${keyword} '${value}' is not a decimal string (DS)`);
    }
    assert.equal(parseDicomImage(us({ RescaleSlope: '2.5E0', RescaleIntercept: '-.5' }), LIMITS).rescaleSlope, 2.5);
    assert.equal(parseDicomImage(us({ RescaleSlope: '', RescaleIntercept: '' }), LIMITS).rescaleSlope, undefined);
  });

  it('refuses a HighBit other than one less than BitsStored, naming it', () => {
    const refused = rejection(rewriteDicom(dicomFile('US1_UNCR.dcm'), { HighBit: 9 }));
    assert.equal(refused.reason, 'UNSUPPORTED_PIXEL_FORMAT');
    assert.equal(refused.attribute, '(0028,0102) HighBit');
    assert.match(refused.detail, /^HighBit 9 is not one less than BitsStored 8/);
    assert.equal(parseDicomImage(rewriteDicom(dicomFile('US1_UNCR.dcm'), { HighBit: 7 }), LIMITS).bitsStored, 8);
  });

  it("reads names in the data set's own character set (UTF-8, Latin-2), not as Latin-1", () => {
    const PLACEHOLDER = 'XXXXXXXXXXXXXXXX';
    const withName = (characterSet: string, encoded: Buffer): Buffer => {
      const file = rewriteDicom(dicomFile('MR_small.dcm'), {
        SpecificCharacterSet: characterSet,
        PatientName: PLACEHOLDER,
      });
      const at = file.indexOf(PLACEHOLDER, 0, 'latin1');
      assert.ok(at > 0);
      Buffer.concat([encoded, Buffer.alloc(16, ' ')]).copy(file, at, 0, 16);
      return file;
    };
    const utf8 = parseDicomImage(withName('ISO_IR 192', Buffer.from('Müller^Jürgen', 'utf8')), LIMITS);
    assert.equal(utf8.patient.PatientName, 'Müller^Jürgen');
    // Latin-2: 0xB9 is š, which Latin-1 would read as ¹.
    const latin2 = parseDicomImage(
      withName('ISO_IR 101', Buffer.from([0x4e, 0x6f, 0x76, 0xe1, 0x6b, 0x5e, 0xb9])),
      LIMITS,
    );
    assert.equal(latin2.patient.PatientName, 'Novák^š');
    const latin1 = parseDicomImage(withName('ISO_IR 100', Buffer.from('Müller^Jürgen', 'latin1')), LIMITS);
    assert.equal(latin1.patient.PatientName, 'Müller^Jürgen');
  });

  it('reads names written with ISO 2022 code extensions: Japanese, Korean, Chinese, Cyrillic (PS3.5 Annexes H-K)', () => {
    const bytes = (text: string): Buffer => Buffer.from(text.replace(/ESC/g, '\x1b'), 'latin1');
    const examples: Array<[string, string, string]> = [
      [
        '\\ISO 2022 IR 87',
        'Yamada^Tarou=ESC$B;3EDESC(B^ESC$BB@O:ESC(B=ESC$B$d$^$@ESC(B^ESC$B$?$m$&ESC(B',
        'Yamada^Tarou=山田^太郎=やまだ^たろう',
      ],
      [
        'ISO 2022 IR 13\\ISO 2022 IR 87',
        '\xd4\xcf\xc0\xde^\xc0\xdb\xb3=ESC$B;3EDESC(J^ESC$BB@O:ESC(J=ESC$B$d$^$@ESC(J^ESC$B$?$m$&ESC(J',
        'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう',
      ],
      [
        '\\ISO 2022 IR 149',
        'Hong^Gildong=ESC$)C\xfb\xf3^ESC$)C\xd1\xce\xd4\xd7=ESC$)C\xc8\xab^ESC$)C\xb1\xe6\xb5\xbf',
        'Hong^Gildong=洪^吉洞=홍^길동',
      ],
      ['\\ISO 2022 IR 58', 'Zhang^XiaoDong=ESC$)A\xd5\xc5^ESC$)A\xd0\xa1\xb6\xab=', 'Zhang^XiaoDong=张^小东='],
      ['ISO 2022 IR 144', 'ESC-L\xb8\xd2\xd0\xdd\xde\xd2^ESC-L\xb8\xd2\xd0\xdd', 'Иванов^Иван'],
    ];
    for (const [characterSet, encoded, name] of examples) {
      const decode = textDecoderFor(characterSet);
      assert.ok(decode, characterSet);
      assert.equal(decode(bytes(encoded)), name, characterSet);
      // Through the parser, as the SR reads it: the name was read as bytes, escape sequences and all.
      const placeholder = 'X'.repeat(bytes(encoded).length + (bytes(encoded).length % 2));
      const file = rewriteDicom(dicomFile('MR_small.dcm'), {
        SpecificCharacterSet: characterSet.split('\\'),
        PatientName: placeholder,
      });
      const at = file.indexOf(placeholder, 0, 'latin1');
      assert.ok(at > 0);
      Buffer.concat([bytes(encoded), Buffer.from(' ')]).copy(file, at, 0, placeholder.length);
      assert.equal(parseDicomImage(file, LIMITS).patient.PatientName, name, characterSet);
    }
    // An escape sequence of no set it knows: the value cannot be read faithfully, and the SR leaves it empty rather
    // than write it wrongly.
    assert.equal(textDecoderFor('\\ISO 2022 IR 87')?.(bytes('aESC$Zb'), 'PN'), undefined);
    // A term without code extensions among several is taken as its ISO 2022 equivalent (the library's robustness).
    assert.equal(
      textDecoderFor('ISO_IR 100\\ISO 2022 IR 87')?.(bytes('M\xfcller^ESC$B;3EDESC(B'), 'PN'),
      'Müller^山田',
    );
    // None declared, Latin-1, or a term no standard defines: dicom-parser's Latin-1 reading, as before.
    assert.equal(textDecoderFor(undefined), undefined);
    assert.equal(textDecoderFor('ISO_IR 100'), undefined);
    assert.equal(textDecoderFor('ISO_IR 999'), undefined);
  });

  it('chooses frames by policy and refuses more than the limit under "all"', () => {
    assert.deepEqual(selectFrames(5, 'all', 10), [0, 1, 2, 3, 4]);
    assert.deepEqual(selectFrames(5, 'first', 10), [0]);
    assert.deepEqual(selectFrames(5, 'middle', 10), [2]);
    assert.throws(
      () => selectFrames(11, 'all', 10),
      (e: unknown) => e instanceof DicomRejected && e.reason === 'TOO_MANY_FRAMES',
    );
  });
});

describe('medical: the multipart/related Content-Type of a STOW-RS request', () => {
  it('reads boundary and type, quoted or not, and refuses an unterminated quote or a repeated parameter', () => {
    assert.deepEqual(parseMultipartRelatedType('multipart/related; type="application/dicom"; boundary=abc'), {
      boundary: 'abc',
      type: 'application/dicom',
    });
    assert.deepEqual(parseMultipartRelatedType('Multipart/Related;boundary="a \\"b\\" c";type=application/dicom'), {
      boundary: 'a "b" c',
      type: 'application/dicom',
    });
    const refused = (contentType: string, reason: RegExp): void =>
      assert.throws(
        () => parseMultipartRelatedType(contentType),
        (error: unknown) => error instanceof MultipartError && reason.test(error.message),
        contentType,
      );
    refused('multipart/related; boundary="abc', /boundary parameter of Content-Type has an unterminated quoted string/);
    refused('multipart/related; boundary=abc; boundary=def', /boundary parameter of Content-Type is given twice/);
    refused('multipart/related; type=application/dicom', /boundary parameter is missing/);
    refused('multipart/related; __proto__=x; constructor=y', /boundary parameter is missing/);
    refused('application/dicom', /must be multipart\/related/);
  });

  it('takes a delimiter only at the start of the body or of a line, so a preamble may name the boundary', () => {
    // Found in review: this preamble was refused as "malformed multipart delimiter line" (RFC 2046 5.1.1).
    const parts = (body: string) =>
      splitMultipart(Buffer.from(body, 'latin1'), 'XyZ').map((p) => [p.headers, Buffer.from(p.body).toString()]);
    const tail = '--XyZ\r\nContent-Type: application/dicom\r\n\r\nONE\r\n--XyZ\r\n\r\nTWO\r\n--XyZ--\r\nepilogue --XyZ';
    const expected = [
      [{ 'content-type': 'application/dicom' }, 'ONE'],
      [{}, 'TWO'],
    ];
    assert.deepEqual(parts(`This is a preamble --XyZ not a delimiter\r\n${tail}`), expected);
    assert.deepEqual(parts(`a first line\r\nand --XyZ in a second\r\n${tail}`), expected);
    assert.deepEqual(parts(tail), expected, 'no preamble');
    // A boundary only inside lines is none at all; one starting a line must still end it.
    assert.throws(() => parts('preamble --XyZ\r\nbody --XyZ--'), /contains no multipart boundary/);
    // Found in the sweep: a body written with another boundary was refused without naming the one looked for.
    assert.throws(
      () => parts('--Other\r\n\r\nONE\r\n--Other--'),
      /no line starts with "--XyZ", the delimiter of the boundary the Content-Type names/,
    );
    assert.throws(() => parts(''), /the body is empty/);
    assert.throws(() => parts('preamble\r\n--XyZ junk\r\n'), /malformed multipart delimiter line/);
  });

  it('reads a folded part header (a line starting with a space or tab continues the one before) as one', () => {
    // Found by this session's sweep: the part was refused as "the part's Content-Type is , not application/dicom".
    const parts = (body: string) => splitMultipart(Buffer.from(body, 'latin1'), 'XyZ').map((p) => p.headers);
    assert.deepEqual(
      parts('--XyZ\r\nContent-Type:\r\n application/dicom\r\nContent-ID:\r\n\t<1>\r\n\r\nONE\r\n--XyZ--\r\n'),
      [{ 'content-type': 'application/dicom', 'content-id': '<1>' }],
    );
    assert.deepEqual(parts('--XyZ\nContent-Type: multipart/x;\n  type=y\n\nONE\n--XyZ--\n'), [
      { 'content-type': 'multipart/x; type=y' },
    ]);
  });

  it('reads a body whose lines end in bare LF (preamble, delimiters, part headers) as such', () => {
    // Refused before as having no boundary: some clients (bodies made with echo or printf and \n) send these.
    const parts = (body: string) =>
      splitMultipart(Buffer.from(body, 'latin1'), 'XyZ').map((p) => [p.headers, Buffer.from(p.body).toString()]);
    const expected = [
      [{ 'content-type': 'application/dicom', 'content-id': '<1>' }, 'ONE'],
      [{}, 'TWO\r\nstill two\n'],
    ];
    const tail =
      '--XyZ\nContent-Type: application/dicom\nContent-ID: <1>\n\nONE\n--XyZ\n\nTWO\r\nstill two\n\n--XyZ--\n';
    assert.deepEqual(parts(`a preamble\nof two lines --XyZ\n${tail}`), expected);
    assert.deepEqual(parts(tail), expected, 'no preamble');
    assert.deepEqual(parts(`--XyZ \t\nContent-Type: application/dicom\n\nONE\n--XyZ--`), [
      [{ 'content-type': 'application/dicom' }, 'ONE'],
    ]);
    assert.throws(() => parts('--XyZ\nContent-Type: application/dicom\n\nONE\n'), /without a closing boundary/);
  });

  it("reads a body by its first delimiter line's line break: a CRLF body is not split at LF and the boundary", () => {
    // The delimiter is CRLF "--XyZ" there (RFC 2046): a part holding LF "--XyZ" by chance keeps it, as before.
    const body = '--XyZ\r\n\r\nONE\n--XyZ\nstill one\r\n--XyZ--\r\n';
    const parts = splitMultipart(Buffer.from(body, 'latin1'), 'XyZ');
    assert.deepEqual(
      parts.map((p) => Buffer.from(p.body).toString()),
      ['ONE\n--XyZ\nstill one'],
    );
    // Nor does a body switch: after a CRLF delimiter line, one ending in a bare LF is malformed.
    assert.throws(
      () => splitMultipart(Buffer.from('--XyZ\r\n\r\nONE\r\n--XyZ\n\nTWO\r\n--XyZ--', 'latin1'), 'XyZ'),
      /malformed multipart delimiter line/,
    );
  });
});

describe('medical: multipart/related bodies of the shared DICOM files', { skip: DICOM_SKIP }, () => {
  it('gives back every file byte for byte, with lines in CRLF or in bare LF', () => {
    const names = readdirSync(SHARED_DICOM).filter((name) => name.endsWith('.dcm'));
    const files = names.map((name) => dicomFile(name));
    for (const eol of ['\r\n', '\n'] as const) {
      const { body } = multipartRelated(files, 'gateway-test-boundary-7f3a', eol);
      const parts = splitMultipart(body, 'gateway-test-boundary-7f3a');
      assert.equal(parts.length, files.length, JSON.stringify(eol));
      parts.forEach((part, i) => {
        assert.deepEqual(part.headers, { 'content-type': 'application/dicom' });
        assert.ok(Buffer.from(part.body).equals(files[i]), `${names[i]}, lines in ${JSON.stringify(eol)}`);
      });
    }
  });
});
