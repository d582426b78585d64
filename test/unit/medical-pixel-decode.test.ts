import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import * as dicomParser from 'dicom-parser';
import { NativeCodecs } from 'dcmjs-codecs';
import { Dataset } from 'dcmjs-dimse';
import { parseDicomImage } from '../../src/domains/medical/dicom/dicom-parse.util';
import { DicomRejected } from '../../src/domains/medical/dicom/dicom-rejected';
import { decodeFrame, initialisePixelCodecs, runCodec } from '../../src/domains/medical/dicom/pixel-decode.util';
import { frameTo01, toGrayscale } from '../../src/domains/medical/pixels/pixel-pipeline.util';
import { frameOptionsOf } from '../../src/domains/medical/lesion-detection.service';
import {
  encodedLossless,
  fragmentedFrames,
  relabelled,
  rewriteDicom,
  withBasicOffsetTable,
  withFirstFragment,
} from '../fixtures/dicom-crafted';
import { part10File } from '../../src/domains/medical/dimse/part10-file.util';
import {
  DICOM_SKIP,
  dicomFile,
  localDicomFile,
  rejectionOf,
  SHARED_DICOM,
  TEST_PARSE_LIMITS,
} from '../fixtures/dicom-files';

const LIMITS = TEST_PARSE_LIMITS;
const local = localDicomFile;

function decodeRejection(body: Buffer, frame = 0): DicomRejected {
  const image = parseDicomImage(body, LIMITS);
  return rejectionOf(() => decodeFrame(image, frame), 'the frame was decoded');
}

/** Bytes of the codec module's WebAssembly memory (dcmjs-codecs keeps its instance in a static field). */
/** MR_small's first frame as the uncompressed file decodes it: what its compressed copies must decode to. */
const mrSmallPixels = (): number[] =>
  Array.from(decodeFrame(parseDicomImage(dicomFile('MR_small.dcm'), LIMITS), 0).values);

/** MR_small's JPEG-LS and JPEG 2000 copies: each file, its transfer syntax and its one frame's codestream. */
function mrSmallCodestreams(): Array<{ name: string; ts: string; file: Buffer; codestream: Uint8Array }> {
  return [
    ['MR_small_jpeg_ls_lossless.dcm', '1.2.840.10008.1.2.4.80'],
    ['MR_small_jp2klossless.dcm', '1.2.840.10008.1.2.4.90'],
  ].map(([name, ts]) => {
    const file = dicomFile(name);
    const single = parseDicomImage(file, LIMITS);
    const element = single.dataSet.elements.x7fe00010;
    const codestream = Uint8Array.from(
      dicomParser.readEncapsulatedPixelDataFromFragments(single.dataSet, element, 0, 1) as Uint8Array,
    );
    return { name, ts, file, codestream };
  });
}

function codecHeapBytes(): number {
  const api = (NativeCodecs as unknown as { wasmApi?: { wasmMemory: { buffer: ArrayBuffer } } }).wasmApi;
  assert.ok(api, 'the codecs are loaded');
  return api.wasmMemory.buffer.byteLength;
}

