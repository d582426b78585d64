import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DicomRejected } from '../../src/domains/medical/dicom/dicom-rejected';
import { DicomJsonDataset, escapeXml, nativeDicomModel } from '../../src/domains/medical/stow/native-dicom-model.util';
import {
  storeResponse,
  storeResponseXml,
  storeRetryAfter,
  storeStatus,
} from '../../src/domains/medical/stow/stow-response.util';
import { AppError } from '../../src/common/errors/app-error';
import { childrenNamed, parseXml, XmlElement } from '../fixtures/xml-document';

const US_IMAGE = '1.2.840.10008.5.1.4.1.1.6.1';
const SR = '1.2.840.10008.5.1.4.1.1.88.33';

/** The DicomAttribute children of a data set element, as `tag -> element`. */
function attributesOf(element: XmlElement): Map<string, XmlElement> {
  return new Map(childrenNamed(element, 'DicomAttribute').map((a) => [a.attributes.tag, a]));
}

/** The numbered children of an attribute (Value or Item): their numbers in order, and the elements. */
function numbered(attribute: XmlElement, name: 'Value' | 'Item'): XmlElement[] {
  const children = childrenNamed(attribute, name);
  assert.equal(children.length, attribute.children.length, `${attribute.attributes.tag} holds only ${name} elements`);
  assert.deepEqual(
    children.map((c) => c.attributes.number),
    children.map((_c, i) => String(i + 1)),
    `${attribute.attributes.tag}: ${name} numbers run from 1 by 1`,
  );
  return children;
}

