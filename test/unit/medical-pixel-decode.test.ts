import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import * as dicomParser from 'dicom-parser';
import { NativeCodecs } from 'dcmjs-codecs';
import { parseDicomImage } from '../../src/domains/medical/dicom/dicom-parse.util';
import { DicomRejected } from '../../src/domains/medical/dicom/dicom-rejected';
import { decodeFrame, initialisePixelCodecs, runCodec } from '../../src/domains/medical/dicom/pixel-decode.util';
import { relabelled } from '../fixtures/dicom-crafted';
import { DICOM_SKIP, dicomFile } from '../fixtures/dicom-files';
import { REPO_ROOT } from '../fixtures/paths';

const LIMITS = { maxInflatedBytes: 64 * 1024 * 1024, maxRows: 16_384, maxColumns: 16_384 };
const local = (name: string): Buffer => readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'dicom', name));

function decodeRejection(body: Buffer, frame = 0): DicomRejected {
  const image = parseDicomImage(body, LIMITS);
  try {
    decodeFrame(image, frame);
  } catch (error) {
    if (error instanceof DicomRejected) return error;
    throw error;
  }
  assert.fail('the frame was decoded');
}

/** Bytes of the codec module's WebAssembly memory (dcmjs-codecs keeps its instance in a static field). */
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
        [8192, 8192],
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

  it('decodes after a WebAssembly trap, in a fresh codec heap', async () => {
    // Rows / Columns 8192 on a 64x64 JPEG 2000 frame trap OpenJPEG ("memory access out of bounds") when the
    // codec is called without the header check, growing the module's heap by the claimed frame.
    const file = relabelled(dicomFile('MR_small_jp2klossless.dcm'), 8192, 8192);
    const image = parseDicomImage(file, LIMITS);
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