describe('medical: encoded frames checked against the image attributes', { skip: DICOM_SKIP }, () => {
  before(() => initialisePixelCodecs());

  it('refuses a frame whose own header gives another size than Rows / Columns, naming both', () => {
    const cases: Array<[string, Buffer]> = [
      ['JPEG 2000', dicomFile('MR_small_jp2klossless.dcm')],
      ['JPEG-LS', dicomFile('MR_small_jpeg_ls_lossless.dcm')],
      ['JPEG lossless', local('MR_small_jpeg_lossless_p14.dcm')],
    ];
    for (const [name, file] of cases) {
      for (const [rows, columns] of [
        [32, 32],
        [128, 128],
        [64, 128],
      ]) {
        const refused = decodeRejection(relabelled(file, rows, columns));
        assert.equal(refused.reason, 'DECODE_FAILED', name);
        assert.equal(
          refused.detail,
          `frame 1: the encoded frame is 64x64 (columns x rows), (0028,0011) Columns / (0028,0010) Rows say ${columns}x${rows}`,
          name,
        );
        assert.equal(refused.attribute, '(0028,0010) Rows');
      }
    }
    const colour = decodeRejection(relabelled(dicomFile('SC_rgb_jpeg_dcmtk.dcm'), 50, 50));
    assert.match(colour.detail, /encoded frame is 100x100 .* say 50x50/);
  });

  it('refuses a frame whose own header gives no image (an offset past a JPEG 2000 grid, 0 JPEG columns), saying why, not a negative size', () => {
    // Seed 2197 of the fuzz test met this: Xsiz less XOsiz, read as unsigned, came out as -4294934208 columns.
    const file = Buffer.from(dicomFile('MR_small_jp2klossless.dcm'));
    const siz = file.indexOf(Buffer.from([0xff, 0x4f, 0xff, 0x51])) + 4;
    assert.ok(siz > 4, 'the file has a SIZ marker');
    const xsiz = file.readUInt32BE(siz + 4);
    file.writeUInt32BE(xsiz + 32768, siz + 12); // XOsiz
    const j2k = decodeRejection(file);
    assert.equal(j2k.reason, 'DECODE_FAILED');
    assert.equal(
      j2k.detail,
      `frame 1: the encoded frame's header gives no image: its SIZ marker puts the image offset outside the reference ` +
        `grid (XOsiz ${xsiz + 32768}, Xsiz ${xsiz}; YOsiz 0, Ysiz 64): it must be less than the grid's size`,
    );
    assert.doesNotMatch(j2k.detail, /-\d/);

    const jpeg = Buffer.from(local('MR_small_jpeg_lossless_p14.dcm'));
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc3]));
    assert.ok(sof > 0, 'the file has a lossless SOF marker');
    jpeg.writeUInt16BE(0, sof + 7); // X, samples per line
    const zero = decodeRejection(jpeg);
    assert.equal(
      zero.detail,
      "frame 1: the encoded frame's header gives no image: its SOF marker gives 0 samples per line",
    );
  });

  it('refuses an RLE frame whose header or segments break PS3.5 Annex G, saying how', () => {
    // MR_small_RLE: 64x64, 16 bits, so two segments; the first fragment is the whole frame.
    const file = dicomFile('MR_small_RLE.dcm');
    const damaged = (damage: (fragment: Buffer) => void): string =>
      decodeRejection(withFirstFragment(file, damage)).detail;
    assert.equal(
      damaged((f) => f.writeUInt32LE(1, 0)),
      'frame 1: the RLE header declares 1 segment(s); SamplesPerPixel x BitsAllocated/8 needs 2',
    );
    assert.match(
      damaged((f) => f.writeUInt32LE(0xffffffff, 0)),
      /declares 4294967295 segment/,
    );
    assert.match(
      damaged((f) => f.fill(0)),
      /declares 0 segment/,
    );
    assert.equal(
      damaged((f) => f.writeUInt32LE(68, 4)),
      'frame 1: the first RLE segment starts at byte 68, not 64 (right after the header)',
    );
    assert.match(
      damaged((f) => f.writeUInt32LE(0x7fffffff, 8)),
      /^frame 1: RLE segment 2 starts at byte 2147483647, past the end of the \d+-byte frame$/,
    );
    assert.equal(
      damaged((f) => f.writeUInt32LE(64, 8)),
      'frame 1: RLE segment 2 starts at byte 64, not after segment 1 (64)',
    );
    // Every byte after the header a no-op (-128): a sound header over segments that yield nothing.
    assert.equal(
      damaged((f) => f.fill(0x80, 64)),
      'frame 1: RLE segment 1 decodes to 0 bytes; Rows x Columns needs 4096',
    );
    const reference = Array.from(decodeFrame(parseDicomImage(dicomFile('MR_small.dcm'), LIMITS), 0).values);
    assert.deepEqual(Array.from(decodeFrame(parseDicomImage(file, LIMITS), 0).values), reference, 'the sound file');
  });

  it('refuses more pixels than the budget, or an implausible compression ratio, at parse, before decoding', () => {
    const parseRejection = (body: Buffer, limits = LIMITS): DicomRejected =>
      rejectionOf(() => parseDicomImage(body, limits), 'the file was accepted');
    // MR_small is 64x64: 4096 pixels.
    assert.equal(parseDicomImage(dicomFile('MR_small.dcm'), { ...LIMITS, maxPixels: 4096 }).rows, 64);
    const deflated = parseRejection(local('MR_small_deflated.dcm'), { ...LIMITS, maxPixels: 4095 });
    assert.equal(deflated.reason, 'UNSUPPORTED_PIXEL_FORMAT');
    assert.equal(
      deflated.detail,
      '1 frame(s) of 64x64 to analyse are 4096 pixels; at most 4095 are decoded per instance (MEDICAL_MAX_PIXELS)',
    );
    // 16384x16384 on the 64x64 file: refused by the default budget (64 Mi), not by the pixel data's length.
    assert.match(parseRejection(relabelled(dicomFile('MR_small.dcm'), 16_384, 16_384)).detail, /MEDICAL_MAX_PIXELS/);
    // Only the frames analysed count: 8 frames of 320x240 under `all`, one under `first` / `middle`.
    const cine = dicomFile('US_multiframe_jpeg_baseline.dcm');
    const budget = { ...LIMITS, maxPixels: 320 * 240 * 4 };
    assert.match(
      parseRejection(cine, { ...budget, maxAnalysedFrames: 256 }).detail,
      /^8 frame\(s\) of 320x240 to analyse are 614400 pixels/,
    );
    assert.equal(parseDicomImage(cine, { ...budget, maxAnalysedFrames: 1 }).numberOfFrames, 8);
    // A few kB of RLE or JPEG 2000 claiming 8192x8192 at 16 bits (128 MiB).
    for (const name of ['MR_small_RLE.dcm', 'MR_small_jp2klossless.dcm']) {
      const bomb = parseRejection(relabelled(dicomFile(name), 8192, 8192));
      assert.equal(bomb.reason, 'UNSUPPORTED_PIXEL_FORMAT', name);
      assert.match(bomb.detail, /would decode to 134217728 bytes from \d+ encoded: more than 1000:1/, name);
    }
  });

  it('reads native YBR_FULL_422 as two samples a pixel, and refuses a PlanarConfiguration other than 0 or 1, or 1 with YBR_FULL_422', () => {
    const rgb = dicomFile('US1_UNCR.dcm'); // 640x480 RGB, 8 bits, native
    const { rows, columns } = parseDicomImage(rgb, LIMITS);
    const pixels = rows * columns;
    const packed = new Uint8Array(2 * pixels); // Y1 Y2 Cb Cr per pair of pixels
    for (let pair = 0; pair < pixels / 2; pair++) {
      packed.set([(2 * pair) % 251, (2 * pair + 1) % 251, 128, 128], 4 * pair);
    }
    const ybr = rewriteDicom(rgb, { PhotometricInterpretation: 'YBR_FULL_422', PixelData: [packed.buffer] });
    const image = parseDicomImage(ybr, LIMITS);
    const frame = decodeFrame(image, 0);
    assert.equal(frame.values.length, 2 * pixels);
    const grey = toGrayscale(frame);
    assert.deepEqual(Array.from(grey.subarray(0, 6)), [0, 1, 2, 3, 4, 5]);
    assert.equal(grey[pixels - 1], (pixels - 1) % 251);
    for (const value of [2, 7]) {
      const refused = rejectionOf(() => parseDicomImage(rewriteDicom(rgb, { PlanarConfiguration: value }), LIMITS));
      assert.equal(refused.reason, 'UNSUPPORTED_PIXEL_FORMAT');
      assert.equal(refused.attribute, '(0028,0006) PlanarConfiguration');
      assert.equal(refused.detail, `(0028,0006) PlanarConfiguration ${value} is not 0 (interleaved) or 1 (planar)`);
    }
    // Native YBR_FULL_422 is interleaved in pixel pairs only (PS3.3); planar RGB is read.
    const planar = rejectionOf(() => parseDicomImage(rewriteDicom(ybr, { PlanarConfiguration: 1 }), LIMITS));
    assert.equal(planar.reason, 'UNSUPPORTED_PIXEL_FORMAT');
    assert.equal(planar.attribute, '(0028,0006) PlanarConfiguration');
    assert.match(
      planar.detail,
      /PlanarConfiguration 1 \(planar\) is not allowed with PhotometricInterpretation YBR_FULL_422/,
    );
    assert.equal(parseDicomImage(rewriteDicom(rgb, { PlanarConfiguration: 1 }), LIMITS).planarConfiguration, 1);
  });

  it("refuses a frame that traps its codec saying its data is no valid stream, not in the trap's words", async () => {
    // Found in the sweep: a JPEG baseline file relabelled as JPEG-LS was "frame 1 could not be decoded as JPEG-LS
    // Lossless: unreachable", a WebAssembly trap's message, which says nothing to a PACS.
    const cases: Array<[string, string, string]> = [
      ['SC_rgb_jpeg_dcmtk.dcm', '1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless'],
      ['MR_small_jp2klossless.dcm', '1.2.840.10008.1.2.4.201', 'HTJ2K Lossless'],
    ];
    for (const [name, ts, syntax] of cases) {
      const refused = decodeRejection(rewriteDicom(dicomFile(name), {}, ts));
      assert.equal(refused.reason, 'DECODE_FAILED', name);
      assert.equal(refused.attribute, '(7FE0,0010) PixelData', name);
      assert.equal(
        refused.detail,
        `frame 1 could not be decoded as ${syntax}: the frame's data is not a valid ${syntax} stream`,
        name,
      );
      await initialisePixelCodecs(); // the trap discarded the codecs
    }
    // A codec's own message is kept: libjpeg-turbo on a JPEG-LS frame relabelled as JPEG baseline.
    const own = decodeRejection(rewriteDicom(dicomFile('MR_small_jpeg_ls_lossless.dcm'), {}, '1.2.840.10008.1.2.4.50'));
    assert.match(
      own.detail,
      /^frame 1 could not be decoded as JPEG Baseline \(Process 1\): .*Unsupported marker type 0xf7$/,
    );
  });

  it("refuses a frame whose codec throws a RangeError like a trapped one, not in the RangeError's words", async () => {
    // A typed array over the codec's heap from a size a damaged stream left, or the codec's stack overflowing, is a
    // RangeError: its JavaScript text ("Start offset 16 is outside the bounds of the buffer") reached the client.
    const decodeRle = NativeCodecs.decodeRle.bind(NativeCodecs);
    const released: string[] = [];
    const release = NativeCodecs.release.bind(NativeCodecs);
    NativeCodecs.decodeRle = () => new Uint8Array(new ArrayBuffer(8), 16, 4) as never;
    NativeCodecs.release = () => {
      released.push('released');
      release();
    };
    try {
      const refused = decodeRejection(dicomFile('MR_small_RLE.dcm'));
      assert.equal(refused.reason, 'DECODE_FAILED');
      assert.equal(refused.attribute, '(7FE0,0010) PixelData');
      assert.equal(
        refused.detail,
        "frame 1 could not be decoded as RLE Lossless: the frame's data is not a valid RLE Lossless stream",
      );
      assert.deepEqual(released, ['released'], 'the codec instance is discarded, as after a trap');
    } finally {
      NativeCodecs.decodeRle = decodeRle;
      NativeCodecs.release = release;
      await initialisePixelCodecs();
    }
    const reference = Array.from(decodeFrame(parseDicomImage(dicomFile('MR_small.dcm'), LIMITS), 0).values);
    const again = decodeFrame(parseDicomImage(dicomFile('MR_small_RLE.dcm'), LIMITS), 0);
    assert.deepEqual(Array.from(again.values), reference);
  });

  it('decodes after a WebAssembly trap, in a fresh codec heap', async () => {
    // Rows / Columns 8192 on a 64x64 JPEG 2000 frame trap OpenJPEG ("memory access out of bounds") when the
    // codec is called without the header check, growing the module's heap by the claimed frame.
    // (The parse refuses such a file for its compression ratio, and decodeFrame for its header: relabelled here.)
    const image = { ...parseDicomImage(dicomFile('MR_small_jp2klossless.dcm'), LIMITS), rows: 8192, columns: 8192 };
    const element = image.dataSet.elements.x7fe00010;
    const encoded = dicomParser.readEncapsulatedPixelDataFromFragments(
      image.dataSet,
      element,
      0,
      element.fragments?.length ?? 0,
    ) as Uint8Array;
    const initial = codecHeapBytes();
    // Each trap left the heap as the trap had it; from the second on it grew by the claimed frame (388 MiB after three).
    for (let trap = 1; trap <= 3; trap++) {
      assert.throws(
        () => runCodec(image, 0, 'jpeg2000', encoded),
        (error: unknown) => error instanceof Error && error.constructor.name === 'RuntimeError',
      );
      await initialisePixelCodecs();
      assert.equal(codecHeapBytes(), initial, `a fresh heap after trap ${trap}`);
    }
    const reference = Array.from(decodeFrame(parseDicomImage(dicomFile('MR_small.dcm'), LIMITS), 0).values);
    for (const name of ['MR_small_jpeg_ls_lossless.dcm', 'MR_small_jp2klossless.dcm', 'MR_small_RLE.dcm']) {
      assert.deepEqual(Array.from(decodeFrame(parseDicomImage(dicomFile(name), LIMITS), 0).values), reference, name);
    }
  });
});

