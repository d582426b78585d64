import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { data as dcmjsData, log as dcmjsLog } from 'dcmjs';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { DICOM_SKIP, dicomFile, medicalModelsDir, multipartRelated } from '../fixtures/dicom-files';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

dcmjsLog.setLevel('silent');

/** Values that identify the patient, the study or the hospital: none may leave the request. */
const IDENTIFIERS: Record<string, { tag: string; vr: string; value: string }> = {
  PatientName: { tag: '00100010', vr: 'PN', value: 'Quixotesque^Philomena^Zed' },
  PatientID: { tag: '00100020', vr: 'LO', value: 'MRN-55501234' },
  PatientBirthDate: { tag: '00100030', vr: 'DA', value: '19410317' },
  OtherPatientIDs: { tag: '00101000', vr: 'LO', value: 'NHS-9990001112' },
  PatientAddress: { tag: '00101040', vr: 'LO', value: '17 Larkspur Lane Ostrava' },
  AccessionNumber: { tag: '00080050', vr: 'SH', value: 'ACC77009911' },
  InstitutionName: { tag: '00080080', vr: 'LO', value: 'Saint Ermengild Hospital' },
  ReferringPhysicianName: { tag: '00080090', vr: 'PN', value: 'Vandersloot^Octavia' },
  StudyID: { tag: '00200010', vr: 'SH', value: 'STUDY8832' },
  StudyInstanceUID: { tag: '0020000D', vr: 'UI', value: '1.2.826.0.1.3680043.9.7431.1.1' },
  SeriesInstanceUID: { tag: '0020000E', vr: 'UI', value: '1.2.826.0.1.3680043.9.7431.1.2' },
  SOPInstanceUID: { tag: '00080018', vr: 'UI', value: '1.2.826.0.1.3680043.9.7431.1.3' },
};

/** US1_UNCR.dcm with every identifier above written into it. */
function identifyingInstance(): Buffer {
  const source = dicomFile('US1_UNCR.dcm');
  const file = dcmjsData.DicomMessage.readFile(
    source.buffer.slice(source.byteOffset, source.byteOffset + source.byteLength) as ArrayBuffer,
  );
  for (const { tag, vr, value } of Object.values(IDENTIFIERS)) {
    file.dict[tag] = { vr, Value: [vr === 'PN' ? { Alphabetic: value } : value] };
  }
  file.meta['00020003'] = { vr: 'UI', Value: [IDENTIFIERS.SOPInstanceUID.value] };
  return Buffer.from(file.write());
}

/** The needles: each identifier, and the parts of a person name as they might be printed alone. */
const NEEDLES = Object.values(IDENTIFIERS).flatMap(({ value, vr }) =>
  vr === 'PN' ? [value, ...value.split('^')] : [value],
);

describe('medical: nothing that identifies a patient leaves the request', { skip: DICOM_SKIP }, () => {
  let app: NestFastifyApplication;
  let modelsDir: string;
  const captured: string[] = [];
  const writes = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  before(async () => {
    modelsDir = medicalModelsDir();
    // Everything the gateway prints, at the most verbose level, is kept to be searched.
    const tap =
      (write: typeof process.stdout.write) =>
      (chunk: unknown, ...rest: unknown[]): boolean => {
        captured.push(Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk));
        return (write as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
      };
    process.stdout.write = tap(writes.out);
    process.stderr.write = tap(writes.err);
    app = await createTestApp({ MODELS_DIR: modelsDir, LOG_LEVEL: 'verbose' });
  });
  after(async () => {
    process.stdout.write = writes.out;
    process.stderr.write = writes.err;
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('through every HTTP way in, then searches logs, metrics, audit rows and stored findings', async () => {
    const http = request(app.getHttpServer());
    const pacs = bearer(tokenFor(['pacs-integration'], { sub: 'pacs-phi' }));
    const instance = identifyingInstance();
    const json = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', pacs)
      .set('Content-Type', 'application/dicom')
      .send(instance);
    assert.equal(json.status, 200);
    assert.equal((json.body as { sopInstanceUID: string }).sopInstanceUID, IDENTIFIERS.SOPInstanceUID.value);
    const sr = await http
      .post('/v1/medical/lesion-detections')
      .set('Authorization', pacs)
      .set('Content-Type', 'application/dicom')
      .set('Accept', 'application/dicom')
      .send(instance);
    assert.equal(sr.status, 200);
    const stow = multipartRelated([instance, dicomFile('test-SR.dcm')]);
    const stored = await http
      .post(`/dicomweb/studies/${IDENTIFIERS.StudyInstanceUID.value}`)
      .set('Authorization', pacs)
      .set('Content-Type', stow.contentType)
      .send(stow.body);
    assert.equal(stored.status, 202);
    // A refused copy (wrong study in the path) is audited too.
    const refused = await http
      .post('/dicomweb/studies/1.2.3')
      .set('Authorization', pacs)
      .set('Content-Type', stow.contentType)
      .send(stow.body);
    assert.equal(refused.status, 409);
    const findings = await http
      .get(`/v1/medical/studies/${IDENTIFIERS.StudyInstanceUID.value}/findings`)
      .set('Authorization', bearer(tokenFor(['radiologist'])));
    assert.equal(findings.status, 200);
    assert.equal((findings.body as { instances: unknown[] }).instances.length, 1, 'the PACS gets its UIDs back');
    const metrics = await http.get('/metrics').set('Authorization', bearer(tokenFor(['monitoring'])));
    assert.equal(metrics.status, 200);

    const db = app.get(DataSource);
    const audit = await db.query<unknown[]>('SELECT * FROM audit_events');
    const kept = await db.query<Array<Record<string, unknown>>>('SELECT * FROM medical_findings');
    assert.ok(audit.length >= 5, 'every call was audited');
    assert.equal(kept.length, 1);
    const haystacks: Record<string, string> = {
      logs: captured.join(''),
      metrics: metrics.text,
      audit: JSON.stringify(audit),
      findings: JSON.stringify(kept, (_k, v: unknown) =>
        Buffer.isBuffer(v) ? v.toString('latin1') : (v as { type?: string })?.type === 'Buffer' ? '' : v,
      ),
      sealed: kept.map((row) => Buffer.from(row.sealed_refs as Buffer).toString('latin1')).join(''),
    };
    assert.ok(haystacks.logs.length > 0, 'the gateway logged something to search');
    for (const [where, text] of Object.entries(haystacks)) {
      for (const needle of NEEDLES) {
        assert.ok(!text.includes(needle), `${where} contains "${needle}"`);
      }
    }
  });
});
