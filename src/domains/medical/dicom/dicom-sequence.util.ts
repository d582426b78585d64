import * as dicomParser from 'dicom-parser';
import { DicomRejected } from './dicom-rejected';
import { tagName } from './dicom-dictionary';

const ITEM = 'xfffee000';
const ITEM_DELIMITATION = 'xfffee00d';
const SEQUENCE_DELIMITATION = 'xfffee0dd';
const UNDEFINED_LENGTH = 0xffffffff;
/** Explicit VRs whose header has a 4-byte length (PS3.5 7.1.2). */
export const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
/** Nesting walked before giving up (dicom-parser's own recursion refuses deeper files). */
const MAX_DEPTH = 64;

interface Header {
  tag: string;
  vr?: string;
  length: number;
  /** Where the header begins. */
  at: number;
  /** Where the value begins. */
  dataOffset: number;
}

/** What is wrong inside a sequence, and in which sequence (the innermost) it is. */
interface Fault {
  sequence: Header;
  why: string;
}

/**
 * The refusal of a top-level sequence whose structure is broken, read from the element header at `position`: where
 * dicom-parser stopped, the sequence it was reading is not in the data set it gave back. Its items are walked
 * here, as PS3.5 7.5 lays them out, instead of reading dicom-parser's words for the fault: those were its own
 * ("item tag (FFFE,E000) not found at offset 710"), or a TypeError of its own ("Cannot read properties of undefined
 * (reading 'push')", a warning pushed to a list it had not passed down), whose text changes with the engine.
 * Undefined where the element there is no sequence, or where its structure holds.
 */
export function sequenceRejection(
  ds: dicomParser.DataSet,
  position: number,
  explicit: boolean,
): DicomRejected | undefined {
  const header = readHeader(ds, position, explicit);
  if (!header || !isSequence(ds, header, explicit)) return undefined;
  const fault = walkSequence(ds, header, explicit, 0);
  if (typeof fault !== 'object') return undefined;
  const within = fault.sequence.at === header.at ? '' : `, in the sequence ${tagName(header.tag)} at byte ${header.at}`;
  return new DicomRejected(
    'MALFORMED',
    `the sequence ${tagName(fault.sequence.tag)} at byte ${fault.sequence.at}${within} cannot be read: ${fault.why}`,
    tagName(header.tag),
  );
}

function readHeader(ds: dicomParser.DataSet, at: number, explicit: boolean): Header | undefined {
  const bytes = ds.byteArray;
  const parser = ds.byteArrayParser;
  if (at + 8 > bytes.length) return undefined;
  const tag = tagAt(ds, at);
  if (!explicit || tag.startsWith('xfffe')) {
    return { tag, length: parser.readUint32(bytes, at + 4), at, dataOffset: at + 8 };
  }
  const vr = vrAt(ds, at);
  if (!LONG_VRS.has(vr)) return { tag, vr, length: parser.readUint16(bytes, at + 6), at, dataOffset: at + 8 };
  if (at + 12 > bytes.length) return undefined;
  return { tag, vr, length: parser.readUint32(bytes, at + 8), at, dataOffset: at + 12 };
}

/** The tag of the element header at `at`, as dicom-parser names tags (`x7fe00010`). */
export function tagAt(ds: dicomParser.DataSet, at: number): string {
  const parser = ds.byteArrayParser;
  const hex = (value: number): string => value.toString(16).padStart(4, '0');
  return `x${hex(parser.readUint16(ds.byteArray, at))}${hex(parser.readUint16(ds.byteArray, at + 2))}`;
}

/** The two bytes of an explicit VR element header at `at` where its VR is, as text. */
export function vrAt(ds: dicomParser.DataSet, at: number): string {
  return Buffer.from(ds.byteArray.subarray(at + 4, at + 6)).toString('latin1');
}

/** As dicom-parser reads it: SQ in explicit VR; in implicit VR, an undefined length or a value that begins with an item. */
function isSequence(ds: dicomParser.DataSet, header: Header, explicit: boolean): boolean {
  if (explicit) return header.vr === 'SQ';
  if (header.length === UNDEFINED_LENGTH) return true;
  return header.dataOffset + 4 <= ds.byteArray.length && tagAt(ds, header.dataOffset) === ITEM;
}

/** Where a walk ended: the position after what it walked, the fault it found, or undefined where it gave up. */
type Walk = number | Fault | undefined;

