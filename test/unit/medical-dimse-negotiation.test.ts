import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DICOM_APPLICATION_CONTEXT,
  judgeAssociateProtocol,
  readAssociateProtocol,
  storeMismatch,
} from '../../src/domains/medical/dimse/dimse-negotiation.util';
import { associateRequest } from '../fixtures/dimse-pdus';

describe('medical: DIMSE association protocol fields', () => {
  it('reads the protocol version and application context name of an A-ASSOCIATE-RQ', () => {
    assert.deepEqual(readAssociateProtocol(associateRequest()), {
      protocolVersion: 1,
      applicationContext: DICOM_APPLICATION_CONTEXT,
    });
    // A UID of odd length is padded with NUL (PS3.5) or, as some tools do, a space.
    for (const pad of ['\0', ' ']) {
      assert.equal(
        readAssociateProtocol(associateRequest({ applicationContext: `1.2.3${pad}` })).applicationContext,
        '1.2.3',
      );
    }
    assert.equal(readAssociateProtocol(associateRequest({ protocolVersion: 3 })).protocolVersion, 3);
  });

  it('reads nothing from what is not a whole A-ASSOCIATE-RQ, and never reads past its bytes', () => {
    assert.deepEqual(readAssociateProtocol(Buffer.alloc(0)), {});
    const request = associateRequest();
    assert.deepEqual(readAssociateProtocol(Buffer.concat([Buffer.from([0x04]), request.subarray(1)])), {});
    // Cut inside the application context item: its name is not there to read.
    assert.deepEqual(readAssociateProtocol(request.subarray(0, 80)), { protocolVersion: 1 });
    // An item length running past the end.
    const broken = Buffer.from(request);
    broken.writeUInt16BE(0xffff, 76);
    assert.deepEqual(readAssociateProtocol(broken), { protocolVersion: 1 });
  });

  it("refuses a version without bit 0, then any application context but DICOM's", () => {
    assert.equal(judgeAssociateProtocol(readAssociateProtocol(associateRequest())), undefined);
    // Bit 0 is version 1; a peer may set others beside it.
    assert.equal(
      judgeAssociateProtocol({ protocolVersion: 3, applicationContext: DICOM_APPLICATION_CONTEXT }),
      undefined,
    );
    assert.equal(
      judgeAssociateProtocol({ protocolVersion: 2, applicationContext: DICOM_APPLICATION_CONTEXT }),
      'PROTOCOL_VERSION_NOT_SUPPORTED',
    );
    assert.equal(
      judgeAssociateProtocol({ protocolVersion: 1, applicationContext: '1.2.3' }),
      'APPLICATION_CONTEXT_NOT_SUPPORTED',
    );
    // An A-ASSOCIATE-RQ must carry an application context item.
    assert.equal(judgeAssociateProtocol({ protocolVersion: 1 }), 'APPLICATION_CONTEXT_NOT_SUPPORTED');
  });
});

describe('medical: a C-STORE data set against the UIDs its request declared', () => {
  const declared = { sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', sopInstanceUid: '1.2.3.4.5' };
  const dataset = { sopClassUID: '1.2.840.10008.5.1.4.1.1.6.1', sopInstanceUID: '1.2.3.4.5' };

  it('finds none where both UIDs are the same, whatever padding an odd-length UID took', () => {
    assert.equal(storeMismatch(declared, dataset), undefined);
    assert.equal(storeMismatch({ ...declared, sopInstanceUid: '1.2.3.4.5\0' }, dataset), undefined);
    assert.equal(storeMismatch(declared, { ...dataset, sopInstanceUID: '1.2.3.4.5 ' }), undefined);
  });

  it('names the SOP class first, then the instance', () => {
    assert.equal(storeMismatch(declared, { ...dataset, sopInstanceUID: '1.2.3.4.6' }), 'SOPInstanceUID');
    assert.equal(storeMismatch(declared, { ...dataset, sopClassUID: '1.2.840.10008.5.1.4.1.1.2' }), 'SOPClassUID');
    assert.equal(
      storeMismatch({ sopClassUid: '', sopInstanceUid: '' }, { sopClassUID: '1.2', sopInstanceUID: '1.3' }),
      'SOPClassUID',
    );
    // A prefix is another UID.
    assert.equal(storeMismatch({ ...declared, sopInstanceUid: '1.2.3.4' }, dataset), 'SOPInstanceUID');
  });
});
