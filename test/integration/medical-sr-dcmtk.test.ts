import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { data, type NaturalDataset } from 'dcmjs';
import { buildLesionSr, type SrOptions, type SrTransferSyntax } from '../../src/domains/medical/sr/lesion-sr.util';
import { SR_FINDINGS, SR_OPTIONS, SR_SOURCE } from '../fixtures/sr-fixtures';

/**
 * DCMTK's dsrdump reads the SR with its own (stricter) parser: it checks each content item's
 * required attributes, VRs and the Comprehensive SR relationship constraints, and prints what it
 * finds on stderr as W:/E:/F: lines. A clean SR gives exit status 0 and an empty stderr.
 */

const SOURCE = SR_SOURCE;
const FINDINGS = SR_FINDINGS;
const OPTIONS: SrOptions = { ...SR_OPTIONS, malignancyProbability: 0.2 };
// DCMTK 3.6.7's VR checker cannot check UTF-8 text; it says so once and reads on.
const UTF8_NOT_CHECKED = 'W: The VR checker does not support this Specific Character Set: ISO_IR 192';

const onPath = (tool: string, versionFlag: string): boolean => !spawnSync(tool, [versionFlag]).error;
const HAS_DSRDUMP = onPath('dsrdump', '--version') && onPath('dcmdump', '--version');
const SKIP_DCMTK = process.env.SKIP_DCMTK === '1';
const MISSING = 'dsrdump or dcmdump (DCMTK) is not on PATH: apt-get install -y dcmtk, or set SKIP_DCMTK=1 to skip';

const dir = mkdtempSync(join(tmpdir(), 'medical-sr-'));

function write(name: string, bytes: ArrayBuffer): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.from(bytes));
  return path;
}

