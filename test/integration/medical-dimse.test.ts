import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { data as dcmjsData } from 'dcmjs';
import { Dataset } from 'dcmjs-dimse';
import { DataSource } from 'typeorm';
import { DECODABLE_FILES, DICOM_SKIP, dicomFile, medicalModelsDir, SHARED_DICOM } from '../fixtures/dicom-files';
import { AppError } from '../../src/common/errors/app-error';
import { UploadBudget } from '../../src/common/http/body-budget';
import { MedicalIntakeService } from '../../src/domains/medical/medical-intake.service';
import { DimseConnection } from '../../src/domains/medical/dimse/dimse-connection.scp';
import { DimseScpService } from '../../src/domains/medical/dimse/dimse-scp.service';
import { cStoreTo, datasetOfPart10 } from '../../src/domains/medical/dimse/dimse-forward.util';
import { buildLesionSr } from '../../src/domains/medical/sr/lesion-sr.util';
import { SR_FINDINGS, SR_OPTIONS, SR_SOURCE } from '../fixtures/sr-fixtures';
import {
  associateAccept,
  associateRequest,
  commandPData,
  dataPData,
  datasetOf,
  echoCommand,
  element,
  emptyPData,
  EXPLICIT_LITTLE,
  IMPLICIT_LITTLE,
  type ProposedContext,
  releaseRequest,
  releaseResponse,
  responseStatus,
  storeCommand,
  u16,
  US_IMAGE_STORAGE,
  VERIFICATION,
} from '../fixtures/dimse-pdus';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

/**
 * The DIMSE way in against DCMTK: echoscu and storescu as the modality or PACS, storescp as the
 * destination of the forwarded SR, dsrdump to read that SR. The gateway runs in this process, so
 * the DCMTK tools run asynchronously (a synchronous spawn would stop the SCP from answering).
 */

const onPath = (tool: string): boolean => !spawnSync(tool, ['--version']).error;
const HAS_DCMTK = ['storescu', 'storescp', 'echoscu', 'dsrdump', 'dcmsend'].every(onPath);
const SKIP_DCMTK = process.env.SKIP_DCMTK === '1';
const MISSING =
  'DCMTK (storescu, storescp, echoscu, dsrdump, dcmsend) is not on PATH: apt-get install -y dcmtk, or set SKIP_DCMTK=1';

interface Run {
  code: number;
  output: string;
}

/** Runs a DCMTK tool without blocking the event loop; resolves with its exit code and stdout + stderr. */
function run(tool: string, args: string[]): Promise<Run> {
  assert.ok(HAS_DCMTK, MISSING);
  return new Promise((resolve) => {
    execFile(tool, args, { timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

/** Sends `request` on a new connection and gives the first bytes that come back (the answer's PDU). */
function firstPdu(port: number, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
    socket.once('data', (data) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(data);
    });
    socket.on('error', reject);
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address && typeof address === 'object');
  return address.port;
}

const accepts = (port: number): Promise<true | undefined> =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(undefined));
  });

function uidOf(file: Buffer, tag: string): string {
  const ab = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer;
  return String(dcmjsData.DicomMessage.readFile(ab).dict[tag].Value?.[0]);
}

