import assert from 'node:assert/strict';
import { renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { data as dcmjsData, log as dcmjsLog } from 'dcmjs';
import * as dicomParser from 'dicom-parser';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AuditInputDigester } from '../../src/common/access';
import { deflatedBomb, encodedLossless, fragmentedFrames, rewriteDicom } from '../fixtures/dicom-crafted';
import {
  DECODABLE_FILES,
  DICOM_SKIP,
  dicomFile,
  localDicomFile,
  medicalModelsDir,
  multipartRelated,
  TEST_PARSE_LIMITS,
} from '../fixtures/dicom-files';
import { parseDicomImage } from '../../src/domains/medical/dicom/dicom-parse.util';
import { decodeFrame, initialisePixelCodecs } from '../../src/domains/medical/dicom/pixel-decode.util';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { srSeries } from '../../src/domains/medical/sr/sr-series.util';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';
import { childrenNamed, parseXml, XmlElement } from '../fixtures/xml-document';

dcmjsLog.setLevel('silent');

interface Problem {
  status: number;
  code: string;
  detail: string;
  errors?: Array<{ field: string; reason: string }>;
}

interface Findings {
  sopInstanceUID: string;
  studyInstanceUID: string;
  modality: string;
  columns: number;
  rows: number;
  frames: Array<{
    frameNumber: number;
    malignancyProbability?: number;
    lesions: Array<{
      box: { x: number; y: number; width: number; height: number };
      lesionProbability: number;
      sizeMm?: { widthMm: number; heightMm: number; areaMm2: number; source: string };
    }>;
  }>;
  model: { name: string; version: string };
}

/** What each shared file must give with the reference model (it accepts ultrasound only). */
const EXPECTED: Record<string, { status: number; reason?: string; frames?: number; detail?: RegExp }> = {
  'US1_UNCR.dcm': { status: 200, frames: 1 },
  'US_multiframe_jpeg_baseline.dcm': { status: 200, frames: 8 },
  'CT_small.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED', detail: /modality CT is not accepted.*accepts US/ },
  'CT1_UNC.explicit_little_endian.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED' },
  'MR_small.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED', detail: /modality MR/ },
  'MR_small_implicit.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED' },
  'MR_small_bigendian.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED' },
  'MR_small_RLE.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED' },
  'emri_small_RLE.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED' },
  'MR_small_jpeg_ls_lossless.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED' },
  'MR_small_jp2klossless.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED' },
  'JPEG-lossy.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED', detail: /modality NM/ },
  'SC_rgb_jpeg_dcmtk.dcm': { status: 422, reason: 'MODALITY_NOT_ACCEPTED', detail: /modality OT/ },
  'liver_1frame.dcm': { status: 422, reason: 'NOT_AN_IMAGE', detail: /segmentation \(SEG\)/ },
  'test-SR.dcm': { status: 422, reason: 'NOT_AN_IMAGE', detail: /structured report \(SR\)/ },
  'rtplan.dcm': { status: 422, reason: 'NOT_AN_IMAGE', detail: /radiotherapy object \(RT\)/ },
  'MR_truncated.dcm': { status: 400, reason: 'MALFORMED', detail: /truncated/ },
  'no_meta.dcm': { status: 400, reason: 'NOT_DICOM', detail: /DICM/ },
};

function uidOf(file: Buffer, tag: string): string {
  const ab = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer;
  const dict = dcmjsData.DicomMessage.readFile(ab).dict;
  return String(dict[tag].Value?.[0]);
}

/** The answer says a cache must key it by Accept too (RFC 9110 12.5.5): its form was chosen by that header. */
function assertVariesOnAccept(headers: Record<string, string | undefined>, what: string): void {
  const vary = (headers.vary ?? '').split(',').map((v) => v.trim().toLowerCase());
  assert.ok(vary.includes('accept'), `${what}: Vary is "${headers.vary}"`);
}

/** A UID of a file's meta group, which dicom-parser reads even where the data set after it is truncated. */
function metaUidOf(file: Buffer, tag: string): string {
  return String(dicomParser.readPart10Header(file).string(`x${tag}`)?.trim());
}