/** `+Pt` prints template identifiers, `+Pc` every code including concept names. */
function dsrdump(path: string): { status: number | null; stdout: string; stderr: string } {
  assert.ok(HAS_DSRDUMP, MISSING);
  const run = spawnSync('dsrdump', ['+Pt', '+Pc', path], { encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('medical: lesion SR read back by DCMTK', { skip: !HAS_DSRDUMP && SKIP_DCMTK ? MISSING : false }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('dsrdump reads a two-finding SR without a warning or an error', () => {
    const { status, stdout, stderr } = dsrdump(write('two-findings.dcm', buildLesionSr(SOURCE, FINDINGS, OPTIONS)));
    assert.equal(stderr, '');
    assert.equal(status, 0);
    assert.match(stdout, /^Comprehensive SR Document$/m);
    assert.match(stdout, /^Patient +: Doe\^Jane \(F, 1970-01-01, #P-0001\)$/m);
    assert.match(stdout, /^Completion Flag +: COMPLETE$/m);
    assert.match(stdout, /^Verification Flag +: UNVERIFIED$/m);
    assert.match(stdout, /<CONTAINER:\(126000,DCM,"Imaging Measurement Report"\)=SEPARATE> {2}# TID 1500 \(DCMR/);
    assert.match(stdout, /<has obs context CODE:\(121005,DCM,"Observer Type"\)=\(121007,DCM,"Device"\)>/);
    assert.match(stdout, /\(121058,DCM,"Procedure reported"\)=\(47079000,SCT,"Ultrasonography of breast"\)/);
    assert.equal(
      stdout.match(/<contains CONTAINER:\(125007,DCM,"Measurement Group"\)=SEPARATE> {2}# TID 1410/g)?.length,
      2,
    );
    assert.match(stdout, /\(112039,DCM,"Tracking Identifier"\)="lesion 1"/);
    assert.match(stdout, /\(112039,DCM,"Tracking Identifier"\)="lesion 2"/);
    assert.equal(stdout.match(/\(121071,DCM,"Finding"\)=\(52988006,SCT,"Lesion"\)/g)?.length, 2);
    assert.match(stdout, /<contains SCOORD:\(111030,DCM,"Image Region"\)=\(POLYLINE,10\/20,\.\.\.\)>/);
    assert.match(stdout, /<selected from IMAGE:=\(US image,,3\)>/);
    assert.match(stdout, /\(42798000,SCT,"Area"\)="24\.75" \(mm2,UCUM,"square millimeter"\)/);
    assert.match(stdout, /\(LESION-PROB,99GW,"Lesion probability"\)="0\.875" \(1,UCUM,"no units"\)/);
    assert.match(stdout, /\(111047,DCM,"Probability of cancer"\)="0\.2" \(1,UCUM,"no units"\)/);
    assert.match(stdout, /<inferred from IMAGE:\(121112,DCM,"Source of Measurement"\)=\(US image,\)>/);
  });

  it('dsrdump reads an SR with no findings', () => {
    const { status, stdout, stderr } = dsrdump(write('no-findings.dcm', buildLesionSr(SOURCE, [], OPTIONS)));
    assert.equal(stderr, '');
    assert.equal(status, 0);
    assert.match(stdout, /<contains CONTAINER:\(126010,DCM,"Imaging Measurements"\)=SEPARATE>/);
    assert.match(stdout, /<contains TEXT:\(121071,DCM,"Finding"\)="No lesion detected">/);
  });

  it('dsrdump reads UTF-8 patient names, noting only that its VR checker skips UTF-8', () => {
    const source = { ...SOURCE, patient: { ...SOURCE.patient, PatientName: 'Müller^Zoë' } };
    const { status, stdout, stderr } = dsrdump(write('utf8.dcm', buildLesionSr(source, FINDINGS, OPTIONS)));
    assert.equal(status, 0);
    assert.deepEqual(stderr.split('\n').filter(Boolean), [UTF8_NOT_CHECKED]);
    assert.match(stdout, /^Patient +: Müller\^Zoë /m);
  });

  it('dcmdump and dsrdump read the SR in each transfer syntax it is written in, named in its file meta', () => {
    // Only the UIDs made for each SR (Tracking Unique Identifiers) differ between transfer syntaxes.
    const sameUids = (text: string): string => text.replace(/2\.25\.[0-9]+/g, '2.25.x');
    const reference = dsrdump(write('reference.dcm', buildLesionSr(SOURCE, FINDINGS, OPTIONS)));
    assert.equal(reference.stderr, '');
    const written: Array<[SrTransferSyntax, string]> = [
      ['1.2.840.10008.1.2.1', 'LittleEndianExplicit'],
      ['1.2.840.10008.1.2', 'LittleEndianImplicit'],
      ['1.2.840.10008.1.2.1.99', 'DeflatedLittleEndianExplicit'],
    ];
    for (const [transferSyntax, name] of written) {
      const path = write(`${name}.dcm`, buildLesionSr(SOURCE, FINDINGS, { ...OPTIONS, transferSyntax }));
      const meta = spawnSync('dcmdump', ['+P', '0002,0010', path], { encoding: 'utf8' });
      assert.equal(meta.stderr, '', name);
      assert.match(meta.stdout, new RegExp(`^\\(0002,0010\\) UI =${name} +# +\\d+, 1 TransferSyntaxUID$`, 'm'));
      // The whole data set, read in the transfer syntax the meta names (dcmdump stops at a parse error): no warning.
      const whole = spawnSync('dcmdump', [path], { encoding: 'utf8' });
      assert.equal(whole.status, 0, `${name}: ${whole.stderr}`);
      assert.equal(whole.stderr, '', name);
      assert.match(whole.stdout, /\(0040,a730\) SQ/, `${name}: the ContentSequence is read`);
      const { status, stdout, stderr } = dsrdump(path);
      assert.equal(stderr, '', name);
      assert.equal(status, 0, name);
      assert.equal(sameUids(stdout), sameUids(reference.stdout), name);
    }
  });

  it('dsrdump does refuse a broken SR, so a clean run above means something', () => {
    // Drop the units of the first lesion's first NUM: a type 1 attribute of a NUM content item.
    const file = data.DicomMessage.readFile(buildLesionSr(SOURCE, FINDINGS, OPTIONS));
    const doc = data.DicomMetaDictionary.naturalizeDataset(file.dict);
    const items = (item: NaturalDataset): NaturalDataset[] => item.ContentSequence as NaturalDataset[];
    const measurements = items(doc).find((i) => JSON.stringify(i.ConceptNameCodeSequence).includes('126010'));
    const num = items(items(measurements ?? {})[0]).find((i) => i.ValueType === 'NUM');
    const measured = (num?.MeasuredValueSequence as NaturalDataset[])[0];
    delete measured.MeasurementUnitsCodeSequence;
    file.dict = data.DicomMetaDictionary.denaturalizeDataset(doc);

    const { status, stderr } = dsrdump(write('broken.dcm', file.write()));
    assert.notEqual(status, 0);
    assert.match(stderr, /^W: MeasurementUnitsCodeSequence \(0040,08ea\) absent in SR document \(type 1\)$/m);
    assert.match(stderr, /^F: dsrdump: error \(Tag not found\) parsing file/m);
  });

  it('dciodvfy (dicom3tools) finds no error, where it is installed', (t) => {
    if (!onPath('dciodvfy', '-version')) {
      t.skip('dciodvfy (dicom3tools) is not installed');
      return;
    }
    const run = spawnSync('dciodvfy', [write('dciodvfy.dcm', buildLesionSr(SOURCE, FINDINGS, OPTIONS))], {
      encoding: 'utf8',
    });
    assert.doesNotMatch(`${run.stdout}${run.stderr}`, /^Error/m);
  });
});