describe(
  'medical: DIMSE C-STORE SCP against DCMTK',
  { skip: DICOM_SKIP || (!HAS_DCMTK && SKIP_DCMTK ? MISSING : false) },
  () => {
    let app: NestFastifyApplication;
    let db: DataSource;
    let modelsDir: string;
    let received: string;
    let storescp: ChildProcess | undefined;
    let port: number;
    /** DCMTK's order: options, then peer and port, then files. */
    const gateway = (callingAeTitle: string, calledAeTitle: string, ...files: string[]): string[] => [
      '-aet',
      callingAeTitle,
      '-aec',
      calledAeTitle,
      '127.0.0.1',
      String(port),
      ...files.map((f) => join(SHARED_DICOM, f)),
    ];

    before(async () => {
      assert.ok(HAS_DCMTK, MISSING);
      received = mkdtempSync(join(tmpdir(), 'dimse-received-'));
      const destPort = await freePort();
      storescp = spawn('storescp', ['--aetitle', 'DEST', '-od', received, String(destPort)], { stdio: 'ignore' });
      await until('storescp to listen', () => accepts(destPort));
      port = await freePort();
      modelsDir = medicalModelsDir();
      app = await createTestApp({
        MODELS_DIR: modelsDir,
        MEDICAL_DIMSE_PORT: String(port),
        MEDICAL_DIMSE_ALLOWED_AETS: 'PACS,MODALITY',
        MEDICAL_DIMSE_FORWARD: `DEST@127.0.0.1:${destPort}`,
      });
      db = app.get(DataSource);
    });

    after(async () => {
      await app?.close();
      storescp?.kill();
      if (received) rmSync(received, { recursive: true, force: true });
      if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
    });

    const auditRows = (action: string): Promise<Array<Record<string, unknown>>> =>
      db.query<Array<Record<string, unknown>>>(
        `SELECT actor, roles, action, model_name, client_address, input_digest, output_summary, outcome, status_code
           FROM audit_events WHERE action = $1 ORDER BY id`,
        [action],
      );

    it('answers C-ECHO addressed to its AE title, from an allowed caller', async () => {
      const echo = await run('echoscu', gateway('PACS', 'GATEWAY'));
      assert.equal(echo.code, 0, echo.output);
    });

    it('rejects an association addressed to another AE title, or from a caller not allowed', async () => {
      const wrongCalled = await run('echoscu', gateway('PACS', 'WRONG'));
      assert.notEqual(wrongCalled.code, 0);
      assert.match(wrongCalled.output, /Association Rejected/);
      assert.match(
        wrongCalled.output,
        /Result: Rejected Permanent, Source: Service User\n.*Reason: Called AE Title Not Recognized/,
      );

      const stranger = await run('echoscu', gateway('STRANGER', 'GATEWAY'));
      assert.notEqual(stranger.code, 0);
      assert.match(stranger.output, /Reason: Calling AE Title Not Recognized/);

      const denials = await auditRows('medical.dimse-associate');
      assert.deepEqual(
        denials.map((r) => [r.actor, r.outcome, r.status_code, (r.output_summary as { reason: string }).reason]),
        [
          ['dimse:PACS', 'denied', 403, 'CALLED_AE_NOT_RECOGNIZED'],
          ['dimse:STRANGER', 'denied', 403, 'CALLING_AE_NOT_ALLOWED'],
        ],
      );
    });

    it('stores an ultrasound image: findings kept, audited, and its SR forwarded to storescp', async () => {
      const file = dicomFile('US1_UNCR.dcm');
      const study = uidOf(file, '0020000D');
      const instance = uidOf(file, '00080018');
      const store = await run('storescu', gateway('PACS', 'GATEWAY', 'US1_UNCR.dcm'));
      assert.equal(store.code, 0, store.output);

      const findings = await authedHttp(app, ['radiologist']).get(`/v1/medical/studies/${study}/findings`).expect(200);
      assert.equal(findings.body.studyInstanceUID, study);
      assert.deepEqual(
        findings.body.instances.map((i: { sopInstanceUID: string }) => i.sopInstanceUID),
        [instance],
      );
      assert.equal(findings.body.instances[0].modality, 'US');

      const [row, ...more] = await auditRows('medical.dimse-store');
      assert.equal(more.length, 0);
      assert.equal(row.actor, 'dimse:PACS');
      assert.deepEqual(row.roles, []);
      assert.equal(row.outcome, 'ok');
      assert.equal(row.status_code, 200);
      assert.equal(row.model_name, 'breast-us-lesion');
      assert.equal(row.client_address, '127.0.0.1');
      assert.match(String(row.input_digest), /^[0-9a-f]{64}$/);
      const summary = row.output_summary as Record<string, unknown>;
      assert.equal(summary.modality, 'US');
      assert.equal(summary.frames, 1);
      assert.ok(!JSON.stringify(summary).includes(instance), 'the audit row holds no UID in clear');
      assert.ok(!JSON.stringify(summary).includes(study), 'the audit row holds no UID in clear');

      const srFile = await until('the forwarded SR in storescp’s folder', () => readdirSync(received)[0]);
      // The forward counts once storescp has answered, by which time the file is complete.
      await until('the forward to be counted', async () => {
        const metrics = (await authedHttp(app).get('/metrics').expect(200)).text;
        return /^gateway_dimse_sr_forwards_total\{outcome="ok"\} 1$/m.test(metrics) ? true : undefined;
      });
      const dump = await run('dsrdump', [join(received, srFile)]);
      assert.equal(dump.code, 0, dump.output);
      assert.match(dump.output, /^Comprehensive SR Document$/m);
      assert.match(dump.output, /Imaging Measurement Report/);
    });

    it('takes a JPEG multi-frame instance in its own transfer syntax: it arrives compressed and is analysed', async () => {
      // -xy proposes JPEG baseline beside the uncompressed syntaxes; storescu cannot decompress, so only an
      // accepted JPEG context lets it send at all.
      const store = await run('storescu', [
        '-v',
        '-xy',
        ...gateway('PACS', 'GATEWAY', 'US_multiframe_jpeg_baseline.dcm'),
      ]);
      assert.equal(store.code, 0, store.output);
      assert.match(store.output, /Received Store Response \(Success\)/);
      assert.match(store.output, /Converting transfer syntax: JPEG Baseline -> JPEG Baseline$/m);
      const rows = await auditRows('medical.dimse-store');
      assert.equal(rows.length, 2);
      assert.equal(rows[1].outcome, 'ok');
      assert.equal((rows[1].output_summary as { frames: number }).frames, 8);
    });

    it('refuses an MR image with status 0122 (SOP class not supported by the model), audited as invalid', async () => {
      // -d prints the C-STORE response: its status and the ErrorComment that says why.
      const store = await run('storescu', ['-d', ...gateway('MODALITY', 'GATEWAY', 'MR_small.dcm')]);
      assert.notEqual(store.code, 0);
      assert.match(store.output, /^D: DIMSE Status +: 0x0122: Refused: SOP Class not supported$/m);
      assert.match(store.output, /^D: \(0000,0902\) LO \[MODALITY_NOT_ACCEPTED: modality MR is not accepted by /m);

      const rows = await auditRows('medical.dimse-store');
      const refused = rows.find((r) => r.actor === 'dimse:MODALITY');
      assert.ok(refused, 'the refusal has its audit row');
      assert.equal(refused.outcome, 'invalid');
      assert.equal(refused.status_code, 422);
      assert.deepEqual(refused.output_summary, { reason: 'MODALITY_NOT_ACCEPTED' });
    });

    it('refuses a structured report at negotiation: no presentation context for its SOP class', async () => {
      const store = await run('storescu', gateway('PACS', 'GATEWAY', 'test-SR.dcm'));
      assert.notEqual(store.code, 0);
      assert.match(store.output, /No presentation context/i);
    });

    it('answers 0xA700 (out of resources) when the audit trail cannot be written: no unaudited decision', async () => {
      await db.query('ALTER TABLE audit_events RENAME TO audit_events_away');
      try {
        const store = await run('storescu', ['-d', ...gateway('PACS', 'GATEWAY', 'US1_UNCR.dcm')]);
        assert.notEqual(store.code, 0);
        assert.match(store.output, /^D: DIMSE Status +: 0xa700/im);
        assert.match(
          store.output,
          /^D: \(0000,0902\) LO \[no answer leaves without its audit row: send the request again\]/m,
        );
      } finally {
        await db.query('ALTER TABLE audit_events_away RENAME TO audit_events');
      }
    });

    it('answers a bug with 0x0110 and an ErrorComment naming its reference, logged with its stack under it', async () => {
      const intake = app.get(MedicalIntakeService);
      // A bug where the analysis would run: a language error whose message names internals.
      intake.analyseAndKeep = () =>
        Promise.reject(new TypeError("Cannot read properties of undefined (reading 'pool')"));
      const written: string[] = [];
      const stderrWrite = process.stderr.write.bind(process.stderr);
      process.stderr.write = (chunk: string | Uint8Array, ...rest: never[]) => {
        written.push(String(chunk));
        return stderrWrite(chunk, ...rest);
      };
      let store: Run;
      try {
        store = await run('storescu', ['-d', ...gateway('PACS', 'GATEWAY', 'US1_UNCR.dcm')]);
      } finally {
        process.stderr.write = stderrWrite;
        delete (intake as Partial<MedicalIntakeService>).analyseAndKeep; // the prototype's again
      }
      assert.notEqual(store.code, 0);
      assert.match(store.output, /^D: DIMSE Status +: 0x0110/m);
      const comment = /^D: \(0000,0902\) LO \[([^\]]*)\]/m.exec(store.output)?.[1] ?? '';
      // What the PACS's operator can act on (the gateway failed, not the image; the reference to quote), no internals.
      const ref = /^gateway internal error; ref ([0-9a-f-]{36})$/.exec(comment)?.[1];
      assert.ok(ref, `ErrorComment: "${comment}"`);
      assert.ok(comment.length <= 64);
      assert.doesNotMatch(comment, /TypeError|pool/);

      // One log line under that reference, with the stack, as the problem filter logs a 500.
      const lines = written
        .flatMap((chunk) => chunk.split('\n'))
        .filter((line) => line.includes(ref))
        .map((line) => JSON.parse(line) as { level: string; message: Record<string, unknown> });
      assert.equal(lines.length, 1, written.join(''));
      assert.equal(lines[0].level, 'error');
      assert.equal(lines[0].message.msg, 'DIMSE C-STORE failed');
      assert.match(
        String(lines[0].message.error),
        /^TypeError: Cannot read properties of undefined \(reading 'pool'\)\n +at /,
      );

      const [row] = await db.query<Array<Record<string, unknown>>>(
        'SELECT outcome, status_code, output_summary FROM audit_events WHERE request_id = $1',
        [ref],
      );
      assert.deepEqual(
        [row?.outcome, row?.status_code, row?.output_summary],
        ['error', 500, { reason: 'INTERNAL' }],
        'the audit row carries the same reference',
      );
    });

    it('answers a runtime refusal with its status and an ErrorComment that leads with its code', async () => {
      const intake = app.get(MedicalIntakeService);
      // What the runtime's batcher throws when the model's queue is full.
      intake.analyseAndKeep = () =>
        Promise.reject(new AppError('QUEUE_FULL', "the model's queue is full (64 waiting)", { retryAfterSeconds: 1 }));
      let store: Run;
      try {
        store = await run('storescu', ['-d', ...gateway('PACS', 'GATEWAY', 'US1_UNCR.dcm')]);
      } finally {
        delete (intake as Partial<MedicalIntakeService>).analyseAndKeep;
      }
      assert.match(store.output, /^D: DIMSE Status +: 0xa700/im);
      assert.match(store.output, /^D: \(0000,0902\) LO \[QUEUE_FULL: the model's queue is full \(64 waiting\)\]/m);
    });

    it('rejects an association without protocol version 1 or with another application context, audited as invalid', async () => {
      /** The first PDU back: [type, result, source, reason] for an A-ASSOCIATE-RJ. */
      const answer = async (request: Buffer): Promise<number[]> => {
        const data = await firstPdu(port, request);
        return [data[0], data[7], data[8], data[9]];
      };
      // Result permanent (1); source service provider, ACSE (2), reason protocol version not supported (2).
      assert.deepEqual(await answer(associateRequest({ protocolVersion: 2 })), [0x03, 1, 2, 2]);
      // Result permanent (1); source service user (1), reason application context name not supported (2).
      assert.deepEqual(await answer(associateRequest({ applicationContext: '1.2.3.4.5' })), [0x03, 1, 1, 2]);
      // The same request with DICOM's context and version 1 is let in.
      assert.equal((await answer(associateRequest()))[0], 0x02);
      const rows = await until('the refusals audited', async () => {
        const found = (await auditRows('medical.dimse-associate')).filter((r) => r.outcome === 'invalid');
        return found.length >= 2 ? found : undefined;
      });
      assert.deepEqual(
        rows.map((r) => [(r.output_summary as { reason: string }).reason, r.status_code]),
        [
          ['PROTOCOL_VERSION_NOT_SUPPORTED', 400],
          ['APPLICATION_CONTEXT_NOT_SUPPORTED', 400],
        ],
      );
    });

    it('aborts a garbled or unknown command at once, and nothing reaches stderr', async () => {
      const sopClass = element(0, 0x02, Buffer.from('1.2.840.10008.1.1\0'));
      const commands = {
        // Breaks off in the middle of its second element: the command field is never read.
        garbled: Buffer.concat([sopClass, Buffer.from([0, 0, 0, 1, 0xff, 0xff])]),
        // Well formed, with a command field no DIMSE service defines.
        unknown: Buffer.concat([
          sopClass,
          element(0, 0x100, u16(0x7777)),
          element(0, 0x110, u16(1)),
          element(0, 0x800, u16(0x101)),
        ]),
      };
      const written: string[] = [];
      const stderrWrite = process.stderr.write.bind(process.stderr);
      process.stderr.write = (chunk: string | Uint8Array, ...rest: never[]) => {
        written.push(String(chunk));
        return stderrWrite(chunk, ...rest);
      };
      try {
        for (const [name, command] of Object.entries(commands)) {
          const types = await new Promise<number[]>((resolve, reject) => {
            const seen: number[] = [];
            const socket = connect(port, '127.0.0.1', () => socket.write(associateRequest()));
            const timer = setTimeout(() => {
              socket.destroy();
              reject(new Error(`${name}: no abort within 5 s (PDUs back: ${seen.join(',')})`));
            }, 5000);
            socket.on('data', (data) => {
              seen.push(data[0]);
              if (data[0] !== 0x02) return;
              socket.write(commandPData(command));
            });
            socket.on('error', () => undefined);
            socket.on('close', () => {
              clearTimeout(timer);
              resolve(seen);
            });
          });
          // A-ASSOCIATE-AC, then A-ABORT, then the gateway closes the connection.
          assert.deepEqual(types, [0x02, 0x07], name);
        }
      } finally {
        process.stderr.write = stderrWrite;
      }
      assert.deepEqual(written, []);
    });

    it('aborts a command, or data fragments without a C-STORE, that the library would buffer past 1 MiB', async () => {
      // Fragments of 200 KiB: a command that never ends (control 1), and data fragments no command announced (0).
      const fragment = Buffer.alloc(200 * 1024, 0x41);
      for (const [name, control] of [
        ['command fragments', 1],
        ['data fragments', 0],
      ] as const) {
        const result = await new Promise<{ types: number[]; sent: number }>((resolve, reject) => {
          const types: number[] = [];
          let sent = 0;
          const socket = connect(port, '127.0.0.1', () => socket.write(associateRequest()));
          const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error(`${name}: no abort within 10 s (PDUs back: ${types.join(',')}, sent ${sent})`));
          }, 10_000);
          const send = () => {
            // Up to 4 MiB, one fragment after another, as long as the gateway reads them.
            while (sent < 20 && !socket.destroyed) {
              sent++;
              if (!socket.write(dataPData(fragment, control))) return socket.once('drain', send);
            }
          };
          socket.on('data', (data) => {
            types.push(data[0]);
            if (data[0] === 0x02) send();
          });
          socket.on('error', () => undefined);
          socket.on('close', () => {
            clearTimeout(timer);
            resolve({ types, sent });
          });
        });
        assert.deepEqual(result.types, [0x02, 0x07], name);
      }
    });

    it('counts the stores by outcome', async () => {
      const metrics = (await authedHttp(app).get('/metrics').expect(200)).text;
      assert.match(metrics, /^gateway_dimse_stores_total\{outcome="ok"\} 2$/m);
      assert.match(metrics, /^gateway_dimse_stores_total\{outcome="invalid"\} 1$/m);
      assert.match(metrics, /^gateway_dimse_stores_total\{outcome="unaudited"\} 1$/m);
      assert.match(metrics, /^gateway_dimse_stores_total\{outcome="error"\} 2$/m);
      // Both analysed instances had their SR forwarded; the unaudited one did not: its decision never left.
      await until('both forwards to be counted', async () => {
        const text = (await authedHttp(app).get('/metrics').expect(200)).text;
        return /^gateway_dimse_sr_forwards_total\{outcome="ok"\} 2$/m.test(text) ? true : undefined;
      });
      assert.equal(readdirSync(received).length, 2);
    });
  },
);