describe('medical: a multi-frame JPEG as a dcmjs-dimse C-STORE sends it', { skip: DICOM_SKIP }, () => {
  before(() => initialisePixelCodecs());

  it('decodes every frame as from the file, the Basic Offset Table of one entry per fragment left aside', () => {
    // Its CStoreRequest reads the file with dcmjs and writes it again: 44 fragments for 8 frames, no offset table,
    // came out with a table of 44 entries (one per fragment, as if each were a frame), and the C-STORE was
    // answered 0xC000 (MALFORMED: 44 fragments and no usable offset table for 8 frames).
    const name = 'US_multiframe_jpeg_baseline.dcm';
    const sent = Dataset.fromFile(join(SHARED_DICOM, name));
    assert.ok(sent);
    const received = part10File(sent.getDenaturalizedDataset(), {
      sopClassUid: String(sent.getElement('SOPClassUID')),
      sopInstanceUid: String(sent.getElement('SOPInstanceUID')),
      transferSyntaxUid: sent.getTransferSyntaxUid(),
    });
    const image = parseDicomImage(received, LIMITS);
    const original = parseDicomImage(dicomFile(name), LIMITS);
    const pixels = image.dataSet.elements.x7fe00010;
    assert.deepEqual(
      [
        pixels.fragments?.length,
        pixels.basicOffsetTable?.length,
        original.dataSet.elements.x7fe00010.basicOffsetTable?.length,
      ],
      [44, 44, 0],
      'what dcmjs writes',
    );
    assert.equal(image.numberOfFrames, 8);
    for (let frame = 0; frame < 8; frame++) {
      assert.deepEqual(decodeFrame(image, frame).values, decodeFrame(original, frame).values, `frame ${frame + 1}`);
    }
  });
  it('decodes every frame as from the file when the Basic Offset Table has one entry per frame that locates no fragment', () => {
    // A table measured from the first byte of the pixel data value (its own item, 8 bytes, and 32 of entries) rather
    // than from the first fragment's item: dicom-parser could not find the fragments and each frame was refused (422).
    const name = 'US_multiframe_jpeg_baseline.dcm';
    const original = parseDicomImage(dicomFile(name), LIMITS);
    const element = original.dataSet.elements.x7fe00010;
    const offsets = dicomParser.createJPEGBasicOffsetTable(original.dataSet, element);
    assert.equal(offsets.length, 8);
    for (const entries of [offsets.map((offset) => offset + 40), [...offsets].reverse()]) {
      const image = parseDicomImage(withBasicOffsetTable(dicomFile(name), entries), LIMITS);
      assert.deepEqual(image.dataSet.elements.x7fe00010.basicOffsetTable, entries);
      for (let frame = 0; frame < 8; frame++) {
        assert.deepEqual(decodeFrame(image, frame).values, decodeFrame(original, frame).values, `frame ${frame + 1}`);
      }
    }
  });
});