/** Walks a sequence's items (PS3.5 7.5.1): the position after the sequence, or the first fault found. */
function walkSequence(ds: dicomParser.DataSet, sequence: Header, explicit: boolean, depth: number): Walk {
  if (depth > MAX_DEPTH) return undefined;
  const size = ds.byteArray.length;
  const defined = sequence.length !== UNDEFINED_LENGTH;
  const end = defined ? sequence.dataOffset + sequence.length : size;
  const fault = (why: string): Fault => ({ sequence, why });
  if (defined && sequence.length > 0 && sequence.length < 8) {
    return fault(
      `its value length is ${sequence.length}, which cannot be: its value is items, each beginning with an 8-byte item header (FFFE,E000) (PS3.5 7.5), so it is 0 or at least 8 bytes long; this length is wrong, and the elements after it are read out of step`,
    );
  }
  // A defined length past the end of the data: its items are walked to the first that shows which is wrong.
  const pastEnd = defined && end > size ? ` (${sequence.length}, past the end of the data at byte ${size})` : '';
  let at = sequence.dataOffset;
  while (at < end) {
    if (at + 8 > size) {
      return fault(
        defined
          ? `its value length of ${sequence.length} runs past the end of the data at byte ${size}: the file is truncated, or this length is wrong`
          : `the data ends at byte ${size}, inside it, before its Sequence Delimitation Item (FFFE,E0DD): the delimiter is missing, or the file is truncated`,
      );
    }
    const tag = tagAt(ds, at);
    if (!defined && tag === SEQUENCE_DELIMITATION) return at + 8;
    if (tag !== ITEM) {
      const wanted = defined
        ? 'an Item (FFFE,E000)'
        : 'an Item (FFFE,E000) or its Sequence Delimitation Item (FFFE,E0DD)';
      return fault(
        `at byte ${at}, where ${wanted} must begin (PS3.5 7.5), is the tag ${tagName(tag)}: the sequence's length${pastEnd}, or an item's length before it, is wrong`,
      );
    }
    const item = readHeader(ds, at, false)!;
    let next: Walk;
    if (item.length === UNDEFINED_LENGTH) {
      next = walkElements(ds, sequence, item.dataOffset, undefined, explicit, depth);
      if (next === size) {
        return fault(
          `its item of undefined length (FFFFFFFFH) at byte ${at} has no Item Delimitation Item (FFFE,E00D) before the data ends at byte ${size}: the delimiter is missing, or the file is truncated`,
        );
      }
    } else {
      const itemEnd = item.dataOffset + item.length;
      if (itemEnd > end || itemEnd > size) {
        const past =
          defined && itemEnd > end && end <= size
            ? `its sequence's end at byte ${end}`
            : `the end of the data at byte ${size}`;
        return fault(
          `its item at byte ${at} has a length of ${item.length}, which runs past ${past}: the item's length is wrong, or the file is truncated`,
        );
      }
      next = walkElements(ds, sequence, item.dataOffset, item.dataOffset + item.length, explicit, depth);
      if (typeof next === 'number') next = item.dataOffset + item.length;
    }
    if (typeof next !== 'number') return next;
    at = next;
  }
  if (!defined) {
    return fault(
      `it has an undefined length (FFFFFFFFH), but the data ends at byte ${size} before its Sequence Delimitation Item (FFFE,E0DD): the delimiter is missing, or the file is truncated`,
    );
  }
  return at === end
    ? end
    : fault(`its items end at byte ${at}, past its end at byte ${end}: its length, or an item's, is wrong`);
}

/**
 * Walks an item's elements for the sequences among them: to `end` for an item of a defined length, else to its Item
 * Delimitation Item, the position after which it gives (the end of the data where there is none).
 */
function walkElements(
  ds: dicomParser.DataSet,
  sequence: Header,
  from: number,
  end: number | undefined,
  explicit: boolean,
  depth: number,
): Walk {
  const size = ds.byteArray.length;
  let at = from;
  while (at < (end ?? size)) {
    const header = readHeader(ds, at, explicit);
    if (!header) return end ?? size;
    if (end === undefined && header.tag === ITEM_DELIMITATION) return header.dataOffset;
    if (isSequence(ds, header, explicit)) {
      const next = walkSequence(ds, header, explicit, depth + 1);
      if (typeof next !== 'number') return next;
      at = next;
    } else if (header.length === UNDEFINED_LENGTH) {
      at = skipItems(ds, header.dataOffset); // encapsulated pixel data, or UN: items read past, not into
    } else {
      if (end !== undefined && header.dataOffset + header.length > end) {
        return {
          sequence,
          why: `the element ${tagName(header.tag)} at byte ${header.at}, in its item that ends at byte ${end}, has a value length of ${header.length}, which runs past that item's end: this length, or the item's, is wrong`,
        };
      }
      at = header.dataOffset + header.length;
    }
  }
  return end ?? size;
}