describe(
  'medical: every shared file the single route analyses is stored over C-STORE, by DCMTK and by dcmjs-dimse',
  { skip: DICOM_SKIP || (!HAS_DCMTK && SKIP_DCMTK ? MISSING : false) },
  () => {
    let app: NestFastifyApplication;
    let db: DataSource;
    let modelsDir: string;
    let port: number;

    before(async () => {
      assert.ok(HAS_DCMTK, MISSING);
      port = await freePort();
      modelsDir = medicalModelsDir(['US', 'CT', 'MR', 'NM', 'OT']);
      app = await createTestApp({ MODELS_DIR: modelsDir, MEDICAL_DIMSE_PORT: String(port) });
      db = app.get(DataSource);
    });

    after(async () => {
      await app?.close();
      if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
    });

    /** The last C-STORE's audit row: its outcome and the frames analysed. */
    const lastStore = async (): Promise<[unknown, unknown]> => {
      const [row] = await db.query<Array<{ outcome: string; output_summary: { frames?: number } }>>(
        `SELECT outcome, output_summary FROM audit_events WHERE action = 'medical.dimse-store' ORDER BY id DESC LIMIT 1`,
      );
      return [row?.outcome, row?.output_summary.frames];
    };

    for (const [file, { frames }] of Object.entries(DECODABLE_FILES)) {
      it(`${file}: stored and analysed (${frames} frame(s)), sent by dcmsend and by dcmjs-dimse`, async () => {
        // dcmsend proposes the file's own transfer syntax and sends its bytes as they are.
        const sent = await run('dcmsend', [
          '-v',
          '-aec',
          'GATEWAY',
          '127.0.0.1',
          String(port),
          join(SHARED_DICOM, file),
        ]);
        assert.equal(sent.code, 0, sent.output);
        assert.match(sent.output, /with status SUCCESS {2}: 1$/m, sent.output);
        assert.deepEqual(await lastStore(), ['ok', frames], 'dcmsend');

        // dcmjs-dimse reads the file with dcmjs and writes it again: the multi-frame JPEG's 44 fragments came with an
        // offset table of 44 entries for its 8 frames, and were answered 0xC000.
        const dataset = Dataset.fromFile(join(SHARED_DICOM, file));
        assert.ok(dataset);
        const status = await cStoreTo(dataset, { aeTitle: 'GATEWAY', host: '127.0.0.1', port }, 'MODALITY', {
          stepMs: 10_000,
          totalMs: 30_000,
        });
        assert.equal(status, 0, `status 0x${status.toString(16)}`);
        assert.deepEqual(await lastStore(), ['ok', frames], 'dcmjs-dimse');
      });
    }
  },
);