describe('medical: the STOW-RS store response as Native DICOM Model XML (PS3.19 A.1)', () => {
  const response = storeResponse(
    [
      { sopClassUID: US_IMAGE, sopInstanceUID: '1.2.3.1' },
      { sopClassUID: US_IMAGE, sopInstanceUID: '1.2.3.2' },
    ],
    [
      {
        sopClassUID: SR,
        sopInstanceUID: '1.2.3.9',
        rejection: new DicomRejected('NOT_AN_IMAGE', 'a structured report (SR) is not an image'),
        part: 2,
      },
      { rejection: new DicomRejected('MALFORMED', 'the file is truncated <at> byte 12 & "more"'), part: 4 },
    ],
  );

  it("is a NativeDicomModel document with the JSON answer's attributes, in tag order, with tag, vr and keyword", () => {
    const xml = storeResponseXml(response);
    assert.match(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<NativeDicomModel /);
    const root = parseXml(xml);
    assert.equal(root.name, 'NativeDicomModel');
    assert.deepEqual(root.attributes, {
      xmlns: 'http://dicom.nema.org/PS3.19/models/NativeDICOM',
      'xml:space': 'preserve',
    });
    assert.deepEqual(
      childrenNamed(root, 'DicomAttribute').map((a) => a.attributes),
      [
        { tag: '00081190', vr: 'UR', keyword: 'RetrieveURL' },
        { tag: '00081198', vr: 'SQ', keyword: 'FailedSOPSequence' },
        { tag: '00081199', vr: 'SQ', keyword: 'ReferencedSOPSequence' },
      ],
    );
    assert.equal(root.children.length, 3);
    // Type 2 and empty: the attribute with no Value at all.
    assert.deepEqual(attributesOf(root).get('00081190')?.children, []);
  });

  it('numbers the stored items from 1, each with its class, instance and empty RetrieveURL', () => {
    const stored = numbered(attributesOf(parseXml(storeResponseXml(response))).get('00081199')!, 'Item');
    assert.deepEqual(
      stored.map((item) => {
        const attributes = attributesOf(item);
        assert.deepEqual([...attributes.keys()], ['00081150', '00081155', '00081190']);
        assert.deepEqual(
          [...attributes.values()].map((a) => [a.attributes.vr, a.attributes.keyword]),
          [
            ['UI', 'ReferencedSOPClassUID'],
            ['UI', 'ReferencedSOPInstanceUID'],
            ['UR', 'RetrieveURL'],
          ],
        );
        assert.deepEqual(attributes.get('00081190')?.children, []);
        return [
          numbered(attributes.get('00081150')!, 'Value').map((v) => v.text),
          numbered(attributes.get('00081155')!, 'Value').map((v) => v.text),
        ];
      }),
      [
        [[US_IMAGE], ['1.2.3.1']],
        [[US_IMAGE], ['1.2.3.2']],
      ],
    );
  });

  it('writes each failed item with its FailureReason in decimal and the reason in the private element', () => {
    const failed = numbered(attributesOf(parseXml(storeResponseXml(response))).get('00081198')!, 'Item');
    assert.equal(failed.length, 2);
    const [sr, truncated] = failed.map(attributesOf);
    assert.deepEqual([...sr.keys()], ['00081150', '00081155', '00081197', '00090001']);
    assert.equal(sr.get('00081150')?.children[0].text, SR);
    assert.equal(sr.get('00081155')?.children[0].text, '1.2.3.9');
    assert.deepEqual(sr.get('00081197')?.attributes, { tag: '00081197', vr: 'US', keyword: 'FailureReason' });
    assert.equal(numbered(sr.get('00081197')!, 'Value')[0].text, String(0x0122));
    // A private element: gggg00ee with its creator named, no keyword, and no separate creator element (A.1.5).
    assert.deepEqual(sr.get('00090001')?.attributes, {
      tag: '00090001',
      vr: 'LT',
      privateCreator: 'REGULATED-INFERENCE-GATEWAY',
    });
    assert.equal(
      numbered(sr.get('00090001')!, 'Value')[0].text,
      'part 2: NOT_AN_IMAGE: a structured report (SR) is not an image',
    );
    // An unreadable part has no UIDs to name: the Type 1 references are there, empty, as in the JSON answer; its
    // text is escaped and read back whole.
    assert.deepEqual([...truncated.keys()], ['00081150', '00081155', '00081197', '00090001']);
    for (const [tag, keyword] of [
      ['00081150', 'ReferencedSOPClassUID'],
      ['00081155', 'ReferencedSOPInstanceUID'],
    ]) {
      assert.deepEqual(truncated.get(tag)?.attributes, { tag, vr: 'UI', keyword });
      assert.deepEqual(truncated.get(tag)?.children, [], `${keyword} has no Value`);
    }
    assert.equal(truncated.get('00081197')?.children[0].text, String(0xc000));
    assert.equal(
      truncated.get('00090001')?.children[0].text,
      'part 4: MALFORMED: the file is truncated <at> byte 12 & "more"',
    );
  });

  it('numbers values and items afresh in every attribute and every nested item', () => {
    const dataset: DicomJsonDataset = {
      '00081199': {
        vr: 'SQ',
        Value: [
          {
            '00081160': { vr: 'IS', Value: [1, 2, 3] },
            '0040A730': {
              vr: 'SQ',
              Value: [
                { '00080100': { vr: 'SH', Value: ['A'] } },
                { '00080100': { vr: 'SH', Value: ['B', null, 'C'] } },
              ],
            },
          },
          { '00081160': { vr: 'IS', Value: [7] } },
        ],
      },
    };
    const root = parseXml(nativeDicomModel(dataset, { '00081199': 'ReferencedSOPSequence' }));
    const items = numbered(attributesOf(root).get('00081199')!, 'Item');
    assert.equal(items.length, 2);
    const first = attributesOf(items[0]);
    assert.deepEqual([...first.keys()], ['00081160', '0040A730']);
    assert.equal(first.get('00081160')?.attributes.keyword, undefined, 'no keyword for a tag the table lacks');
    assert.deepEqual(
      numbered(first.get('00081160')!, 'Value').map((v) => v.text),
      ['1', '2', '3'],
    );
    const nested = numbered(first.get('0040A730')!, 'Item').map((item) =>
      numbered(attributesOf(item).get('00080100')!, 'Value').map((v) => v.text),
    );
    assert.deepEqual(nested, [['A'], ['B', '', 'C']]);
    const second = attributesOf(items[1]);
    assert.deepEqual(
      numbered(second.get('00081160')!, 'Value').map((v) => v.text),
      ['7'],
    );
  });

  it('escapes markup, keeps CR, LF and tab, and replaces what XML 1.0 cannot hold', () => {
    const hostile = `</Value><Value number="2">x</Value> & &amp; "q" 'a' ]]> a\r\nb\tc \u0000\u0001\u001b\uFFFE \uD800 ok \u{1F600}`;
    const root = parseXml(
      nativeDicomModel(
        {
          '00090010': { vr: 'LO', Value: [`"creator" & <co>`] },
          '00091001': { vr: 'LT', Value: [hostile] },
        },
        {},
      ),
    );
    const [attribute] = root.children;
    assert.equal(root.children.length, 1, 'the creator element is not written');
    assert.equal(attribute.attributes.privateCreator, `"creator" & <co>`);
    const values = numbered(attribute, 'Value');
    assert.equal(values.length, 1);
    assert.equal(
      values[0].text,
      `</Value><Value number="2">x</Value> & &amp; "q" 'a' ]]> a\r\nb\tc \uFFFD\uFFFD\uFFFD\uFFFD \uFFFD ok \u{1F600}`,
    );
    assert.equal(escapeXml('a\nb'), 'a&#xA;b');
    assert.equal(escapeXml(`<&>"'`), '&lt;&amp;&gt;&quot;&apos;');
  });

  it('refuses what it cannot write as the model asks rather than writing it wrong', () => {
    const refuses = (dataset: DicomJsonDataset, reason: RegExp) =>
      assert.throws(() => nativeDicomModel(dataset, {}), reason);
    refuses({ '00100010': { vr: 'PN', Value: ['Doe^John'] } }, /VR PN/);
    refuses({ '7FE00010': { vr: 'OB', Value: [] } }, /VR OB/);
    refuses({ '00091001': { vr: 'LT', Value: ['no creator'] } }, /no private creator 00090010/);
    refuses({ '0008119x': { vr: 'UR' } }, /not a DICOM JSON tag/);
    refuses({ '00081199': { vr: 'SQ', Value: ['not an item'] } }, /a sequence item is a data set/);
    // Group lengths are never written (A.1.1).
    assert.deepEqual(parseXml(nativeDicomModel({ '00080000': { vr: 'UL', Value: [4] } }, {})).children, []);
  });
});