/** The position after the Sequence Delimitation Item that ends items from `from` on, or the end of the data. */
function skipItems(ds: dicomParser.DataSet, from: number): number {
  const size = ds.byteArray.length;
  let at = from;
  while (at + 8 <= size) {
    const tag = tagAt(ds, at);
    if (tag === SEQUENCE_DELIMITATION) return at + 8;
    const length = ds.byteArrayParser.readUint32(ds.byteArray, at + 4);
    if (tag !== ITEM || length === UNDEFINED_LENGTH) return size;
    at += 8 + length;
  }
  return size;
}

/**
 * The refusal of encapsulated pixel data whose value does not begin with an item, the Basic Offset Table's (PS3.5
 * A.4), read from the element header at `position`, where dicom-parser stopped: its words were the refusal
 * ("dicomParser.findEndOfEncapsulatedElement: basic offset table not found"). Undefined where no pixel data of an
 * undefined length begins there, or where its value begins with an item.
 */
export function encapsulatedStartRejection(
  ds: dicomParser.DataSet,
  position: number,
  explicit: boolean,
): DicomRejected | undefined {
  const header = readHeader(ds, position, explicit);
  if (!header || header.tag !== 'x7fe00010' || header.length !== UNDEFINED_LENGTH) return undefined;
  const size = ds.byteArray.length;
  if (header.dataOffset + 4 > size) {
    return new DicomRejected(
      'MALFORMED',
      `the file is truncated: it ends at byte ${size}, right after the header of the encapsulated ${tagName(header.tag)} at byte ${header.at}, before its Basic Offset Table's Item (FFFE,E000)`,
      tagName(header.tag),
    );
  }
  const tag = tagAt(ds, header.dataOffset);
  if (tag === ITEM) return undefined;
  return new DicomRejected(
    'MALFORMED',
    `${tagName(header.tag)} at byte ${header.at} has an undefined length (FFFFFFFFH), so is encapsulated, but its value at byte ${header.dataOffset} begins with the tag ${tagName(tag)}, where the Item (FFFE,E000) of its Basic Offset Table must be (PS3.5 A.4): the pixel data's header or its first item is damaged`,
    tagName(header.tag),
  );
}

/**
 * The refusal of a sequence of defined length whose last item runs past the sequence's end, at any depth: dicom-parser
 * reads such a data set without a fault. It reads the whole of an item that begins inside its sequence and goes on
 * after it, then carries on from the item's end, so a sequence length of 1 to 7 (no item fits; SC_rgb's
 * (0008,2112) SourceImageSequence at 4, say) was accepted as if it were right. DCMTK refuses such a file. Undefined
 * where every item ends within its sequence.
 */
export function itemsPastSequenceRejection(
  ds: dicomParser.DataSet,
  explicit: boolean,
  depth = 0,
): DicomRejected | undefined {
  if (depth > MAX_DEPTH) return undefined;
  for (const element of Object.values(ds.elements)) {
    const items = element.items;
    if (!items?.length) continue;
    const last = items[items.length - 1];
    const end = element.dataOffset + element.length;
    if (!element.hadUndefinedLength && last.dataOffset + last.length > end) {
      const at = element.dataOffset - (explicit ? 12 : 8);
      return (
        sequenceRejection(ds, at, explicit) ??
        new DicomRejected(
          'MALFORMED',
          `the sequence ${tagName(element.tag)} at byte ${at} has a value length of ${element.length}, which ends at byte ${end}, but its items run to byte ${last.dataOffset + last.length}: its length, or an item's, is wrong`,
          tagName(element.tag),
        )
      );
    }
    for (const item of items) {
      const inner = item.dataSet && itemsPastSequenceRejection(item.dataSet, explicit, depth + 1);
      if (inner) return inner;
    }
  }
  return undefined;
}