/** One raw association for US image storage: its socket and the PDUs it gets back, in order. */
async function storageAssociation(port: number): Promise<{ socket: Socket; next: () => Promise<Buffer> }> {
  const peer = rawPeer(port, 10_000);
  const next = async () => {
    const pdu = await peer.next();
    assert.ok(pdu, 'the gateway closed the connection');
    return pdu;
  };
  peer.socket.write(associateRequest({ abstractSyntax: US_IMAGE_STORAGE }));
  assert.equal((await next())[0], 0x02, 'association accepted');
  return { socket: peer.socket, next };
}

describe('medical: DIMSE data sets draw on the upload budget', () => {
  let app: NestFastifyApplication;
  let port: number;
  let budget: UploadBudget;
  let db: DataSource;

  before(async () => {
    port = await freePort();
    app = await createTestApp({ MEDICAL_DIMSE_PORT: String(port), MAX_INFLIGHT_BODY_BYTES: String(1024 * 1024) });
    budget = app.get(UploadBudget);
    db = app.get(DataSource);
  });

  after(async () => {
    await app?.close();
  });

  /** 700 kB of data set (not DICOM: refused once read) in 100 kB fragments, the last one apart. */
  const fragments = Array.from({ length: 7 }, () => Buffer.alloc(100_000));
  const sendAll = (socket: Socket, messageId: number) => {
    socket.write(commandPData(storeCommand(US_IMAGE_STORAGE, `1.2.3.${messageId}`, messageId)));
    fragments.forEach((f, i) => socket.write(dataPData(f, i === fragments.length - 1 ? 2 : 0)));
  };

  it('answers 0xA700 to a data set that comes while others hold MAX_INFLIGHT_BODY_BYTES, and takes it once they are done', async () => {
    const held = await storageAssociation(port);
    held.socket.write(commandPData(storeCommand(US_IMAGE_STORAGE, '1.2.3.0', 1)));
    fragments.slice(0, -1).forEach((f) => held.socket.write(dataPData(f)));
    await until('600 kB held', () => (budget.held >= 600_000 ? true : undefined));

    const other = await storageAssociation(port);
    sendAll(other.socket, 1);
    const busy = responseStatus(await other.next());
    assert.equal(busy.status, 0xa700, JSON.stringify(busy));
    assert.match(busy.comment ?? '', /too many uploads at once/);
    const [row] = await db.query<Array<{ outcome: string; status_code: number; output_summary: unknown }>>(
      `SELECT outcome, status_code, output_summary FROM audit_events WHERE action = 'medical.dimse-store' ORDER BY id`,
    );
    assert.deepEqual([row.status_code, row.output_summary], [503, { reason: 'UPLOADS_BUSY' }]);

    // The held data set completes and is answered (refused for what it is), and gives its bytes back.
    held.socket.write(dataPData(fragments[6], 2));
    assert.notEqual(responseStatus(await held.next()).status, 0xa700);
    await until('the budget given back', () => (budget.held === 0 ? true : undefined));
    sendAll(other.socket, 2);
    assert.notEqual(responseStatus(await other.next()).status, 0xa700);
    held.socket.destroy();
    other.socket.destroy();
  });

  it('gives back the bytes of a data set whose connection drops before it is whole', async () => {
    const dropped = await storageAssociation(port);
    dropped.socket.write(commandPData(storeCommand(US_IMAGE_STORAGE, '1.2.3.9', 1)));
    fragments.slice(0, -1).forEach((f) => dropped.socket.write(dataPData(f)));
    await until('600 kB held', () => (budget.held >= 600_000 ? true : undefined));
    dropped.socket.destroy();
    await until('the budget given back', () => (budget.held === 0 ? true : undefined));
  });
});

describe('medical: a DIMSE data set past MEDICAL_MAX_BODY_BYTES', () => {
  let app: NestFastifyApplication;
  let port: number;

  before(async () => {
    port = await freePort();
    app = await createTestApp({ MEDICAL_DIMSE_PORT: String(port), MEDICAL_MAX_BODY_BYTES: '100000' });
  });

  after(async () => {
    await app?.close();
  });

  it('is answered 0xA700 and audited 413 with the code HTTP gives an upload past it, BODY_TOO_LARGE', async () => {
    const store = await storageAssociation(port);
    store.socket.write(commandPData(storeCommand(US_IMAGE_STORAGE, '1.2.3.1', 1)));
    store.socket.write(dataPData(Buffer.alloc(60_000)));
    store.socket.write(dataPData(Buffer.alloc(60_000), 2));
    const answer = responseStatus(await store.next());
    assert.equal(answer.status, 0xa700, JSON.stringify(answer));
    assert.match(answer.comment ?? '', /larger than MEDICAL_MAX_BODY_BYTES/);
    const [row] = await app
      .get(DataSource)
      .query<Array<{ outcome: string; status_code: number; output_summary: unknown }>>(
        `SELECT outcome, status_code, output_summary FROM audit_events WHERE action = 'medical.dimse-store'`,
      );
    assert.deepEqual(
      [row?.outcome, row?.status_code, row?.output_summary],
      ['invalid', 413, { reason: 'BODY_TOO_LARGE' }],
    );
    store.socket.destroy();
  });
});

