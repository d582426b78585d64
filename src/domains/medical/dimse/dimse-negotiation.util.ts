import { IMAGE_STORAGE_SOP_CLASSES, SUPPORTED_TRANSFER_SYNTAXES, TS } from '../dicom/dicom-dictionary';

export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';

/** Why an association is refused; each maps to an A-ASSOCIATE-RJ result, source and reason (PS3.8 9.3.4). */
export type AssociationRefusal =
  | 'CALLED_AE_NOT_RECOGNIZED'
  | 'CALLING_AE_NOT_ALLOWED'
  | 'TOO_MANY_ASSOCIATIONS'
  | 'PROTOCOL_VERSION_NOT_SUPPORTED'
  | 'APPLICATION_CONTEXT_NOT_SUPPORTED';

/** The DICOM Application Context Name (PS3.7 A.2.1), the only one defined. */
export const DICOM_APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';

/**
 * What an A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) says about the protocol: the protocol version bits and the
 * application context name. The library reads neither (it skips the application context item and
 * answers with the DICOM one whatever was proposed), so the gateway reads them from the PDU's bytes.
 * Undefined fields were not found in the bytes given.
 */
export function readAssociateProtocol(pdu: Buffer): { protocolVersion?: number; applicationContext?: string } {
  if (pdu.length < 8 || pdu[0] !== 0x01) return {};
  const protocolVersion = pdu.readUInt16BE(6);
  // Header (6), version (2), reserved (2), called and calling AE (32), reserved (32): items from 74.
  for (let offset = 74; offset + 4 <= pdu.length;) {
    const type = pdu[offset];
    const length = pdu.readUInt16BE(offset + 2);
    if (type === 0x10) {
      if (offset + 4 + length > pdu.length) break;
      const name = pdu.toString('latin1', offset + 4, offset + 4 + length).replace(/[\0 ]+$/, '');
      return { protocolVersion, applicationContext: name };
    }
    offset += 4 + length;
  }
  return { protocolVersion };
}

/** Refuses a protocol version without version 1 (bit 0) and an application context other than DICOM's. */
export function judgeAssociateProtocol(protocol: {
  protocolVersion?: number;
  applicationContext?: string;
}): AssociationRefusal | undefined {
  if (protocol.protocolVersion !== undefined && (protocol.protocolVersion & 1) === 0) {
    return 'PROTOCOL_VERSION_NOT_SUPPORTED';
  }
  if (protocol.applicationContext !== DICOM_APPLICATION_CONTEXT) return 'APPLICATION_CONTEXT_NOT_SUPPORTED';
  return undefined;
}

export interface AeRules {
  /** The SCP's own AE title: associations addressed to another are refused. */
  aeTitle: string;
  /** Calling AE titles allowed in; undefined lets any caller in. */
  allowedCallers?: ReadonlySet<string>;
}

export interface ForwardTarget {
  aeTitle: string;
  host: string;
  port: number;
}

/** MEDICAL_DIMSE_ALLOWED_AETS: a comma-separated list; unset or empty allows any caller. */
export function parseAeList(value: string | undefined): ReadonlySet<string> | undefined {
  const titles = (value ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return titles.length ? new Set(titles) : undefined;
}

/** MEDICAL_DIMSE_FORWARD: `AETITLE@host:port` (the config class has checked the shape). */
export function parseForwardTarget(value: string | undefined): ForwardTarget | undefined {
  if (!value) return undefined;
  const at = value.lastIndexOf('@');
  const colon = value.lastIndexOf(':');
  const port = Number(value.slice(colon + 1));
  if (at < 1 || colon < at || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError('MEDICAL_DIMSE_FORWARD must be AETITLE@host:port');
  }
  return { aeTitle: value.slice(0, at).trim(), host: value.slice(at + 1, colon), port };
}

/** AE titles are compared without their padding spaces, case-sensitively (PS3.5 6.2: AE). */
export function judgeAeTitles(called: string, calling: string, rules: AeRules): AssociationRefusal | undefined {
  if (called.trim() !== rules.aeTitle.trim()) return 'CALLED_AE_NOT_RECOGNIZED';
  if (rules.allowedCallers && !rules.allowedCallers.has(calling.trim())) return 'CALLING_AE_NOT_ALLOWED';
  return undefined;
}

export type ContextVerdict =
  | { accept: true; transferSyntaxUid: string }
  | { accept: false; reason: 'abstract-syntax-not-supported' | 'transfer-syntaxes-not-supported' };

const VERIFICATION_SYNTAXES = new Set<string>([TS.ImplicitLittle, TS.ExplicitLittle]);

/**
 * Verification and the image storage classes a 2D model reads; anything else is refused here, which
 * is how a PACS learns that the SOP class is not supported before it sends a byte. Of the proposed
 * transfer syntaxes the first the gateway decodes wins, so a compressed instance arrives compressed.
 */
export function judgePresentationContext(abstractSyntaxUid: string, proposed: readonly string[]): ContextVerdict {
  const usable =
    abstractSyntaxUid === VERIFICATION_SOP_CLASS
      ? VERIFICATION_SYNTAXES
      : IMAGE_STORAGE_SOP_CLASSES.has(abstractSyntaxUid)
        ? SUPPORTED_TRANSFER_SYNTAXES
        : undefined;
  if (!usable) return { accept: false, reason: 'abstract-syntax-not-supported' };
  const chosen = proposed.find((ts) => usable.has(ts));
  return chosen
    ? { accept: true, transferSyntaxUid: chosen }
    : { accept: false, reason: 'transfer-syntaxes-not-supported' };
}

/**
 * Which of the data set's SOP Class UID and SOP Instance UID (0008,0016 / 0008,0018) differs from the
 * Affected SOP Class / Instance UID its C-STORE-RQ declared (PS3.7 9.1.1: they name that data set), if
 * either does. Compared without the padding (NUL or space) a UID of odd length takes.
 */
export function storeMismatch(
  declared: { sopClassUid: string; sopInstanceUid: string },
  dataset: { sopClassUID: string; sopInstanceUID: string },
): 'SOPClassUID' | 'SOPInstanceUID' | undefined {
  const bare = (uid: string) => uid.replace(/[\0 ]+$/, '');
  if (bare(declared.sopClassUid) !== bare(dataset.sopClassUID)) return 'SOPClassUID';
  if (bare(declared.sopInstanceUid) !== bare(dataset.sopInstanceUID)) return 'SOPInstanceUID';
  return undefined;
}

/** An ErrorComment (LO: at most 64 characters of the default repertoire, no backslash). */
export function errorComment(text: string): string {
  const clean = text.replace(/[^ -~]/g, '?').replace(/\\/g, '/');
  return clean.length > 64 ? `${clean.slice(0, 61)}...` : clean;
}