describe('medical: the STOW-RS store response in DICOM JSON (PS3.18 Annex I)', () => {
  it('gives every failed item the SOP Instance Reference Macro, empty where the part had no UIDs to read', () => {
    const response = storeResponse(
      [],
      [
        { sopClassUID: SR, sopInstanceUID: '1.2.3.9', rejection: new DicomRejected('NOT_AN_IMAGE', 'an SR'), part: 1 },
        { sopInstanceUID: '1.2.3.10', rejection: new DicomRejected('MALFORMED', 'no SOP Class UID'), part: 2 },
        { rejection: new DicomRejected('NOT_DICOM', 'no DICM prefix'), part: 3 },
      ],
    );
    const failed = response['00081198'].Value as DicomJsonDataset[];
    assert.deepEqual(
      failed.map((item) => [item['00081150'], item['00081155']]),
      [
        [
          { vr: 'UI', Value: [SR] },
          { vr: 'UI', Value: ['1.2.3.9'] },
        ],
        [{ vr: 'UI' }, { vr: 'UI', Value: ['1.2.3.10'] }],
        [{ vr: 'UI' }, { vr: 'UI' }],
      ],
    );
    assert.deepEqual(
      failed.map((item) => item['00081197'].Value),
      [[0x0122], [0xc000], [0xc000]],
    );
  });
});

describe("medical: the test's XML reader (saxes) refuses documents that are not well formed", () => {
  it('accepts a well-formed document and reads references', () => {
    const root = parseXml(
      `<?xml version="1.0" encoding="UTF-8"?>\n<a x="1&#xA;2"><b y='&lt;'>t&amp;&#65;</b><c/></a>\n`,
    );
    assert.deepEqual(root.attributes, { x: '1\n2' });
    assert.deepEqual(
      root.children.map((c) => [c.name, c.attributes, c.text]),
      [
        ['b', { y: '<' }, 't&A'],
        ['c', {}, ''],
      ],
    );
  });

  for (const [why, document] of [
    ['crossed tags', '<a><b></a></b>'],
    ['an unclosed element', '<a><b></b>'],
    ['a bare ampersand', '<a>x & y</a>'],
    ['an unknown entity', '<a>&nbsp;</a>'],
    ['a "<" in an attribute', '<a x="<"/>'],
    ['a repeated attribute', '<a x="1" x="2"/>'],
    ['a control character', '<a>\u0001</a>'],
    ['a reference to a control character', '<a>&#1;</a>'],
    ['two roots', '<a/><b/>'],
    ['"]]>" in text', '<a>]]></a>'],
  ]) {
    it(`refuses ${why}`, () => assert.throws(() => parseXml(document)));
  }
  it('folds an unescaped LF in an attribute to a space, as a conforming parser does', () => {
    assert.equal(parseXml('<a x="1\n2"/>').attributes.x, '1 2');
  });
});

describe('medical: the STOW-RS status of a store response (PS3.18 10.5.3.1)', () => {
  const busy = (seconds?: number) => ({
    part: 1,
    rejection: new AppError('QUEUE_FULL', 'queue full', { retryAfterSeconds: seconds }),
  });
  const notReady = { part: 2, rejection: new AppError('MODEL_NOT_READY', 'no worker', { retryAfterSeconds: 3 }) };
  const malformed = { part: 3, rejection: new DicomRejected('MALFORMED', 'truncated') };
  const late = { part: 4, rejection: new AppError('DEADLINE_EXCEEDED', 'deadline passed') };

  it('is 200 all stored, 202 some failed, 409 none stored for a reason of the request, 503 for want of resources alone', () => {
    assert.equal(storeStatus(2, []), 200);
    assert.equal(storeStatus(1, [busy(), malformed]), 202);
    assert.equal(storeStatus(0, [malformed]), 409);
    assert.equal(storeStatus(0, [busy(), malformed]), 409, 'a mixture of reasons');
    assert.equal(storeStatus(0, [busy(), late]), 409, 'a deadline passed is 0x0110, not out of resources');
    assert.equal(storeStatus(0, [busy(), notReady]), 503);
    assert.equal(storeRetryAfter([busy(), notReady]), 3, 'the longest the refusals asked for');
    assert.equal(storeRetryAfter([busy()]), 1, 'at least 1 second');
  });
});