describe('medical: a DIMSE release is answered after the C-STOREs before it', () => {
  const ARTIM_MS = 1000;
  let app: NestFastifyApplication;
  let port: number;

  before(async () => {
    port = await freePort();
    app = await createTestApp({ MEDICAL_DIMSE_PORT: String(port), MEDICAL_DIMSE_ARTIM_TIMEOUT_MS: String(ARTIM_MS) });
  });

  after(async () => {
    await app?.close();
  });

  it('sends the C-STORE-RSP, then the A-RELEASE-RP, to a release right behind its data set', async () => {
    const scp = app.get(DimseScpService);
    const store = scp.store.bind(scp);
    // Longer than ARTIM, which runs from the A-RELEASE-RP: an answer sent after it would find the connection closed.
    scp.store = async (instance) => {
      await sleep(ARTIM_MS + 500);
      return store(instance);
    };
    // The data set's stream as Node's Writable was before 20.x: write() answers false for a chunk past the
    // high-water mark even when taken at once, and 'drain' follows on the next tick. The library then waits
    // for the drain before it hands the C-STORE over, which let the A-RELEASE-RQ behind it be answered first.
    const createStream = Object.getOwnPropertyDescriptor(DimseConnection.prototype, 'createStoreWritableStream');
    DimseConnection.prototype.createStoreWritableStream = function (this: DimseConnection) {
      const stream = (createStream?.value as () => Writable).call(this);
      const write = stream.write.bind(stream) as (chunk: Buffer) => boolean;
      stream.write = ((chunk: Buffer) => {
        write(chunk);
        if (chunk.length < stream.writableHighWaterMark) return true;
        process.nextTick(() => stream.emit('drain'));
        return false;
      }) as Writable['write'];
      return stream;
    };
    const { socket, next } = await storageAssociation(port);
    try {
      // A data set (not DICOM: refused once read) in one PDV, and the A-RELEASE-RQ in the same write, as an SCU
      // that does not wait for its answer sends it.
      socket.write(
        Buffer.concat([
          commandPData(storeCommand(US_IMAGE_STORAGE, '1.2.3.88', 1)),
          dataPData(Buffer.alloc(100_000), 2),
          releaseRequest(),
        ]),
      );
      const answer = await next();
      assert.equal(answer[0], 0x04, `the C-STORE-RSP first, not PDU type ${answer[0]}`);
      assert.notEqual(responseStatus(answer).status, -1);
      assert.equal((await next())[0], 0x06, 'then the A-RELEASE-RP');
    } finally {
      if (createStream) Object.defineProperty(DimseConnection.prototype, 'createStoreWritableStream', createStream);
      delete (scp as Partial<DimseScpService>).store; // the prototype's again
      socket.destroy();
    }
  });
});

/** Resolves with the time the gateway took to close `socket`, from `since`. */
const closedAfter = (socket: Socket, since: number): Promise<number> =>
  new Promise((resolve) => {
    if (socket.destroyed) resolve(Date.now() - since);
    else socket.once('close', () => resolve(Date.now() - since));
  });

describe(
  'medical: DIMSE connections that do not speak, or trickle, hold no association for long',
  {
    skip: !HAS_DCMTK && SKIP_DCMTK ? MISSING : false,
  },
  () => {
    const ARTIM_MS = 1000;
    const RECEIVE_MS = 3000;
    let app: NestFastifyApplication;
    let port: number;

    before(async () => {
      port = await freePort();
      app = await createTestApp({
        MEDICAL_DIMSE_PORT: String(port),
        MEDICAL_DIMSE_ARTIM_TIMEOUT_MS: String(ARTIM_MS),
        HTTP_REQUEST_TIMEOUT_MS: String(RECEIVE_MS),
      });
    });

    after(async () => {
      await app?.close();
    });

    const silent = async (count: number): Promise<Socket[]> =>
      Promise.all(
        Array.from(
          { length: count },
          () =>
            new Promise<Socket>((resolve, reject) => {
              const socket = connect(port, '127.0.0.1', () => resolve(socket));
              socket.on('error', reject);
            }),
        ),
      );

    it('lets a caller in beside 100 silent connections, and closes those after ARTIM', async () => {
      const openedAt = Date.now();
      const sockets = await silent(100);
      const closings = sockets.map((s) => closedAfter(s, openedAt));
      const echo = await run('echoscu', ['-aet', 'PACS', '-aec', 'GATEWAY', '127.0.0.1', String(port)]);
      assert.equal(echo.code, 0, echo.output);
      const closedIn = await Promise.all(closings);
      // Past the 64 awaiting their A-ASSOCIATE-RQ the oldest are dropped as new ones come; the rest at ARTIM.
      const early = closedIn.filter((ms) => ms < ARTIM_MS - 200);
      assert.ok(early.length >= 100 - 64, `closed early: ${early.length}`);
      assert.ok(Math.max(...closedIn) <= ARTIM_MS + 1000, `last closed after ${Math.max(...closedIn)} ms`);
      const store = await run('echoscu', ['-aet', 'PACS', '-aec', 'GATEWAY', '127.0.0.1', String(port)]);
      assert.equal(store.code, 0, store.output);
    });

    it('closes a rejected association the peer leaves open, after ARTIM', async () => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      const types: number[] = [];
      socket.on('data', (d: Buffer) => types.push(d[0]));
      const sentAt = Date.now();
      socket.write(associateRequest({ called: 'ELSEWHERE' }));
      const ms = await closedAfter(socket, sentAt);
      assert.deepEqual(types, [0x03]);
      assert.ok(ms <= ARTIM_MS + 1000, `closed after ${ms} ms`);
    });

    /** Sends `pieces` one every 100 ms on `socket` until it closes; resolves with the PDU types back and the time to close. */
    const trickle = (socket: Socket, pieces: Buffer[], seen: number[]): Promise<number> => {
      const startedAt = Date.now();
      socket.on('data', (d: Buffer) => seen.push(d[0]));
      const timer = setInterval(() => {
        const piece = pieces.shift();
        if (piece && !socket.destroyed) socket.write(piece);
      }, 100);
      return closedAfter(socket, startedAt).finally(() => clearInterval(timer));
    };

    it('aborts a PDU whose bytes trickle in, within the bound from its first byte', async () => {
      const { socket } = await storageAssociation(port);
      const pdu = dataPData(Buffer.alloc(200));
      const seen: number[] = [];
      const ms = await trickle(
        socket,
        [...pdu].map((b) => Buffer.from([b])),
        seen,
      );
      assert.deepEqual(seen, [0x07], 'A-ABORT, then the gateway closes');
      assert.ok(ms <= RECEIVE_MS + 1000, `closed after ${ms} ms`);
    });

    it('aborts a data set that trickles in whole small PDUs, within the bound from its first byte', async () => {
      const { socket } = await storageAssociation(port);
      // A C-STORE whose 200-byte data set comes one byte per P-DATA-TF, each PDU whole: the bytes never stop.
      const pieces = [
        commandPData(storeCommand(US_IMAGE_STORAGE, '1.2.3.77', 1)),
        ...Array.from({ length: 200 }, () => dataPData(Buffer.alloc(1))),
      ];
      const seen: number[] = [];
      const ms = await trickle(socket, pieces, seen);
      assert.deepEqual(seen, [0x07], 'A-ABORT, then the gateway closes');
      assert.ok(ms <= RECEIVE_MS + 1000, `closed after ${ms} ms`);
    });
  },
);