describe('medical: DICOM in, lesion findings out', { skip: DICOM_SKIP }, () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let modelsDir: string;
  const pacs = bearer(tokenFor(['pacs-integration'], { sub: 'pacs-1' }));
  before(async () => {
    modelsDir = medicalModelsDir();
    app = await createTestApp({ MODELS_DIR: modelsDir });
    http = request(app.getHttpServer());
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });
  /** Runtime calls to the lesion model so far, by the gateway's own metric. */
  const inferenceCount = async (): Promise<number> => {
    const text = (await http.get('/metrics').set('Authorization', bearer(tokenFor(['monitoring'])))).text;
    return [...text.matchAll(/^gateway_inference_requests_total\{[^}]*model="breast-us-lesion"[^}]*\} (\d+)/gm)]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
  };
  const postDicom = (body: Buffer, accept = 'application/json') =>
    http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', pacs)
      .set('Content-Type', 'application/dicom')
      .set('Accept', accept)
      .send(body);
  /** postDicom with the answer read as bytes (an SR), whatever its media type. */
  const postDicomForBytes = (body: Buffer, accept: string) =>
    postDicom(body, accept)
      .buffer(true)
      .parse((r, done) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => done(null, Buffer.concat(chunks)));
      });

  for (const [file, expected] of Object.entries(EXPECTED)) {
    it(`${file}: ${expected.status === 200 ? 'findings' : expected.reason}`, async () => {
      const res = await postDicom(dicomFile(file));
      assert.equal(res.status, expected.status, JSON.stringify(res.body));
      if (expected.status === 200) {
        const findings = res.body as Findings;
        assert.equal(findings.frames.length, expected.frames);
        assert.equal(findings.modality, 'US');
        assert.deepEqual(findings.model, { name: 'breast-us-lesion', version: '1' });
        assert.equal(findings.sopInstanceUID, uidOf(dicomFile(file), '00080018'));
        assertVariesOnAccept(res.headers, `${file} as JSON`);
        for (const frame of findings.frames) {
          assert.ok(frame.malignancyProbability! >= 0 && frame.malignancyProbability! <= 1);
          for (const lesion of frame.lesions) {
            assert.ok(lesion.box.x >= 0 && lesion.box.x + lesion.box.width <= findings.columns + 1e-6);
            assert.ok(lesion.box.y >= 0 && lesion.box.y + lesion.box.height <= findings.rows + 1e-6);
            assert.ok(lesion.lesionProbability >= 0.6, 'a lesion is above the manifest threshold');
          }
        }
      } else {
        const problem = res.body as Problem;
        assert.match(String(res.headers['content-type']), /application\/problem\+json/);
        assert.equal(problem.status, expected.status);
        assert.match(problem.errors?.[0]?.reason ?? '', new RegExp(`^${expected.reason}:`));
        if (expected.detail) assert.match(problem.detail, expected.detail);
      }
    });
  }

  it('audits each instance and STOW body with the keyed digest of the bytes sent, answered or refused', async () => {
    // The digest is worked out beside the analysis (on the thread pool): it must still be the one of these bytes.
    const digester = app.get(AuditInputDigester);
    const files = [
      'US1_UNCR.dcm',
      'US_multiframe_jpeg_baseline.dcm',
      'CT_small.dcm',
      'MR_truncated.dcm',
      'no_meta.dcm',
    ];
    for (const [i, file] of files.entries()) {
      const res = await postDicom(dicomFile(file)).set('X-Request-Id', `digest-${i}`);
      assert.ok(res.status === 200 || res.status === 400 || res.status === 422, `${file}: ${res.status}`);
    }
    const parts = [dicomFile('US1_UNCR.dcm'), dicomFile('MR_truncated.dcm')];
    const stow = multipartRelated(parts);
    const stored = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', stow.contentType)
      .set('X-Request-Id', 'digest-stow')
      .send(stow.body);
    assert.equal(stored.status, 202, stored.text.slice(0, 300));
    const rows = await app
      .get(DataSource)
      .query<Array<{ request_id: string; input_digest: string }>>(
        "SELECT request_id, input_digest FROM audit_events WHERE request_id LIKE 'digest-%'",
      );
    const byId = new Map(rows.map((r) => [r.request_id, r.input_digest]));
    for (const [i, file] of files.entries()) {
      assert.equal(byId.get(`digest-${i}`), digester.digest([dicomFile(file)]), file);
    }
    const eachPart = parts.map((p) => Buffer.from(digester.digest([p]), 'hex'));
    assert.equal(byId.get('digest-stow'), digester.digest([Buffer.concat(eachPart)]));
  });

  it('answers a DICOM Comprehensive SR on Accept: application/dicom', async () => {
    const source = dicomFile('US1_UNCR.dcm');
    const res = await postDicomForBytes(source, 'application/dicom');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /application\/dicom/);
    assertVariesOnAccept(res.headers, 'the SR');
    const sr = res.body as Buffer;
    const dict = dcmjsData.DicomMessage.readFile(
      sr.buffer.slice(sr.byteOffset, sr.byteOffset + sr.length) as ArrayBuffer,
    ).dict;
    assert.equal(dict['00080016'].Value?.[0], '1.2.840.10008.5.1.4.1.1.88.33');
    assert.equal(dict['0020000D'].Value?.[0], uidOf(source, '0020000D'));
    assert.ok(JSON.stringify(dict).includes(uidOf(source, '00080018')), 'the SR references the source image');
    // The study's date and time are copied in the source's offset (-0400), which the SR states for all of its own.
    assert.deepEqual([dict['00080020'].Value?.[0], dict['00080030'].Value?.[0]], ['20040826', '185059']);
    assert.equal(dict['00080201'].Value?.[0], '-0400');
  });

  it("puts the SRs of a study's images in one series, each numbered by its image, the same after a restart", async () => {
    const study = '1.2.826.0.1.3680043.9.7431.115.1';
    const first = rewriteDicom(dicomFile('US1_UNCR.dcm'), { StudyInstanceUID: study });
    const second = rewriteDicom(first, {
      SOPInstanceUID: '1.2.826.0.1.3680043.9.7431.115.3',
      SeriesInstanceUID: '1.2.826.0.1.3680043.9.7431.115.2',
    });
    const other = rewriteDicom(first, { StudyInstanceUID: '1.2.826.0.1.3680043.9.7431.115.9' });
    const srOf = async (source: Buffer): Promise<Record<string, { Value?: unknown[] | null }>> => {
      const res = await postDicomForBytes(source, 'application/dicom');
      assert.equal(res.status, 200);
      const sr = res.body as Buffer;
      return dcmjsData.DicomMessage.readFile(sr.buffer.slice(sr.byteOffset, sr.byteOffset + sr.length) as ArrayBuffer)
        .dict;
    };
    const [a, b, again, elsewhere] = [await srOf(first), await srOf(second), await srOf(first), await srOf(other)];
    const series = (dict: Record<string, { Value?: unknown[] | null }>) => dict['0020000E'].Value?.[0];
    const number = (dict: Record<string, { Value?: unknown[] | null }>) => Number(dict['00200013'].Value?.[0]);
    assert.equal(series(a), series(b), 'one series for the study');
    assert.equal(series(again), series(a));
    assert.notEqual(series(elsewhere), series(a), 'another study, another series');
    assert.notEqual(number(a), number(b), 'two images, two numbers');
    assert.equal(number(again), number(a), 'the same image analysed again keeps its number');
    assert.notEqual(a['00080018'].Value?.[0], again['00080018'].Value?.[0], 'each SR is an instance of its own');
    assert.equal(a['00080021'], undefined, 'no SeriesDate: each SR would state its own');
    // Worked out from the study, the image and the secret: a restarted gateway, or another with the secret, agrees.
    const digester = app.get(AuditInputDigester);
    const expected = srSeries(
      (parts) => digester.digest(parts.map((p) => Buffer.from(p))),
      study,
      uidOf(first, '00080018'),
      {
        name: 'breast-us-lesion',
        version: '1',
      },
    );
    assert.equal(series(a), expected.seriesInstanceUID);
    assert.equal(number(a), expected.instanceNumber);
  });

  it('writes the SR in the transfer syntax Accept names, and refuses one it cannot write with 406, analysing nothing', async () => {
    const source = dicomFile('US1_UNCR.dcm');
    const binary = (accept: string, requestId?: string) => {
      const req = postDicomForBytes(source, accept);
      return requestId ? req.set('X-Request-Id', requestId) : req;
    };
    const [EXPLICIT, IMPLICIT, DEFLATED] = ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2', '1.2.840.10008.1.2.1.99'];
    const written: Array<[string, string]> = [
      ['application/dicom', EXPLICIT],
      [`application/dicom; transfer-syntax=${EXPLICIT}`, EXPLICIT],
      [`application/dicom; transfer-syntax=${IMPLICIT}`, IMPLICIT],
      [`application/dicom; transfer-syntax=${DEFLATED}`, DEFLATED],
      ['application/dicom; transfer-syntax=*', EXPLICIT],
      [
        `application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50, application/dicom; transfer-syntax=${IMPLICIT}; q=0.5`,
        IMPLICIT,
      ],
      [
        `application/dicom; transfer-syntax=${IMPLICIT}; q=0.5, application/dicom; transfer-syntax=${DEFLATED}; q=0.8, application/json; q=0.1`,
        DEFLATED,
      ],
    ];
    for (const [accept, ts] of written) {
      const res = await binary(accept);
      assert.equal(res.status, 200, accept);
      assert.equal(res.headers['content-type'], `application/dicom; transfer-syntax=${ts}`, accept);
      assertVariesOnAccept(res.headers, accept);
      const sr = res.body as Buffer;
      const file = dcmjsData.DicomMessage.readFile(
        sr.buffer.slice(sr.byteOffset, sr.byteOffset + sr.length) as ArrayBuffer,
      );
      assert.equal(file.meta['00020010'].Value?.[0], ts, accept);
      assert.equal(file.dict['00080016'].Value?.[0], '1.2.840.10008.5.1.4.1.1.88.33', accept);
      assert.equal(file.dict['0020000D'].Value?.[0], uidOf(source, '0020000D'), accept);
    }

    const ranBefore = await inferenceCount();
    const refused = [
      'application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50',
      'application/dicom; transfer-syntax=1.2.840.10008.1.2.2, text/html',
      'application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90, application/json;q=0',
    ];
    for (const [i, accept] of refused.entries()) {
      const res = await binary(accept, `sr-406-${i}`);
      assert.equal(res.status, 406, accept);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assertVariesOnAccept(res.headers, `406 to ${accept}`);
      const problem = JSON.parse((res.body as Buffer).toString('utf8')) as Problem;
      assert.equal(problem.code, 'NOT_ACCEPTABLE');
      assert.equal(problem.errors?.[0]?.field, 'Accept');
      for (const ts of [EXPLICIT, IMPLICIT, DEFLATED]) assert.ok(problem.detail.includes(`${ts} (`), problem.detail);
    }
    assert.equal(await inferenceCount(), ranBefore, 'nothing was analysed');
    const rows = await app
      .get(DataSource)
      .query<Array<Record<string, unknown>>>(
        'SELECT outcome, status_code, output_summary FROM audit_events WHERE request_id = ANY($1)',
        [refused.map((_a, i) => `sr-406-${i}`)],
      );
    assert.deepEqual(
      rows.map((r) => [r.outcome, r.status_code, r.output_summary]),
      refused.map(() => ['invalid', 406, { reason: 'NOT_ACCEPTABLE' }]),
    );
    // A header that takes neither JSON nor DICOM still gets JSON, as before; one that falls back to JSON too.
    for (const accept of [
      'text/html',
      'application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50, application/json;q=0.2',
    ]) {
      const res = await postDicom(source, accept);
      assert.equal(res.status, 200, accept);
      assert.match(String(res.headers['content-type']), /^application\/json/, accept);
    }
  });

  it('refuses a RescaleSlope that overflows float32 with 422 naming it, for a JSON and an SR answer alike', async () => {
    // Found in review: 1e300 ran the model on NaN, answered 200 with no lesion (JSON) or 500 (SR).
    const body = rewriteDicom(dicomFile('MR_small.dcm'), {
      Modality: 'US',
      RescaleSlope: 1e300,
      RescaleIntercept: 0,
      WindowCenter: null,
      WindowWidth: null,
    });
    for (const accept of ['application/json', 'application/dicom']) {
      const res = await postDicom(body, accept);
      assert.equal(res.status, 422, `${accept}: ${res.status}`);
      const problem = JSON.parse(Buffer.isBuffer(res.body) ? res.body.toString() : res.text) as Problem;
      assert.equal(problem.code, 'DICOM_UNSUPPORTED');
      assert.equal(problem.errors?.[0]?.field, '(0028,1053) RescaleSlope');
      assert.match(problem.detail, /^RescaleSlope 1e\+300: the modality LUT/);
    }
  });

  it('leaves the sizes in mm out for an implausible PixelSpacing, in JSON and in the SR, rather than fail', async () => {
    // Found in review: 1e300\1e300 gave widths of 3e301 mm, a null area, and a 500 for an SR.
    const withSpacing = (spacing: number) =>
      rewriteDicom(dicomFile('US1_UNCR.dcm'), { PixelSpacing: [spacing, spacing] });
    const calibrated = await postDicom(withSpacing(0.1));
    assert.equal(calibrated.status, 200, calibrated.text.slice(0, 300));
    const lesions = (calibrated.body as Findings).frames[0].lesions;
    assert.ok(lesions.length > 0 && lesions.every((l) => l.sizeMm !== undefined), 'a plausible spacing sizes them');
    const implausible = await postDicom(withSpacing(1e300));
    assert.equal(implausible.status, 200, implausible.text.slice(0, 300));
    const uncalibrated = (implausible.body as Findings).frames[0].lesions;
    assert.equal(uncalibrated.length, lesions.length);
    assert.ok(
      uncalibrated.every((l) => l.sizeMm === undefined),
      'no size in mm',
    );
    const sr = await postDicom(withSpacing(1e300), 'application/dicom');
    assert.equal(sr.status, 200);
    assert.match(String(sr.headers['content-type']), /application\/dicom/);
  });

  it('refuses a body that is not application/dicom with 415 naming Content-Type, and a caller without medical:infer', async () => {
    // JSON is a type the gateway parses (for other routes), multipart one it reads as bytes (for STOW-RS): still 415
    // here, as for a type no route reads, not a 400 that reads as if the DICOM itself were malformed.
    const json = await http.post('/v1/medical/lesion-detections').set('Authorization', pacs).send({ a: 1 });
    const stow = multipartRelated([dicomFile('US1_UNCR.dcm')]);
    const multipart = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', pacs)
      .set('Content-Type', stow.contentType)
      .send(stow.body);
    // The DICOM file itself labelled JSON (a client's default) was read by the JSON parser: 400 "not valid JSON".
    const dicomAsJson = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', pacs)
      .set('Content-Type', 'application/json')
      // As they are: superagent would write a Buffer labelled JSON as the JSON of the Buffer object.
      .serialize((bytes: Buffer) => bytes as unknown as string)
      .send(dicomFile('US1_UNCR.dcm'));
    for (const res of [json, multipart, dicomAsJson]) {
      assert.equal(res.status, 415, res.text);
      assert.equal((res.body as Problem).code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.deepEqual((res.body as Problem).errors, [{ field: 'Content-Type', reason: 'must be application/dicom' }]);
      assertVariesOnAccept(res.headers, `415 of ${res.request.url}`);
    }
    const other = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', bearer(tokenFor(['risk-engine'])))
      .set('Content-Type', 'application/dicom')
      .send(dicomFile('US1_UNCR.dcm'));
    assert.equal(other.status, 403);
  });

  it('STOW-RS: stores good instances, fails the bad one with its reason, and keeps the findings', async () => {
    const good = dicomFile('US1_UNCR.dcm');
    const multi = dicomFile('US_multiframe_jpeg_baseline.dcm');
    const { body, contentType } = multipartRelated([
      good,
      dicomFile('test-SR.dcm'),
      multi,
      dicomFile('MR_truncated.dcm'),
    ]);
    const res = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', contentType)
      .send(body);
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.match(String(res.headers['content-type']), /application\/dicom\+json/);
    assertVariesOnAccept(res.headers, 'the JSON store response');
    const response = res.body as Record<string, { Value: Array<Record<string, { Value: unknown[] }>> }>;
    const stored = response['00081199'].Value.map((i) => i['00081155'].Value[0]);
    assert.deepEqual(stored.sort(), [uidOf(good, '00080018'), uidOf(multi, '00080018')].sort());
    // RetrieveURL is Type 2 (PS3.18 I.1): present and empty, as there is no WADO-RS to retrieve the instances by.
    assert.deepEqual(response['00081190'], { vr: 'UR' });
    for (const item of response['00081199'].Value) assert.deepEqual(item['00081190'], { vr: 'UR' });
    const failed = response['00081198'].Value;
    assert.equal(failed.length, 2);
    assert.equal(failed[0]['00081197'].Value[0], 0x0122);
    assert.equal(failed[0]['00081150'].Value[0], '1.2.840.10008.5.1.4.1.1.88.33');
    assert.match(String(failed[0]['00091001'].Value[0]), /part 2: NOT_AN_IMAGE: .*structured report/);
    assert.equal(failed[1]['00081197'].Value[0], 0xc000);
    assert.match(String(failed[1]['00091001'].Value[0]), /part 4: MALFORMED: the file is truncated/);
    // Its data set cannot be read, its file meta can: the item names the instance as PS3.18 Annex I asks (Type 1).
    assert.deepEqual(failed[1]['00081150'], {
      vr: 'UI',
      Value: [metaUidOf(dicomFile('MR_truncated.dcm'), '00020002')],
    });
    assert.deepEqual(failed[1]['00081155'], {
      vr: 'UI',
      Value: [metaUidOf(dicomFile('MR_truncated.dcm'), '00020003')],
    });

    const kept = await http
      .get(`/v1/medical/studies/${uidOf(good, '0020000D')}/findings`)
      .set('Authorization', bearer(tokenFor(['radiologist'])));
    assert.equal(kept.status, 200);
    const instances = (kept.body as { instances: Findings[] }).instances;
    assert.ok(instances.some((i) => i.sopInstanceUID === uidOf(good, '00080018') && i.frames.length === 1));
  });

  for (const [lineBreak, lines] of [
    ['\r\n', 'CRLF'],
    ['\n', 'bare LF (as some clients send: read as such, each part byte for byte)'],
  ] as const) {
    it(`STOW-RS with every shared file in one body, lines in ${lines}: each stored or failed exactly as over the single route`, async () => {
      const files = Object.keys(EXPECTED);
      const { body, contentType } = multipartRelated(
        files.map((f) => dicomFile(f)),
        undefined,
        lineBreak,
      );
      const res = await http
        .post('/dicomweb/studies')
        .set('Authorization', pacs)
        .set('Content-Type', contentType)
        .send(body);
      assert.equal(res.status, 202);
      const response = res.body as Record<string, { Value: Array<Record<string, { Value: unknown[] }>> }>;
      const stored = new Set(response['00081199'].Value.map((i) => i['00081155'].Value[0]));
      const failures = new Map(
        response['00081198'].Value.map((i) => {
          const text = String(i['00091001'].Value[0]);
          return [Number(/^part (\d+):/.exec(text)?.[1]), text];
        }),
      );
      files.forEach((file, i) => {
        const expected = EXPECTED[file];
        if (expected.status === 200) {
          assert.ok(stored.has(uidOf(dicomFile(file), '00080018')), `${file} stored`);
        } else {
          assert.match(failures.get(i + 1) ?? '', new RegExp(`^part ${i + 1}: ${expected.reason}:`), file);
        }
      });
      assert.equal(stored.size + failures.size, files.length);
      // Every failed item carries the SOP Instance Reference Macro (PS3.18 Table I.1-1): the UIDs read, or empty.
      for (const item of response['00081198'].Value as Array<Record<string, { vr: string; Value?: unknown[] }>>) {
        assert.equal(item['00081150']?.vr, 'UI', String(item['00091001'].Value?.[0]));
        assert.equal(item['00081155']?.vr, 'UI', String(item['00091001'].Value?.[0]));
      }
      const noMeta = [...response['00081198'].Value].find((i) => /NOT_DICOM/.test(String(i['00091001'].Value[0])));
      assert.deepEqual([noMeta?.['00081150'], noMeta?.['00081155']], [{ vr: 'UI' }, { vr: 'UI' }]);
    });
  }

  it('STOW-RS to a study: an instance of another study fails with 409 when none is stored', async () => {
    const { body, contentType } = multipartRelated([dicomFile('US1_UNCR.dcm')]);
    const res = await http
      .post('/dicomweb/studies/1.2.3.4.5')
      .set('Authorization', pacs)
      .set('Content-Type', contentType)
      .set('X-Request-Id', 'stow-none-stored-1')
      .send(body);
    assert.equal(res.status, 409);
    const response = res.body as Record<string, { vr: string; Value: Array<Record<string, { Value: unknown[] }>> }>;
    // The study in the path gives no RetrieveURL: the findings route is no WADO-RS Retrieve (PS3.18 10.4).
    assert.deepEqual(response['00081190'], { vr: 'UR' });
    const failed = response['00081198'].Value;
    assert.equal(failed[0]['00081197'].Value[0], 0xa900);
    assert.match(String(failed[0]['00091001'].Value[0]), /STUDY_MISMATCH/);
    // The audit row says which part failed and why, as a 202's does; it said only `HTTP 409`.
    const [row] = await app
      .get(DataSource)
      .query<Array<{ outcome: string; output_summary: Record<string, unknown> }>>(
        'SELECT outcome, output_summary FROM audit_events WHERE request_id = $1',
        ['stow-none-stored-1'],
      );
    assert.equal(row.outcome, 'invalid');
    assert.equal(row.output_summary.reason, 'HTTP 409');
    assert.equal(row.output_summary.stored, 0);
    assert.deepEqual(row.output_summary.failures, [{ part: 1, reason: 'STUDY_MISMATCH' }]);
  });

  it('a study UID in the path that is no DICOM UID is a 400 naming it, for STOW-RS and the findings alike', async () => {
    // Found sweeping the routes as a PACS integrator: digits and dots passed, so `1..2` read as a study with no
    // findings (404) and a STOW to it analysed nothing but failed every instance as of another study (409).
    const { body, contentType } = multipartRelated([dicomFile('US1_UNCR.dcm')]);
    const ranBefore = await inferenceCount();
    for (const uid of ['1..2', '1.', '.1', '.', '01.2', '1.2.03', '1'.repeat(65), 'x']) {
      for (const res of [
        await http.get(`/v1/medical/studies/${uid}/findings`).set('Authorization', pacs),
        await http
          .post(`/dicomweb/studies/${uid}`)
          .set('Authorization', pacs)
          .set('Content-Type', contentType)
          .send(body),
      ]) {
        assert.equal(res.status, 400, `${uid}: ${res.text.slice(0, 200)}`);
        assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
        const problem = res.body as Problem;
        assert.equal(problem.code, 'VALIDATION_FAILED');
        assert.equal(problem.errors?.[0]?.field, 'studyInstanceUID');
        assert.match(problem.errors?.[0]?.reason ?? '', /not a DICOM UID \(PS3\.5 9\.1/);
        // Both routes choose their answer's form by Accept: a refusal varies on it like any other answer.
        assert.match(String(res.headers.vary), /\bAccept\b/i, `${uid}: Vary`);
      }
    }
    assert.equal(await inferenceCount(), ranBefore, 'nothing was analysed');
    // A UID is still read as one: 0 components, the longest one, and a study with nothing kept is a 404.
    for (const uid of ['1.2.0.3', `1.${'2'.repeat(62)}`]) {
      const res = await http.get(`/v1/medical/studies/${uid}/findings`).set('Authorization', pacs);
      assert.equal(res.status, 404, uid);
    }
  });

  it('STOW-RS: a body that is not multipart/related of DICOM is a 400 naming the problem', async () => {
    const noBoundary = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', 'multipart/related; type="application/dicom"')
      .send(Buffer.from('x'));
    assert.equal(noBoundary.status, 400);
    assert.match((noBoundary.body as Problem).detail, /boundary/);
    // The boundary is a parameter of the Content-Type header: the refusal names the header, not the body.
    assert.deepEqual(
      (noBoundary.body as Problem).errors?.map((e) => e.field),
      ['Content-Type'],
    );
    const twice = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', 'multipart/related; type="application/dicom"; boundary=a; boundary=b')
      .send(Buffer.from('x'));
    assert.equal(twice.status, 400);
    assert.deepEqual(
      (twice.body as Problem).errors?.map((e) => e.field),
      ['Content-Type'],
    );
    const truncated = multipartRelated([dicomFile('MR_small.dcm')]);
    const cut = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', truncated.contentType)
      .send(truncated.body.subarray(0, truncated.body.length - 40));
    assert.equal(cut.status, 400);
    assert.match((cut.body as Problem).detail, /closing boundary/);
    assert.equal((cut.body as Problem).errors?.[0]?.field, 'body');
    const unknown = await http.get('/v1/medical/studies/1.2.3/findings').set('Authorization', pacs);
    assert.equal(unknown.status, 404);
  });

  it("STOW-RS: a token that names a tenant reads only that tenant's findings; one that names none reads all", async () => {
    const study = '1.2.826.0.1.3680043.9.7431.112.1';
    const instance = rewriteDicom(dicomFile('US1_UNCR.dcm'), { StudyInstanceUID: study });
    const hospitalA = bearer(tokenFor(['pacs-integration'], { sub: 'pacs-a', tenant: 'hospital-a' }));
    const hospitalB = bearer(tokenFor(['pacs-integration'], { sub: 'pacs-b', tenant: 'hospital-b' }));
    const { body, contentType } = multipartRelated([instance]);
    const stored = await http
      .post('/dicomweb/studies')
      .set('Authorization', hospitalA)
      .set('Content-Type', contentType)
      .send(body);
    assert.equal(stored.status, 200, stored.text.slice(0, 300));
    const findings = (auth: string) => http.get(`/v1/medical/studies/${study}/findings`).set('Authorization', auth);
    const ofA = await findings(hospitalA);
    assert.equal(ofA.status, 200);
    assert.equal((ofA.body as { instances: Findings[] }).instances.length, 1);
    // Another tenant that knows the UID learns nothing, not even that the study was analysed.
    const ofB = await findings(hospitalB);
    assert.equal(ofB.status, 404);
    assert.equal((ofB.body as Problem).code, 'NOT_FOUND');
    // The same instance sent by the other tenant is kept beside the first, not over it.
    const again = await http
      .post('/dicomweb/studies')
      .set('Authorization', hospitalB)
      .set('Content-Type', contentType)
      .send(body);
    assert.equal(again.status, 200, again.text.slice(0, 300));
    assert.equal(((await findings(hospitalB)).body as { instances: Findings[] }).instances.length, 1);
    assert.equal(((await findings(hospitalA)).body as { instances: Findings[] }).instances.length, 1);
    // A token without a tenant (a single-tenant site's PACS) reads every tenant's, as with audit events.
    assert.equal(((await findings(pacs)).body as { instances: Findings[] }).instances.length, 2);
  });

  it('STOW-RS: the same SOP Instance UID twice is analysed once; each later copy fails with 0x0111', async () => {
    const study = '1.2.826.0.1.3680043.9.7431.111.1';
    const instance = rewriteDicom(dicomFile('US1_UNCR.dcm'), { StudyInstanceUID: study });
    const sop = uidOf(instance, '00080018');
    // The third part is the same instance with other bytes (another series): still the same SOP instance.
    const reworded = rewriteDicom(instance, { SeriesInstanceUID: '1.2.826.0.1.3680043.9.7431.111.2' });
    const { body, contentType } = multipartRelated([instance, dicomFile('test-SR.dcm'), reworded, instance]);
    const ranBefore = await inferenceCount();
    const res = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', contentType)
      .set('X-Request-Id', 'stow-duplicate-1')
      .send(body);
    assert.equal(res.status, 202, res.text.slice(0, 300));
    assert.equal(await inferenceCount(), ranBefore + 1, 'one frame analysed once');
    const response = res.body as Record<string, { Value: Array<Record<string, { Value: unknown[] }>> }>;
    assert.deepEqual(
      response['00081199'].Value.map((i) => i['00081155'].Value[0]),
      [sop],
    );
    const failed = response['00081198'].Value;
    assert.deepEqual(
      failed.map((i) => i['00081197'].Value[0]),
      [0x0122, 0x0111, 0x0111],
    );
    for (const [item, part] of [
      [failed[1], 3],
      [failed[2], 4],
    ] as const) {
      assert.equal(item['00081155'].Value[0], sop);
      assert.match(
        String(item['00091001'].Value[0]),
        new RegExp(`^part ${part}: DUPLICATE_INSTANCE: part 1 of this request has the same SOP Instance UID`),
      );
    }
    const kept = await http.get(`/v1/medical/studies/${study}/findings`).set('Authorization', pacs);
    assert.equal((kept.body as { instances: Findings[] }).instances.length, 1);
    const [row] = await app
      .get(DataSource)
      .query<Array<{ output_summary: { stored: number; failures: unknown[] } }>>(
        'SELECT output_summary FROM audit_events WHERE request_id = $1',
        ['stow-duplicate-1'],
      );
    assert.equal(row.output_summary.stored, 1);
    assert.deepEqual(row.output_summary.failures, [
      { part: 2, reason: 'NOT_AN_IMAGE' },
      { part: 3, reason: 'DUPLICATE_INSTANCE' },
      { part: 4, reason: 'DUPLICATE_INSTANCE' },
    ]);
  });

  it('STOW-RS: an Accept header it cannot answer is a 406 naming Accept, audited, before anything is analysed', async () => {
    const study = '1.2.826.0.1.3680043.9.7431.406.1';
    const { body, contentType } = multipartRelated([
      rewriteDicom(dicomFile('US1_UNCR.dcm'), { StudyInstanceUID: study }),
    ]);
    const stow = (accept?: string, requestId?: string) => {
      const req = http.post('/dicomweb/studies').set('Authorization', pacs).set('Content-Type', contentType);
      if (accept !== undefined) void req.set('Accept', accept);
      if (requestId) void req.set('X-Request-Id', requestId);
      return req.send(body);
    };
    const ranBefore = await inferenceCount();
    const refused = [
      'text/html, application/dicom',
      'application/dicom+json;q=0, application/json;q=0, text/*',
      'application/*;q=0',
      '*/*;q=0',
    ];
    for (const [i, accept] of refused.entries()) {
      const res = await stow(accept, `stow-406-${i}`);
      assert.equal(res.status, 406, `${accept}: ${res.text.slice(0, 200)}`);
      assert.match(String(res.headers['content-type']), /application\/problem\+json/);
      const problem = res.body as Problem;
      assert.equal(problem.code, 'NOT_ACCEPTABLE');
      assert.equal(problem.errors?.[0]?.field, 'Accept');
      assertVariesOnAccept(res.headers, `406 to ${accept}`);
      assert.match(problem.detail, /application\/dicom\+json/);
    }
    assert.equal(await inferenceCount(), ranBefore, 'nothing was analysed');
    const none = await http.get(`/v1/medical/studies/${study}/findings`).set('Authorization', pacs);
    assert.equal(none.status, 404, 'nothing was stored');
    const db = app.get(DataSource);
    const rows = await db.query<Array<Record<string, unknown>>>(
      'SELECT outcome, status_code, output_summary, model_name, input_digest FROM audit_events WHERE request_id = ANY($1)',
      [refused.map((_a, i) => `stow-406-${i}`)],
    );
    assert.equal(rows.length, refused.length);
    for (const row of rows) {
      assert.deepEqual(
        [row.outcome, row.status_code, row.output_summary],
        ['invalid', 406, { reason: 'NOT_ACCEPTABLE' }],
      );
      assert.equal(row.model_name, 'breast-us-lesion');
      assert.match(String(row.input_digest), /^[0-9a-f]{64}$/);
    }

    // No Accept, or one that takes DICOM JSON under either name or by a wildcard, is answered.
    const accepted: Array<[string | undefined, string]> = [
      [undefined, 'application/dicom+json'],
      ['application/dicom+json', 'application/dicom+json'],
      ['application/json', 'application/json'],
      ['*/*', 'application/dicom+json'],
      ['application/*', 'application/dicom+json'],
      ['application/dicom+xml', 'application/dicom+xml'],
      ['application/dicom+xml, application/dicom+json;q=0.5', 'application/dicom+xml'],
      ['application/dicom+xml;q=0.5, application/dicom+json', 'application/dicom+json'],
      ['application/dicom+json;q=0, application/json;q=0, */*', 'application/dicom+xml'],
    ];
    for (const [accept, type] of accepted) {
      const res = await stow(accept);
      assert.equal(res.status, 200, `${accept}: ${res.text.slice(0, 200)}`);
      assert.equal(String(res.headers['content-type']).split(';')[0], type, String(accept));
      assertVariesOnAccept(res.headers, `200 to ${accept}`);
    }
    assert.ok((await inferenceCount()) > ranBefore, 'the metric counts the analyses it should not have seen before');
    const kept = await http.get(`/v1/medical/studies/${study}/findings`).set('Authorization', pacs);
    assert.equal(kept.status, 200);
  });

  it("a study's findings are answered as JSON by Accept; a header that takes no JSON is a 406 naming Accept, audited", async () => {
    // Found in review: the findings GET answered JSON with 200 whatever Accept said (application/dicom, text/html).
    const study = '1.2.826.0.1.3680043.9.7431.406.2';
    const { body, contentType } = multipartRelated([
      rewriteDicom(dicomFile('US1_UNCR.dcm'), { StudyInstanceUID: study }),
    ]);
    const stored = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', contentType)
      .send(body);
    assert.equal(stored.status, 200, stored.text.slice(0, 300));
    const findings = (accept: string | undefined, requestId?: string, uid = study) => {
      const req = http.get(`/v1/medical/studies/${uid}/findings`).set('Authorization', pacs);
      if (accept !== undefined) void req.set('Accept', accept);
      if (requestId) void req.set('X-Request-Id', requestId);
      return req;
    };
    for (const accept of [
      undefined,
      '',
      '*/*',
      'application/*',
      'application/json',
      'application/json; charset=utf-8',
      'text/html, application/json;q=0.1',
      'application/dicom, */*;q=0.1',
    ]) {
      const res = await findings(accept);
      assert.equal(res.status, 200, `${accept}: ${res.text.slice(0, 200)}`);
      assert.match(String(res.headers['content-type']), /^application\/json/, String(accept));
      assert.equal((res.body as { instances: Findings[] }).instances.length, 1, String(accept));
      assertVariesOnAccept(res.headers, `200 to ${accept}`);
    }
    const refused = [
      'application/dicom',
      'text/html',
      // DICOM JSON is a data set model (PS3.18 F.2); the findings are the gateway's JSON, not DICOM JSON.
      'application/dicom+json',
      'application/json;q=0',
      'application/json;q=0, */*',
      '*/*;q=0',
      'application/*;q=0, text/*',
    ];
    for (const [i, accept] of refused.entries()) {
      const res = await findings(accept, `findings-406-${i}`);
      assert.equal(res.status, 406, `${accept}: ${res.text.slice(0, 200)}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assertVariesOnAccept(res.headers, `406 to ${accept}`);
      const problem = res.body as Problem;
      assert.equal(problem.code, 'NOT_ACCEPTABLE');
      assert.deepEqual(problem.errors, [{ field: 'Accept', reason: 'must accept one of application/json' }]);
      assert.match(
        problem.detail,
        /accepts none of the types a study's findings are answered in \(application\/json\)/,
      );
    }
    // Decided before the findings are read: a study with none kept is a 406 too, not a 404; a UID that is none, a 400.
    assert.equal((await findings('application/dicom', undefined, '1.2.3.4.5.6.7')).status, 406);
    assert.equal((await findings('application/dicom', undefined, '1..2')).status, 400);
    const rows = await app
      .get(DataSource)
      .query<Array<Record<string, unknown>>>(
        'SELECT action, outcome, status_code, output_summary, input_digest FROM audit_events WHERE request_id = ANY($1)',
        [refused.map((_a, i) => `findings-406-${i}`)],
      );
    assert.equal(rows.length, refused.length);
    for (const row of rows) {
      assert.deepEqual(
        [row.action, row.outcome, row.status_code, row.output_summary],
        ['medical.findings-read', 'invalid', 406, { reason: 'NOT_ACCEPTABLE' }],
      );
      assert.match(String(row.input_digest), /^[0-9a-f]{64}$/);
    }
  });

  it('STOW-RS with Accept: application/dicom+xml answers the store response as Native DICOM Model XML', async () => {
    const good = dicomFile('US1_UNCR.dcm');
    const { body, contentType } = multipartRelated([good, dicomFile('test-SR.dcm')]);
    const res = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', contentType)
      .set('Accept', 'application/dicom+xml')
      .buffer(true)
      .parse((response, done) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => done(null, text));
      })
      .send(body);
    assert.equal(res.status, 202);
    assert.equal(String(res.headers['content-type']).split(';')[0], 'application/dicom+xml');
    assertVariesOnAccept(res.headers, 'the XML store response');
    const root = parseXml(res.body as string);
    assert.equal(root.name, 'NativeDicomModel');
    assert.equal(root.attributes.xmlns, 'http://dicom.nema.org/PS3.19/models/NativeDICOM');
    const attribute = (element: XmlElement, keyword: string): XmlElement => {
      const found = childrenNamed(element, 'DicomAttribute').filter((a) => a.attributes.keyword === keyword);
      assert.equal(found.length, 1, keyword);
      return found[0];
    };
    const values = (element: XmlElement): string[] => childrenNamed(element, 'Value').map((v) => v.text);
    assert.deepEqual(attribute(root, 'RetrieveURL').children, []);
    const [stored] = childrenNamed(attribute(root, 'ReferencedSOPSequence'), 'Item');
    assert.equal(stored.attributes.number, '1');
    assert.deepEqual(values(attribute(stored, 'ReferencedSOPInstanceUID')), [uidOf(good, '00080018')]);
    assert.deepEqual(values(attribute(stored, 'ReferencedSOPClassUID')), [uidOf(good, '00080016')]);
    const failed = childrenNamed(attribute(root, 'FailedSOPSequence'), 'Item');
    assert.deepEqual(
      failed.map((item) => item.attributes.number),
      ['1'],
    );
    assert.deepEqual(values(attribute(failed[0], 'ReferencedSOPClassUID')), ['1.2.840.10008.5.1.4.1.1.88.33']);
    assert.deepEqual(values(attribute(failed[0], 'FailureReason')), [String(0x0122)]);
    const reason = childrenNamed(failed[0], 'DicomAttribute').find((a) => a.attributes.tag === '00090001');
    assert.equal(reason?.attributes.privateCreator, 'REGULATED-INFERENCE-GATEWAY');
    assert.match(values(reason)[0], /^part 2: NOT_AN_IMAGE: .*structured report/);

    // A request refused as a whole is still a problem, whatever the Accept header asks for.
    const refused = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', 'application/dicom')
      .set('Accept', 'application/dicom+xml')
      .send(good);
    assert.equal(refused.status, 415);
    assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
  });

  it('STOW-RS: another media type is a 415, and a base64 part fails saying so', async () => {
    for (const [type, body] of [
      ['text/plain', 'hello'],
      ['application/json', '{}'],
      // A DICOM file labelled JSON was read by the JSON parser: 400 "not valid JSON".
      ['application/json', dicomFile('MR_small.dcm')],
      ['application/dicom', dicomFile('MR_small.dcm')],
      ['multipart/related; type="application/dicom+json"; boundary=b', '--b--'],
    ] as const) {
      const res = await http
        .post('/dicomweb/studies')
        .set('Authorization', pacs)
        .set('Content-Type', type)
        // Bytes as they are, whatever their label (superagent would write a Buffer labelled JSON as JSON).
        .serialize((bytes: Buffer | string) => bytes as unknown as string)
        .send(body);
      assert.equal(res.status, 415, `${type}: ${res.text.slice(0, 200)}`);
      assert.equal((res.body as Problem).errors?.[0]?.field, 'Content-Type');
      assertVariesOnAccept(res.headers, `415 to ${type}`);
    }
    const boundary = 'b64-boundary';
    const base64 = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\nContent-Transfer-Encoding: base64\r\n\r\n`),
      Buffer.from(dicomFile('MR_small.dcm').toString('base64')),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const res = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`)
      .send(base64);
    assert.equal(res.status, 409, res.text.slice(0, 300));
    assert.match(JSON.stringify(res.body), /Content-Transfer-Encoding is base64/);
    // A part's Content-Type is cut in its failure reason as its transfer encoding is: it was repeated at any length.
    const long = `text/${'x'.repeat(2000)}`;
    const other = await http
      .post('/dicomweb/studies')
      .set('Authorization', pacs)
      .set('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`)
      .send(Buffer.from(`--${boundary}\r\nContent-Type: ${long}\r\n\r\nDICM\r\n--${boundary}--\r\n`));
    assert.equal(other.status, 409, other.text.slice(0, 300));
    assert.ok(
      other.text.includes(`Content-Type is ${long.slice(0, 32)}, not application/dicom`),
      other.text.slice(0, 300),
    );
    assert.ok(!other.text.includes(long.slice(0, 33)), 'cut to 32 characters');
    // Never a card number, whole or left by the cut (the reason goes to the answer and to the audit row of a
    // request none of whose parts was stored).
    // The second is 21 digits, no card number, until the cut at 32 characters leaves its first 16.
    for (const card of ['4111111111111111', 'abcdefghijk411111111111111122222']) {
      const carded = await http
        .post('/dicomweb/studies')
        .set('Authorization', pacs)
        .set('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`)
        .send(Buffer.from(`--${boundary}\r\nContent-Type: text/${card}\r\n\r\nDICM\r\n--${boundary}--\r\n`));
      assert.equal(carded.status, 409, carded.text.slice(0, 300));
      assert.ok(
        carded.text.includes('Content-Type is (card number), not application/dicom'),
        carded.text.slice(0, 300),
      );
      assert.ok(!carded.text.includes('41111111'), carded.text.slice(0, 300));
    }
  });
});

describe('medical: every transfer syntax decodes when the model accepts the modality', { skip: DICOM_SKIP }, () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let modelsDir: string;
  before(async () => {
    modelsDir = medicalModelsDir(['US', 'CT', 'MR', 'NM', 'OT']);
    app = await createTestApp({
      MODELS_DIR: modelsDir,
      MEDICAL_MAX_BODY_BYTES: '1000000',
      MEDICAL_MAX_STOW_INSTANCES: '3',
    });
    http = request(app.getHttpServer());
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  for (const [file, expected] of Object.entries(DECODABLE_FILES)) {
    it(`${file}: decoded and analysed`, async () => {
      const res = await http
        .post('/v1/medical/lesion-detections')
        .set('Authorization', bearer(tokenFor(['radiologist'])))
        .set('Content-Type', 'application/dicom')
        .send(dicomFile(file));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const findings = res.body as Findings;
      assert.equal(findings.frames.length, expected.frames);
      // The letterbox pads tall and wide images: nothing found in the padding may come back as a lesion.
      for (const { box } of findings.frames.flatMap((f) => f.lesions)) {
        assert.ok(box.width > 0 && box.height > 0, JSON.stringify(box));
        assert.ok(box.x + box.width <= findings.columns && box.y + box.height <= findings.rows, JSON.stringify(box));
      }
    });

    it(`${file}: answered as a DICOM SR`, async () => {
      const res = await http
        .post('/v1/medical/lesion-detections')
        .set('Authorization', bearer(tokenFor(['radiologist'])))
        .set('Content-Type', 'application/dicom')
        .set('Accept', 'application/dicom')
        .send(dicomFile(file));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.match(String(res.headers['content-type']), /^application\/dicom/);
    });
  }

  it('multi-frame JPEG-LS, JPEG 2000 and HTJ2K, frames in several fragments behind an empty offset table: findings for each frame, as from the well-formed file', async () => {
    // PS3.5 A.4 lets a frame span fragments with no offset table (dcmjs and PACS send such files): emri_small_RLE's
    // 10 frames re-encoded losslessly, each cut in 2 or 3 fragments, decode to the same pixels, so the same findings.
    await initialisePixelCodecs();
    const radiologist = bearer(tokenFor(['radiologist']));
    const post = (body: Buffer) =>
      http
        .post('/v1/medical/lesion-detections')
        .set('Authorization', radiologist)
        .set('Content-Type', 'application/dicom')
        .send(body);
    const file = dicomFile('emri_small_RLE.dcm');
    const original = parseDicomImage(file, TEST_PARSE_LIMITS);
    const values = Array.from({ length: 10 }, (_, k) => decodeFrame(original, k).values);
    const wellFormed = await post(file);
    assert.equal(wellFormed.status, 200, wellFormed.text.slice(0, 300));
    const expected = (wellFormed.body as Findings).frames;
    assert.deepEqual(
      expected.map((f) => f.frameNumber),
      Array.from({ length: 10 }, (_, k) => k + 1),
    );
    // As DCMTK writes it (dcmcjpls +fs 1 -ot): 10 frames in 41 fragments of 1 KiB.
    const dcmtk = await post(localDicomFile('emri_small_jpeg_ls_fragmented.dcm'));
    assert.equal(dcmtk.status, 200, dcmtk.text.slice(0, 300));
    assert.deepEqual((dcmtk.body as Findings).frames, expected, 'dcmcjpls +fs 1 -ot');
    for (const ts of ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.201']) {
      const frames = values.map((v) => encodedLossless(v, original, ts));
      const fragmented = fragmentedFrames(file, frames, ts, { fragmentsPerFrame: (k) => 2 + (k % 2) });
      const pixels = dicomParser.parseDicom(fragmented).elements.x7fe00010;
      assert.deepEqual([pixels.fragments?.length, pixels.basicOffsetTable?.length], [25, 0], ts);
      const res = await post(fragmented);
      assert.equal(res.status, 200, `${ts}: ${res.text.slice(0, 300)}`);
      assert.deepEqual((res.body as Findings).frames, expected, ts);
      // A frame whose first fragment lost its start marker: 9 frame starts for 10 frames, refused naming PixelData.
      frames[3] = Uint8Array.from([0, ...frames[3]]);
      const cut = await post(fragmentedFrames(file, frames, ts, { fragmentsPerFrame: () => 2 }));
      assert.equal(cut.status, 400, `${ts}: ${cut.text.slice(0, 300)}`);
      const problem = cut.body as Problem;
      assert.equal(problem.code, 'DICOM_INVALID', ts);
      assert.equal(problem.errors?.[0]?.field, '(7FE0,0010) PixelData', ts);
      assert.match(problem.errors?.[0]?.reason ?? '', /^MALFORMED: /, ts);
      assert.match(
        problem.detail,
        /20 fragments and no usable offset table for 10 frames, and 9 fragments \(not 10/,
        ts,
      );
    }
  });

  it('refuses an upload over MEDICAL_MAX_BODY_BYTES with 413', async () => {
    const res = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', bearer(tokenFor(['radiologist'])))
      .set('Content-Type', 'application/dicom')
      .send(Buffer.alloc(1_200_000));
    assert.equal(res.status, 413);
    assert.match(String(res.headers['content-type']), /application\/problem\+json/);
    // The gateway's code, naming the limit that applies to a DICOM body (not the JSON routes' BODY_LIMIT_BYTES).
    assert.equal(res.body.code, 'BODY_TOO_LARGE');
    assert.deepEqual(res.body.errors, [
      { field: '(body)', reason: 'Request body is too large: the limit is 1000000 bytes (MEDICAL_MAX_BODY_BYTES)' },
    ]);
  });

  it('refuses a deflated instance inflating past 4 x MEDICAL_MAX_BODY_BYTES with 400 in its own words', async () => {
    // 64 x 64 claimed with 8 MiB of pixel zeros: its attributes allow 64 MiB more, the limit is 4 MB here.
    const res = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', bearer(tokenFor(['radiologist'])))
      .set('Content-Type', 'application/dicom')
      .send(deflatedBomb(64, 64, 8 * 1024 * 1024));
    assert.equal(res.status, 400, res.text.slice(0, 300));
    assert.match(String(res.headers['content-type']), /application\/problem\+json/);
    const problem = res.body as Problem;
    assert.equal(problem.code, 'DICOM_INVALID');
    assert.equal(problem.errors?.[0]?.field, 'body');
    assert.match(problem.detail, /^the deflated data set inflates to more than 4000000 bytes, the most the gateway/);
  });

  it('refuses a deflate bomb hiding its image size behind half a gigabyte of zeros with 400, unread', async () => {
    // Found in review: a private element of zeros before Rows / Columns was inflated whole and answered 200.
    const res = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', bearer(tokenFor(['radiologist'])))
      .set('Content-Type', 'application/dicom')
      .send(deflatedBomb(64, 64, 64 * 64, 512 * 1024 * 1024));
    assert.equal(res.status, 400, res.text.slice(0, 300));
    const problem = res.body as Problem;
    assert.equal(problem.code, 'DICOM_INVALID');
    assert.equal(problem.errors?.[0]?.field, 'body');
    assert.match(
      problem.detail,
      /^the deflated data set \(transfer syntax 1\.2\.840\.10008\.1\.2\.1\.99, Deflated Explicit VR Little Endian\) gives no image size \(Rows, Columns\) in its first \d+ inflated bytes/,
    );
  });

  it('refuses a STOW request of more than MEDICAL_MAX_STOW_INSTANCES parts with 400, before reading any', async () => {
    // Each part costs an answer entry whatever its size: a body of tiny parts is bounded by count.
    const stow = (parts: number) =>
      http
        .post('/dicomweb/studies')
        .set('Authorization', bearer(tokenFor(['pacs-integration'])))
        .set('Content-Type', 'multipart/related; type="application/dicom"; boundary=b')
        .send(Buffer.from('--b\r\nContent-Type: application/dicom\r\n\r\nX\r\n'.repeat(parts) + '--b--\r\n'));
    const three = await stow(3);
    assert.equal(three.status, 409, three.text); // read: each part refused as not DICOM
    const four = await stow(4);
    assert.equal(four.status, 400, four.text);
    assert.match(String(four.headers['content-type']), /application\/problem\+json/);
    assert.equal(four.body.errors[0].field, 'body');
    assert.match(four.body.errors[0].reason, /more than 3 parts in one request/);
  });
});

describe('medical: STOW-RS while the runtime cannot run the model', { skip: DICOM_SKIP }, () => {
  it("fails each instance out of resources (0xA700) with the runtime's code, and the request 503, which a PACS sends again, as DIMSE does", async () => {
    const modelsDir = medicalModelsDir();
    const onnx = join(modelsDir, 'medical', 'breast-us-lesion', '1', 'model.onnx');
    const app = await createTestApp({ MODELS_DIR: modelsDir });
    try {
      const http = request(app.getHttpServer());
      // The worker dies while model.onnx is away (a deploy swapping files): no replacement loads, and every
      // request is refused at once with 503 MODEL_NOT_READY, the transient refusal a queue full also gets.
      renameSync(onnx, `${onnx}.away`);
      const engine: unknown = app.get(InferenceEngine);
      const { pool } = engine as { pool: { slots: Array<{ worker: { terminate(): Promise<number> } }> } };
      await pool.slots[0].worker.terminate();
      const admin = bearer(tokenFor(['ml-admin']));
      await until('the model not ready', async () =>
        (await http.get('/v2/models/breast-us-lesion/ready').set('Authorization', admin)).status === 503
          ? true
          : undefined,
      );
      const first = dicomFile('US1_UNCR.dcm');
      const second = rewriteDicom(first, { SOPInstanceUID: '1.2.826.0.1.3680043.9.7431.503.2' });
      const { body, contentType } = multipartRelated([first, second]);
      const res = await http
        .post('/dicomweb/studies')
        .set('Authorization', bearer(tokenFor(['pacs-integration'])))
        .set('Content-Type', contentType)
        .set('X-Request-Id', 'stow-not-ready-1')
        .send(body);
      // None stored, each only for want of the runtime: 503 with Retry-After, which a PACS sends again; a 409 says
      // the request itself conflicts, and a PACS does not send it again.
      assert.equal(res.status, 503, res.text.slice(0, 300));
      assert.match(String(res.headers['retry-after']), /^[1-9][0-9]*$/);
      assert.equal(String(res.headers['content-type']).split(';')[0], 'application/dicom+json');
      const failed = (res.body as Record<string, { Value: Array<Record<string, { Value: unknown[] }>> }>)['00081198']
        .Value;
      assert.deepEqual(
        failed.map((item) => item['00081197'].Value[0]),
        [0xa700, 0xa700],
        'out of resources, not 0x0110 processing failure, which a PACS does not send again',
      );
      failed.forEach((item, i) =>
        assert.match(String(item['00091001'].Value[0]), new RegExp(`^part ${i + 1}: MODEL_NOT_READY: `)),
      );
      const [row] = await app
        .get(DataSource)
        .query<Array<{ output_summary: { failures: unknown[] }; outcome: string; status_code: number }>>(
          'SELECT output_summary, outcome, status_code FROM audit_events WHERE request_id = $1',
          ['stow-not-ready-1'],
        );
      assert.deepEqual([row.outcome, row.status_code], ['error', 503]);
      assert.deepEqual(row.output_summary.failures, [
        { part: 1, reason: 'MODEL_NOT_READY' },
        { part: 2, reason: 'MODEL_NOT_READY' },
      ]);
    } finally {
      renameSync(`${onnx}.away`, onnx);
      await app.close();
      rmSync(modelsDir, { recursive: true, force: true });
    }
  });
});