describe(
  'medical: multi-frame JPEG-LS, JPEG 2000 and HTJ2K, frames in several fragments, no offset table',
  { skip: DICOM_SKIP },
  () => {
    before(() => initialisePixelCodecs());

    const SYNTAXES: Array<[string, string]> = [
      ['JPEG-LS lossless', '1.2.840.10008.1.2.4.80'],
      ['JPEG 2000 lossless', '1.2.840.10008.1.2.4.90'],
      ['HTJ2K lossless', '1.2.840.10008.1.2.4.201'],
    ];
    const STARTS: Record<string, string> = {
      '1.2.840.10008.1.2.4.80': 'a JPEG-LS codestream (SOI)',
      '1.2.840.10008.1.2.4.90': 'a JPEG 2000 codestream (SOC then SIZ, or a JP2 signature)',
      '1.2.840.10008.1.2.4.201': 'an HTJ2K codestream (SOC then SIZ, or a JP2 signature)',
    };
    // emri_small_RLE: 10 frames of 64x64 MR, 12 bits stored, each a different slice.
    const source = (): { file: Buffer; original: ReturnType<typeof parseDicomImage> } => {
      const file = dicomFile('emri_small_RLE.dcm');
      return { file, original: parseDicomImage(file, LIMITS) };
    };
    /** The original's frames re-encoded in `ts`, each cut in 2 or 3 fragments, behind an empty offset table. */
    const reencoded = (ts: string, extendedOffsetTable = false): Buffer => {
      const { file, original } = source();
      const frames = Array.from({ length: original.numberOfFrames }, (_, k) =>
        encodedLossless(decodeFrame(original, k).values, original, ts),
      );
      return fragmentedFrames(file, frames, ts, { fragmentsPerFrame: (k) => 2 + (k % 2), extendedOffsetTable });
    };

    it('decodes each frame as the original file gives it, the frames found by their codestreams start markers', () => {
      const { original } = source();
      for (const [name, ts] of SYNTAXES) {
        const image = parseDicomImage(reencoded(ts), LIMITS);
        const pixels = image.dataSet.elements.x7fe00010;
        assert.deepEqual([pixels.fragments?.length, pixels.basicOffsetTable?.length], [25, 0], name);
        assert.equal(image.numberOfFrames, 10, name);
        for (let frame = 0; frame < 10; frame++) {
          assert.deepEqual(
            Array.from(decodeFrame(image, frame).values),
            Array.from(decodeFrame(original, frame).values),
            `${name}, frame ${frame + 1}`,
          );
        }
      }
    });

    it('decodes the file DCMTK writes so (dcmcjpls +fs 1 -ot: 41 fragments of 1 KiB), frame by frame as the original', () => {
      const { original } = source();
      const image = parseDicomImage(local('emri_small_jpeg_ls_fragmented.dcm'), LIMITS);
      const pixels = image.dataSet.elements.x7fe00010;
      assert.deepEqual([pixels.fragments?.length, pixels.basicOffsetTable?.length, image.numberOfFrames], [41, 0, 10]);
      for (let frame = 0; frame < 10; frame++) {
        assert.deepEqual(
          Array.from(decodeFrame(image, frame).values),
          Array.from(decodeFrame(original, frame).values),
          `frame ${frame + 1}`,
        );
      }
    });

    it('decodes the real files codestreams cut in fragments, three frames of each', () => {
      const reference = mrSmallPixels();
      for (const { name, ts, file, codestream } of mrSmallCodestreams()) {
        const image = parseDicomImage(
          fragmentedFrames(file, [codestream, codestream, codestream], ts, { fragmentsPerFrame: (k) => k + 1 }),
          LIMITS,
        );
        assert.equal(image.dataSet.elements.x7fe00010.fragments?.length, 6, name);
        for (let frame = 0; frame < 3; frame++) {
          assert.deepEqual(Array.from(decodeFrame(image, frame).values), reference, `${name}, frame ${frame + 1}`);
        }
      }
    });

    it('still refuses, naming PixelData, where the start markers do not give one frame each', () => {
      const { file, original } = source();
      for (const [name, ts] of SYNTAXES) {
        const frames = Array.from({ length: original.numberOfFrames }, (_, k) =>
          encodedLossless(decodeFrame(original, k).values, original, ts),
        );
        frames[3] = Uint8Array.from([0, ...frames[3]]); // frame 4 no longer starts with its marker: 9 starts for 10
        const image = parseDicomImage(fragmentedFrames(file, frames, ts, { fragmentsPerFrame: () => 2 }), LIMITS);
        const refused = rejectionOf(() => decodeFrame(image, 0), 'the frame was decoded');
        assert.equal(refused.reason, 'MALFORMED', name);
        assert.equal(refused.attribute, '(7FE0,0010) PixelData', name);
        // The refusal says how many frame starts were found against how many frames, and what a start is.
        assert.equal(
          refused.detail,
          'the encapsulated pixel data has 20 fragments and no usable offset table for 10 frames, and 9 fragments ' +
            '(not 10, one per frame as (0028,0008) NumberOfFrames gives) begin ' +
            STARTS[ts] +
            ': the frames cannot be told apart',
          name,
        );
      }
    });

    it('refuses more codestreams than NumberOfFrames gives (absent or 1), naming it, and reads one frame in fragments', () => {
      // The 8-frame JPEG without NumberOfFrames (Type 1 in its IOD), or with 1: its first frame was analysed and
      // answered, the other 7 never looked at.
      const cine = dicomFile('US_multiframe_jpeg_baseline.dcm');
      for (const frames of [null, '1']) {
        const refused = decodeRejection(rewriteDicom(cine, { NumberOfFrames: frames }));
        assert.equal(refused.reason, 'MALFORMED', String(frames));
        assert.equal(refused.attribute, '(0028,0008) NumberOfFrames');
        assert.equal(
          refused.detail,
          'the encapsulated pixel data holds 8 frames (fragments that begin a codestream), (0028,0008) NumberOfFrames gives 1',
        );
      }
      // Native pixel data holding a whole frame more than NumberOfFrames gives; a few bytes more are read past.
      const mr = dicomFile('MR_small.dcm'); // 64x64, 16 bits: 8192 bytes a frame
      const twice = rejectionOf(() =>
        parseDicomImage(rewriteDicom(mr, { PixelData: [new Uint16Array(2 * 4096).buffer] }), LIMITS),
      );
      assert.equal(twice.attribute, '(0028,0008) NumberOfFrames');
      assert.equal(
        twice.detail,
        'PixelData holds 2 frames of 64x64x1 at 16 bits (16384 bytes), (0028,0008) NumberOfFrames gives 1',
      );
      assert.equal(
        parseDicomImage(rewriteDicom(mr, { PixelData: [new Uint16Array(4096 + 8).buffer] }), LIMITS).rows,
        64,
      );
      // The 10-frame RLE MR (one fragment a frame, each with its RLE header) said to have 1.
      const rle = decodeRejection(rewriteDicom(dicomFile('emri_small_RLE.dcm'), { NumberOfFrames: '1' }));
      assert.equal(rle.attribute, '(0028,0008) NumberOfFrames');
      assert.equal(
        rle.detail,
        'the encapsulated pixel data holds 10 frames (fragments that begin a codestream), (0028,0008) NumberOfFrames gives 1',
      );
      // One frame cut in 3 fragments: only the first begins a codestream.
      const reference = mrSmallPixels();
      for (const { name, ts, file, codestream } of mrSmallCodestreams()) {
        const image = parseDicomImage(fragmentedFrames(file, [codestream], ts, { fragmentsPerFrame: () => 3 }), LIMITS);
        assert.equal(image.dataSet.elements.x7fe00010.fragments?.length, 3, name);
        assert.deepEqual(Array.from(decodeFrame(image, 0).values), reference, name);
      }
    });

    it('reads a data set with an Extended Offset Table (OV) and its lengths (UV), and decodes each frame', () => {
      const { original } = source();
      for (const [name, ts] of SYNTAXES) {
        const image = parseDicomImage(reencoded(ts, true), LIMITS);
        assert.equal(image.dataSet.elements.x7fe00001?.length, 80, name);
        assert.equal(image.dataSet.elements.x7fe00010.fragments?.length, 25, name);
        for (let frame = 0; frame < 10; frame++) {
          assert.deepEqual(
            Array.from(decodeFrame(image, frame).values),
            Array.from(decodeFrame(original, frame).values),
            `${name}, frame ${frame + 1}`,
          );
        }
      }
    });
  },
);