describe(
  'medical: a failed SR forward is sent again from memory',
  { skip: DICOM_SKIP || (!HAS_DCMTK && SKIP_DCMTK ? MISSING : false) },
  () => {
    let app: NestFastifyApplication;
    let db: DataSource;
    let modelsDir: string;
    let received: string;
    let storescp: ChildProcess | undefined;
    let port: number;
    let destPort: number;

    before(async () => {
      received = mkdtempSync(join(tmpdir(), 'dimse-retried-'));
      destPort = await freePort();
      port = await freePort();
      modelsDir = medicalModelsDir();
      app = await createTestApp({
        MODELS_DIR: modelsDir,
        MEDICAL_DIMSE_PORT: String(port),
        MEDICAL_DIMSE_FORWARD: `DEST@127.0.0.1:${destPort}`,
        // Retries 1 s and 3 s after the first attempt, then given up.
        MEDICAL_DIMSE_FORWARD_RETRIES: '2',
        MEDICAL_DIMSE_FORWARD_RETRY_DELAY_MS: '1000',
      });
      db = app.get(DataSource);
    });

    after(async () => {
      await app?.close();
      storescp?.kill();
      if (received) rmSync(received, { recursive: true, force: true });
      if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
    });

    const metric = async (outcome: string): Promise<number> => {
      const text = (await authedHttp(app).get('/metrics').expect(200)).text;
      const match = new RegExp(`^gateway_dimse_sr_forwards_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text);
      return match ? Number(match[1]) : 0;
    };
    const store = () =>
      run('storescu', [
        '-aet',
        'PACS',
        '-aec',
        'GATEWAY',
        '127.0.0.1',
        String(port),
        join(SHARED_DICOM, 'US1_UNCR.dcm'),
      ]);

    it('delivers the SR once the destination, down at first, is up', async () => {
      const stored = await store();
      assert.equal(stored.code, 0, stored.output);
      await until('the first attempt to fail', async () => ((await metric('failed')) >= 1 ? true : undefined));
      assert.equal(await metric('ok'), 0);
      storescp = spawn('storescp', ['--aetitle', 'DEST', '-od', received, String(destPort)], { stdio: 'ignore' });
      await until('storescp to listen', () => accepts(destPort));
      const srFile = await until('the SR in storescp’s folder', () => readdirSync(received)[0], 10_000);
      await until('the retry counted', async () => ((await metric('ok')) === 1 ? true : undefined));
      const dump = await run('dsrdump', [join(received, srFile)]);
      assert.equal(dump.code, 0, dump.output);
      assert.match(dump.output, /^Comprehensive SR Document$/m);
      assert.match(dump.output, /Imaging Measurement Report/);
      const text = (await authedHttp(app).get('/metrics').expect(200)).text;
      assert.match(text, /^gateway_dimse_sr_forwards_waiting 0$/m);
    });

    it('gives an SR up after its retries: logged, counted and audited against its store', async () => {
      storescp?.kill();
      await until('storescp to stop', async () => ((await accepts(destPort)) ? undefined : true));
      const stored = await store();
      assert.equal(stored.code, 0, stored.output);
      await until('the SR given up', async () => ((await metric('dropped')) === 1 ? true : undefined), 15_000);
      // The first attempt and its two retries.
      assert.ok((await metric('failed')) >= 1 + 3);
      const [row, ...more] = await db.query<Array<Record<string, unknown>>>(
        `SELECT actor, action, input_digest, output_summary, outcome FROM audit_events
          WHERE action = 'medical.dimse-forward' ORDER BY id`,
      );
      assert.equal(more.length, 0);
      assert.equal(row.actor, 'dimse:PACS');
      assert.equal(row.outcome, 'error');
      assert.deepEqual(row.output_summary, {
        reason: 'RETRIES_EXHAUSTED',
        to: `DEST@127.0.0.1:${destPort}`,
        attempts: 3,
      });
      const [storeRow] = await db.query<Array<{ input_digest: string }>>(
        `SELECT input_digest FROM audit_events WHERE action = 'medical.dimse-store' ORDER BY id DESC LIMIT 1`,
      );
      assert.equal(row.input_digest, storeRow.input_digest);
      assert.equal(readdirSync(received).length, 1);
    });
  },
);

describe(
  'medical: the SR forward sends the transfer syntax the destination accepted',
  { skip: !HAS_DCMTK && SKIP_DCMTK ? MISSING : false },
  () => {
    // storescp prefers explicit VR little endian by default; +xi accepts implicit only. It writes what it received.
    for (const [flags, name] of [
      [[], 'LittleEndianExplicit'],
      [['+xi'], 'LittleEndianImplicit'],
    ] as const) {
      it(`storescp ${flags.join(' ') || '(default)'}: the SR arrives as ${name} and reads as the one built`, async () => {
        const received = mkdtempSync(join(tmpdir(), 'dimse-forward-ts-'));
        const destPort = await freePort();
        const storescp = spawn('storescp', ['--aetitle', 'DEST', ...flags, '-od', received, String(destPort)], {
          stdio: 'ignore',
        });
        try {
          await until('storescp to listen', () => accepts(destPort));
          const built = join(received, 'built.dcm');
          const sr = Buffer.from(buildLesionSr(SR_SOURCE, SR_FINDINGS, SR_OPTIONS));
          writeFileSync(built, sr);
          const status = await cStoreTo(
            datasetOfPart10(sr),
            { aeTitle: 'DEST', host: '127.0.0.1', port: destPort },
            'GATEWAY',
            {
              stepMs: 5000,
              totalMs: 10_000,
            },
          );
          assert.equal(status, 0);
          const file = join(
            received,
            readdirSync(received).find((f) => f.startsWith('SR'))!,
          );
          const meta = await run('dcmdump', ['+P', '0002,0010', file]);
          assert.match(meta.output, new RegExp(`^\\(0002,0010\\) UI =${name} `, 'm'));
          // A data set sent in another encoding than the context's would not parse; this one reads as the SR built.
          const [sent, kept] = await Promise.all([
            run('dsrdump', ['+Pt', '+Pc', built]),
            run('dsrdump', ['+Pt', '+Pc', file]),
          ]);
          assert.equal(kept.code, 0, kept.output);
          assert.equal(kept.output, sent.output);
        } finally {
          storescp.kill();
          rmSync(received, { recursive: true, force: true });
        }
      });
    }
  },
);

describe("medical: the SR forward honours the destination's maximum PDU length", () => {
  it('sends no PDU longer than the destination announced: one too small for the command gets an A-ABORT', async () => {
    const seen: Array<[number, number]> = [];
    const server = createServer((socket) => {
      let buffered = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 6 && buffered.length >= 6 + buffered.readUInt32BE(2)) {
          const pdu = buffered.subarray(0, 6 + buffered.readUInt32BE(2));
          buffered = buffered.subarray(pdu.length);
          seen.push([pdu[0], pdu.readUInt32BE(2)]);
          if (pdu[0] === 0x01) socket.write(associateAccept(pdu, 64));
          else socket.end();
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    try {
      const sr = Buffer.from(buildLesionSr(SR_SOURCE, SR_FINDINGS, SR_OPTIONS));
      await assert.rejects(
        cStoreTo(datasetOfPart10(sr), { aeTitle: 'TINY', host: '127.0.0.1', port: address.port }, 'GATEWAY', {
          stepMs: 5000,
          totalMs: 10_000,
        }),
        /maximum PDU length 64 is below the \d+ bytes of the command: not sent/,
      );
      // The A-ASSOCIATE-RQ, then an A-ABORT and no P-DATA-TF (the library follows with its A-RELEASE-RQ, 4 bytes).
      assert.equal(seen[0][0], 0x01);
      assert.ok(
        seen.some(([type]) => type === 0x07),
        JSON.stringify(seen),
      );
      assert.ok(!seen.some(([type, length]) => type === 0x04 || (type !== 0x01 && length > 64)), JSON.stringify(seen));
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('medical: refused DIMSE associations are limited per peer address', () => {
  it('refuses them all, audits the first AUTH_REFUSAL_LIMIT and counts the rest into one summary row', async () => {
    const dataDir = await freshDataDir();
    const port = await freePort();
    const app = await createTestApp({
      DATA_DIR: dataDir,
      MEDICAL_DIMSE_PORT: String(port),
      MEDICAL_DIMSE_ALLOWED_AETS: 'PACS',
      AUTH_REFUSAL_LIMIT: '2',
      AUTH_REFUSAL_WINDOW_MS: '600000',
    });
    /** The first PDU's type back: 0x02 accepted, 0x03 rejected. */
    const answer = async (request: Buffer): Promise<number> => (await firstPdu(port, request))[0];
    const types = [];
    try {
      for (const calling of ['STRANGER', 'STRANGER', 'STRANGER', 'INTRUDER', 'STRANGER', 'STRANGER']) {
        types.push(await answer(associateRequest({ calling })));
      }
      // An allowed caller from the same address is let in.
      types.push(await answer(associateRequest({ calling: 'PACS' })));
    } finally {
      await app.close();
    }
    assert.deepEqual(types, [0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x02]);
    const reopened = await createTestApp({ DATA_DIR: dataDir });
    try {
      const rows = await reopened.get(DataSource).query<
        Array<{
          actor: string | null;
          status_code: number;
          client_address: string;
          output_summary: Record<string, unknown>;
        }>
      >(
        `SELECT actor, status_code, client_address, output_summary FROM audit_events
            WHERE action = 'medical.dimse-associate' ORDER BY occurred_at`,
      );
      assert.equal(rows.length, 3);
      assert.deepEqual(
        rows.slice(0, 2).map((r) => [r.actor, r.status_code, r.output_summary.reason]),
        [
          ['dimse:STRANGER', 403, 'CALLING_AE_NOT_ALLOWED'],
          ['dimse:STRANGER', 403, 'CALLING_AE_NOT_ALLOWED'],
        ],
      );
      const summary = rows[2];
      assert.equal(summary.actor, null, 'the summary names no actor: two calling AE titles were refused');
      assert.equal(summary.client_address, '127.0.0.1');
      assert.equal(summary.status_code, 403);
      assert.equal(summary.output_summary.refusals, 4);
      assert.equal(summary.output_summary.severalActors, true);
      assert.equal(summary.output_summary.reason, 'CALLING_AE_NOT_ALLOWED');
    } finally {
      await reopened.close();
    }
  });
});

/** A raw connection: `next` gives the PDUs that come back in order, then undefined once the gateway has closed it. */
function rawPeer(port: number, ms?: number): { socket: Socket; next: () => Promise<Buffer | undefined> } {
  const socket = connect(port, '127.0.0.1');
  const pdus: Buffer[] = [];
  let buffered = Buffer.alloc(0);
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 6 && buffered.length >= 6 + buffered.readUInt32BE(2)) {
      pdus.push(buffered.subarray(0, 6 + buffered.readUInt32BE(2)));
      buffered = buffered.subarray(6 + buffered.readUInt32BE(2));
    }
  });
  socket.on('error', () => undefined);
  socket.on('close', () => (closed = true));
  const next = async () => {
    const pdu = await until(
      'the next PDU from the gateway, or its close',
      () => pdus.shift() ?? (closed || undefined),
      ms,
    );
    return pdu === true ? undefined : pdu;
  };
  return { socket, next };
}

describe('medical: DIMSE PDUs are read only where the association stands', { skip: DICOM_SKIP }, () => {
  let app: NestFastifyApplication;
  let db: DataSource;
  let modelsDir: string;
  let port: number;
  const US_FILE = 'US1_UNCR.dcm';
  const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
  const usContext: ProposedContext = { id: 1, abstractSyntax: US_IMAGE_STORAGE, transferSyntax: EXPLICIT_LITTLE };

  before(async () => {
    port = await freePort();
    modelsDir = medicalModelsDir();
    app = await createTestApp({
      MODELS_DIR: modelsDir,
      MEDICAL_DIMSE_PORT: String(port),
      MEDICAL_DIMSE_ALLOWED_AETS: 'PACS',
    });
    db = app.get(DataSource);
  });

  after(async () => {
    await app?.close();
    if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
  });

  const storeRows = (): Promise<Array<{ outcome: string; status_code: number; output_summary: unknown }>> =>
    db.query(
      `SELECT outcome, status_code, output_summary FROM audit_events WHERE action = 'medical.dimse-store' ORDER BY id`,
    );

  /** The US image's C-STORE on presentation context `contextId`, naming `sopClass` and `sopInstance`. */
  const store = (
    socket: Socket,
    contextId = 1,
    sopClass = US_IMAGE_STORAGE,
    sopInstance = uidOf(dicomFile(US_FILE), '00080018'),
  ): void => {
    socket.write(commandPData(storeCommand(sopClass, sopInstance), contextId));
    socket.write(dataPData(datasetOf(dicomFile(US_FILE)), 2, contextId));
  };

  /** An association from PACS proposing `contexts`, accepted. */
  const associated = async (contexts: ProposedContext[] = [usContext]) => {
    const peer = rawPeer(port);
    peer.socket.write(associateRequest({ calling: 'PACS', contexts }));
    assert.equal((await peer.next())?.[0], 0x02, 'A-ASSOCIATE-AC');
    return peer;
  };

  it('answers a C-STORE or a C-ECHO sent after A-ASSOCIATE-RJ with A-ABORT: nothing analysed, stored or audited', async () => {
    for (const [options, send] of [
      [{ calling: 'STRANGER' }, (socket: Socket) => store(socket)],
      [{ calling: 'PACS', called: 'ELSEWHERE' }, (socket: Socket) => store(socket)],
      [{ calling: 'STRANGER' }, (socket: Socket) => socket.write(commandPData(echoCommand()))],
    ] as const) {
      const { socket, next } = rawPeer(port);
      socket.write(associateRequest({ ...options, contexts: [usContext] }));
      assert.equal((await next())?.[0], 0x03, 'A-ASSOCIATE-RJ');
      send(socket);
      const abort = await next();
      // A-ABORT, service provider (2), unexpected PDU (2); then the gateway closes.
      assert.deepEqual([abort?.[0], abort?.[8], abort?.[9]], [0x07, 2, 2], JSON.stringify(options));
      assert.equal(await next(), undefined);
    }
    assert.deepEqual(await storeRows(), []);
  });

  it('answers a C-STORE sent after A-RELEASE-RP with A-ABORT: nothing stored', async () => {
    const { socket, next } = await associated();
    socket.write(releaseRequest());
    assert.equal((await next())?.[0], 0x06, 'A-RELEASE-RP');
    store(socket);
    assert.equal((await next())?.[0], 0x07);
    assert.equal(await next(), undefined);
    assert.deepEqual(await storeRows(), []);
  });

  it('aborts a PDV on a presentation context that was not accepted, or never proposed', async () => {
    for (const contextId of [1, 9]) {
      // Context 1 proposes CT in a syntax the gateway does not decode, so it is rejected; 3 is accepted.
      const { socket, next } = await associated([
        { id: 1, abstractSyntax: CT_IMAGE_STORAGE, transferSyntax: '1.2.840.10008.1.2.4.100' },
        { id: 3, abstractSyntax: VERIFICATION, transferSyntax: IMPLICIT_LITTLE },
      ]);
      store(socket, contextId);
      const abort = await next();
      // A-ABORT, service provider (2), invalid PDU parameter value (6).
      assert.deepEqual([abort?.[0], abort?.[8], abort?.[9]], [0x07, 2, 6], `context ${contextId}`);
      assert.equal(await next(), undefined);
    }
    assert.deepEqual(await storeRows(), []);
  });

  it('aborts a message whose fragments are not all on its presentation context: nothing analysed, kept or audited', async () => {
    const file = dicomFile(US_FILE);
    const dataset = datasetOf(file);
    const command = storeCommand(US_IMAGE_STORAGE, uidOf(file, '00080018'));
    // All accepted: Verification as 1 (in the image's own syntax), the US image as 3 and as 5.
    const contexts: ProposedContext[] = [
      { id: 1, abstractSyntax: VERIFICATION, transferSyntax: EXPLICIT_LITTLE },
      { ...usContext, id: 3 },
      { ...usContext, id: 5 },
    ];
    const budget = app.get(UploadBudget);
    for (const [name, pdus] of [
      // Judged by its data set's context, this one was analysed, kept and answered success.
      ['command on Verification, data set on the US context', [commandPData(command, 1), dataPData(dataset, 2, 3)]],
      ['command and data set on two US contexts', [commandPData(command, 3), dataPData(dataset, 2, 5)]],
      [
        'command fragments on two contexts',
        [dataPData(command.subarray(0, 20), 1, 3), dataPData(command.subarray(20), 3, 5), dataPData(dataset, 2, 3)],
      ],
      [
        'data set fragments on two contexts',
        [commandPData(command, 3), dataPData(dataset.subarray(0, 1000), 0, 3), dataPData(dataset.subarray(1000), 2, 5)],
      ],
    ] as const) {
      const { socket, next } = await associated(contexts);
      socket.write(Buffer.concat(pdus));
      const abort = await next();
      // A-ABORT, service provider (2), invalid PDU parameter value (6), with no C-STORE-RSP; then the gateway closes.
      assert.deepEqual([abort?.[0], abort?.[8], abort?.[9]], [0x07, 2, 6], name);
      assert.equal(await next(), undefined, name);
    }
    await until('the budget given back', () => (budget.held === 0 ? true : undefined));
    assert.deepEqual(await storeRows(), []);
    await authedHttp(app, ['radiologist'])
      .get(`/v1/medical/studies/${uidOf(file, '0020000D')}/findings`)
      .expect(404);
  });

  it('refuses a C-STORE on a context accepted for another SOP class with 0x0122, audited as invalid', async () => {
    // Verification accepted in explicit little endian, the US image's own syntax.
    const { socket, next } = await associated([
      { id: 1, abstractSyntax: VERIFICATION, transferSyntax: EXPLICIT_LITTLE },
    ]);
    store(socket);
    const answer = responseStatus((await next()) ?? Buffer.alloc(0));
    assert.deepEqual(answer, {
      status: 0x0122,
      comment: 'SOP_CLASS_NOT_NEGOTIATED: not on this presentation context',
    });
    socket.destroy();
    const rows = await storeRows();
    assert.deepEqual(
      rows.map((r) => [r.outcome, r.status_code, r.output_summary]),
      [['invalid', 400, { reason: 'SOP_CLASS_NOT_NEGOTIATED' }]],
    );
  });

  it('answers 0xA900 to a data set that is not the instance or SOP class its C-STORE names: nothing kept', async () => {
    const file = dicomFile(US_FILE);
    const study = uidOf(file, '0020000D');
    const { socket, next } = await associated([
      usContext,
      { id: 3, abstractSyntax: CT_IMAGE_STORAGE, transferSyntax: EXPLICIT_LITTLE },
    ]);
    store(socket, 1, US_IMAGE_STORAGE, '1.2.3.4.5.6');
    assert.deepEqual(responseStatus((await next()) ?? Buffer.alloc(0)), {
      status: 0xa900,
      comment: "SOP_MISMATCH: the data set's SOPInstanceUID is not the request's",
    });
    store(socket, 3, CT_IMAGE_STORAGE);
    assert.deepEqual(responseStatus((await next()) ?? Buffer.alloc(0)), {
      status: 0xa900,
      comment: "SOP_MISMATCH: the data set's SOPClassUID is not the request's",
    });
    await authedHttp(app, ['radiologist']).get(`/v1/medical/studies/${study}/findings`).expect(404);
    // The same data set under its own UIDs is analysed and kept.
    store(socket);
    assert.equal(responseStatus((await next()) ?? Buffer.alloc(0)).status, 0x0000);
    await authedHttp(app, ['radiologist']).get(`/v1/medical/studies/${study}/findings`).expect(200);
    socket.destroy();
    const rows = (await storeRows()).slice(-3);
    assert.deepEqual(
      rows.map((r) => [r.outcome, r.status_code, r.output_summary]),
      [
        ['invalid', 422, { reason: 'SOP_MISMATCH', attribute: 'SOPInstanceUID' }],
        ['invalid', 422, { reason: 'SOP_MISMATCH', attribute: 'SOPClassUID' }],
        ['ok', 200, rows[2].output_summary],
      ],
    );
  });

  it('answers a C-STORE-RQ that declares no data set with 0xC000, audited as invalid', async () => {
    const { socket, next } = await associated();
    socket.write(commandPData(storeCommand(US_IMAGE_STORAGE, '1.2.3.4.5.7', 1, false)));
    assert.deepEqual(responseStatus((await next()) ?? Buffer.alloc(0)), {
      status: 0xc000,
      comment: 'NO_DATASET: a C-STORE-RQ must carry a data set',
    });
    socket.destroy();
    const [row] = (await storeRows()).slice(-1);
    assert.deepEqual([row.outcome, row.status_code, row.output_summary], ['invalid', 400, { reason: 'NO_DATASET' }]);
  });

  it('aborts at once an empty P-DATA-TF, an A-RELEASE-RP it never asked for, and a second A-ASSOCIATE-RQ', async () => {
    for (const [name, pdu, reason] of [
      // Invalid PDU parameter value (6); unexpected PDU (2).
      ['empty P-DATA-TF', emptyPData(), 6],
      ['A-RELEASE-RP', releaseResponse(), 2],
      ['A-ASSOCIATE-RQ', associateRequest({ calling: 'PACS' }), 2],
    ] as const) {
      const { socket, next } = await associated();
      const sentAt = Date.now();
      socket.write(pdu);
      const abort = await next();
      assert.deepEqual([abort?.[0], abort?.[8], abort?.[9]], [0x07, 2, reason], name);
      assert.equal(await next(), undefined);
      assert.ok(Date.now() - sentAt < 5000, `${name}: closed after ${Date.now() - sentAt} ms`);
    }
  });
});
