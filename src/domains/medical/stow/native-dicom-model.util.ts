/** A DICOM JSON data set (PS3.18 F.2): attributes by tag; a sequence's values are data sets, its items. */
export interface DicomJsonDataset {
  [tag: string]: DicomJsonAttribute;
}

export interface DicomJsonAttribute {
  vr: string;
  /** Absent for an empty (zero length) attribute; null for an empty value among others. */
  Value?: Array<string | number | null | DicomJsonDataset>;
}

const NAMESPACE = 'http://dicom.nema.org/PS3.19/models/NativeDICOM';

/** Values this writer has no form for: PersonName groups and binary (InlineBinary / BulkData) values. */
const UNWRITTEN_VRS = new Set(['PN', 'OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);

/**
 * A DICOM JSON data set as a Native DICOM Model XML document (PS3.19 A.1, the `application/dicom+xml` of PS3.18):
 * one DicomAttribute per attribute in tag order, with its tag, VR and PS3.6 keyword (from `keywords`, by tag; none
 * for a tag it lacks, as for an element unknown to the host), a Value per value and an Item per sequence item, each
 * numbered from 1. A private element is written as gggg00ee with its creator in privateCreator, and the creator
 * element itself is left out, as A.1.5 asks. Attributes with PN or binary VRs are refused (the callers write none).
 */
export function nativeDicomModel(dataset: DicomJsonDataset, keywords: Readonly<Record<string, string>>): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<NativeDicomModel xmlns="${NAMESPACE}" xml:space="preserve">${dataSet(dataset, keywords)}</NativeDicomModel>\n`
  );
}

function dataSet(dataset: DicomJsonDataset, keywords: Readonly<Record<string, string>>): string {
  let xml = '';
  for (const tag of Object.keys(dataset).sort()) {
    if (!/^[0-9A-F]{8}$/.test(tag)) throw new TypeError(`"${tag}" is not a DICOM JSON tag (8 upper-case hex digits)`);
    const group = tag.slice(0, 4);
    const element = parseInt(tag.slice(4), 16);
    const isPrivate = parseInt(group, 16) % 2 === 1;
    // Group lengths are never written (A.1.1); a private creator travels as its elements' privateCreator.
    if (element === 0 || (isPrivate && element <= 0xff)) continue;
    const attribute = dataset[tag];
    let head = `tag="${isPrivate ? `${group}00${tag.slice(6)}` : tag}" vr="${escapeXml(attribute.vr)}"`;
    if (isPrivate) {
      const creatorTag = `${group}00${tag.slice(4, 6)}`;
      const creator = dataset[creatorTag]?.Value?.[0];
      if (typeof creator !== 'string')
        throw new TypeError(`private element ${tag} has no private creator ${creatorTag}`);
      head += ` privateCreator="${escapeXml(creator)}"`;
    } else if (keywords[tag]) {
      head += ` keyword="${escapeXml(keywords[tag])}"`;
    }
    xml += `<DicomAttribute ${head}>${values(tag, attribute, keywords)}</DicomAttribute>`;
  }
  return xml;
}

function values(tag: string, attribute: DicomJsonAttribute, keywords: Readonly<Record<string, string>>): string {
  if (UNWRITTEN_VRS.has(attribute.vr)) throw new TypeError(`${tag}: VR ${attribute.vr} is not written as XML here`);
  return (attribute.Value ?? [])
    .map((value, index) => {
      const number = index + 1;
      if (attribute.vr === 'SQ') {
        if (value === null || typeof value !== 'object') throw new TypeError(`${tag}: a sequence item is a data set`);
        return `<Item number="${number}">${dataSet(value, keywords)}</Item>`;
      }
      if (value !== null && typeof value === 'object') throw new TypeError(`${tag}: VR ${attribute.vr} holds no items`);
      return `<Value number="${number}">${value === null ? '' : escapeXml(String(value))}</Value>`;
    })
    .join('');
}

/**
 * Text fit for XML 1.0 content and attribute values: markup characters as entities, CR, LF and tab as character
 * references (a parser would otherwise fold them in attributes and turn CR into LF), and the characters XML 1.0
 * cannot carry at all (C0 controls, lone surrogates, U+FFFE/U+FFFF) as U+FFFD.
 */
export function escapeXml(text: string): string {
  return text
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD')
    .replace(/[&<>"'\t\n\r]/g, (c) => ENTITIES[c]);
}

const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  '\t': '&#x9;',
  '\n': '&#xA;',
  '\r': '&#xD;',
};