describe('medical: PALETTE COLOR images, analysed as the RGB their palette gives', { skip: DICOM_SKIP }, () => {
  before(() => initialisePixelCodecs());

  // US1_UNCR (640x480 RGB): its red samples as palette indices, through a palette that is no grey ramp.
  const rgbFile = (): Buffer => dicomFile('US1_UNCR.dcm');
  const palette = (k: number): [number, number, number] => [k, 255 - k, (k * 7) % 256];
  const indicesOf = (file: Buffer): number[] => {
    const values = decodeFrame(parseDicomImage(file, LIMITS), 0).values;
    return Array.from({ length: values.length / 3 }, (_, i) => values[3 * i]);
  };
  /** The same image as RGB, the palette applied here. */
  const expectedRgb = (indices: number[]): Buffer =>
    rewriteDicom(rgbFile(), {
      PlanarConfiguration: 0,
      PixelData: [Uint8Array.from(indices.flatMap((k) => palette(k))).buffer],
    });
  const paletteFile = (
    indices: number[],
    options: { bits: 8 | 16; firstMapped: number; descriptorBits?: number },
  ): Buffer => {
    const table = (channel: number): ArrayBuffer =>
      options.bits === 8
        ? Uint8Array.from({ length: 256 }, (_, k) => palette(k)[channel]).buffer
        : Uint16Array.from({ length: 256 }, (_, k) => palette(k)[channel] * 257).buffer;
    const descriptor = [256, options.firstMapped, options.descriptorBits ?? options.bits];
    const wide = options.firstMapped > 0;
    return rewriteDicom(rgbFile(), {
      SamplesPerPixel: 1,
      PhotometricInterpretation: 'PALETTE COLOR',
      PlanarConfiguration: null,
      BitsAllocated: wide ? 16 : 8,
      BitsStored: wide ? 16 : 8,
      HighBit: wide ? 15 : 7,
      PixelData: [
        wide ? Uint16Array.from(indices, (k) => k + options.firstMapped).buffer : Uint8Array.from(indices).buffer,
      ],
      RedPaletteColorLookupTableDescriptor: descriptor,
      GreenPaletteColorLookupTableDescriptor: descriptor,
      BluePaletteColorLookupTableDescriptor: descriptor,
      RedPaletteColorLookupTableData: [table(0)],
      GreenPaletteColorLookupTableData: [table(1)],
      BluePaletteColorLookupTableData: [table(2)],
    });
  };

  it('decodes each pixel to its palette entry, 8- or 16-bit entries, from the first value mapped', () => {
    const indices = indicesOf(rgbFile());
    const expected = decodeFrame(parseDicomImage(expectedRgb(indices), LIMITS), 0);
    for (const options of [
      { bits: 8, firstMapped: 0 },
      { bits: 16, firstMapped: 0 },
      { bits: 16, firstMapped: 1000 },
      { bits: 16, firstMapped: 0, descriptorBits: 8 }, // 16-bit entries that say 8
    ] as const) {
      const image = parseDicomImage(paletteFile(indices, options), LIMITS);
      assert.equal(image.photometric, 'PALETTE COLOR');
      const frame = decodeFrame(image, 0);
      assert.deepEqual(
        [frame.photometric, frame.samplesPerPixel, frame.planarConfiguration],
        ['RGB', 3, 0],
        JSON.stringify(options),
      );
      assert.deepEqual(Buffer.from(frame.values), Buffer.from(expected.values), JSON.stringify(options));
      // The pipeline reads it as the RGB image, 8 bits a sample, whatever the indices' bits.
      assert.deepEqual(
        frameTo01(frame, frameOptionsOf(image)),
        frameTo01(expected, frameOptionsOf(parseDicomImage(expectedRgb(indices), LIMITS))),
        JSON.stringify(options),
      );
    }
  });

  it('refuses a palette image without its lookup table data, or with a segmented one, naming it', () => {
    const file = paletteFile(indicesOf(rgbFile()), { bits: 8, firstMapped: 0 });
    const missing = rejectionOf(() =>
      parseDicomImage(rewriteDicom(file, { GreenPaletteColorLookupTableData: null }), LIMITS),
    );
    assert.equal(missing.reason, 'MALFORMED');
    assert.equal(missing.attribute, '(0028,1202) GreenPaletteColorLookupTableData');
    const segmented = rejectionOf(() =>
      parseDicomImage(
        rewriteDicom(file, {
          RedPaletteColorLookupTableData: null,
          SegmentedRedPaletteColorLookupTableData: [Uint16Array.of(0, 1, 0).buffer],
        }),
        LIMITS,
      ),
    );
    assert.equal(segmented.reason, 'UNSUPPORTED_PIXEL_FORMAT');
    assert.match(segmented.detail, /segmented, \(0028,1221\) SegmentedRedPaletteColorLookupTableData/);
    const noDescriptor = rejectionOf(() =>
      parseDicomImage(rewriteDicom(file, { BluePaletteColorLookupTableDescriptor: null }), LIMITS),
    );
    assert.equal(noDescriptor.attribute, '(0028,1103) BluePaletteColorLookupTableDescriptor');
  });
});
