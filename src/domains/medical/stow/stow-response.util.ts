import type { AppError } from '../../../common/errors/app-error';
import { DicomRejected, failureStatusOf, runtimeFailureStatusOf } from '../dicom/dicom-rejected';
import { DicomJsonDataset, nativeDicomModel } from './native-dicom-model.util';

const PRIVATE_CREATOR = 'REGULATED-INFERENCE-GATEWAY';

export interface StoredInstance {
  sopClassUID: string;
  sopInstanceUID: string;
}

export interface FailedInstance {
  sopClassUID?: string;
  sopInstanceUID?: string;
  /** The instance refused (DicomRejected), or the runtime's refusal to run it (an AppError: queue full, no worker). */
  rejection: DicomRejected | AppError;
  part: number;
}

/** A failed instance's reason, as its private element and the audit row name it: the refusal's, or the runtime's code. */
export function failureReasonOf(rejection: DicomRejected | AppError): string {
  return rejection instanceof DicomRejected ? rejection.reason : rejection.code;
}

function failureStatus(rejection: DicomRejected | AppError): number {
  return rejection instanceof DicomRejected ? failureStatusOf(rejection.reason) : runtimeFailureStatusOf(rejection);
}

/**
 * RetrieveURL (0008,1190), Type 2 in the response and in each stored item (PS3.18 I.1): the URL to retrieve the study
 * or instance by WADO-RS. The gateway keeps findings, not instances, so there is none: present and empty.
 */
const NO_RETRIEVE_URL = { vr: 'UR' };

/**
 * ReferencedSOPClassUID / ReferencedSOPInstanceUID of a failed item (the SOP Instance Reference Macro, PS3.3
 * Table 10-11, Type 1 in each FailedSOPSequence item by PS3.18 Table I.1-1). A part that is not DICOM, or whose
 * data set and file meta both fail to give the UID, has none to name: the attribute is sent empty rather than
 * left out (dcm4che's store response does the same), so a client that reads every item by these keys finds them,
 * and no UID is made up that a PACS would take for one of its instances. The private reason names the part.
 */
const uidOrEmpty = (uid: string | undefined) => (uid ? { vr: 'UI', Value: [uid] } : { vr: 'UI' });

/**
 * The STOW-RS store response (PS3.18 10.5.3, Annex I): ReferencedSOPSequence for stored instances,
 * FailedSOPSequence with a FailureReason for the others. The standard has no attribute for a
 * human-readable reason, so each failed item also carries it in a private element (0009,1001),
 * under the private creator (0009,0010).
 */
export function storeResponse(stored: StoredInstance[], failed: FailedInstance[]): DicomJsonDataset {
  const response: DicomJsonDataset = { '00081190': NO_RETRIEVE_URL };
  if (failed.length > 0) {
    response['00081198'] = {
      vr: 'SQ',
      Value: failed.map((f) => ({
        '00081150': uidOrEmpty(f.sopClassUID),
        '00081155': uidOrEmpty(f.sopInstanceUID),
        '00081197': { vr: 'US', Value: [failureStatus(f.rejection)] },
        '00090010': { vr: 'LO', Value: [PRIVATE_CREATOR] },
        '00091001': { vr: 'LT', Value: [`part ${f.part}: ${failureReasonOf(f.rejection)}: ${f.rejection.detail}`] },
      })),
    };
  }
  if (stored.length > 0) {
    response['00081199'] = {
      vr: 'SQ',
      Value: stored.map((s) => ({
        '00081150': { vr: 'UI', Value: [s.sopClassUID] },
        '00081155': { vr: 'UI', Value: [s.sopInstanceUID] },
        '00081190': NO_RETRIEVE_URL,
      })),
    };
  }
  return response;
}

/** PS3.6 keywords of the standard attributes a store response holds, for its XML form. */
const STORE_RESPONSE_KEYWORDS: Readonly<Record<string, string>> = {
  '00081150': 'ReferencedSOPClassUID',
  '00081155': 'ReferencedSOPInstanceUID',
  '00081190': 'RetrieveURL',
  '00081196': 'WarningReason',
  '00081197': 'FailureReason',
  '00081198': 'FailedSOPSequence',
  '00081199': 'ReferencedSOPSequence',
};

/** The store response as `application/dicom+xml` (PS3.18 10.5.3): the same data set in the Native DICOM Model. */
export function storeResponseXml(response: DicomJsonDataset): string {
  return nativeDicomModel(response, STORE_RESPONSE_KEYWORDS);
}

/** FailureReason 0xA700, out of resources: the runtime would not run the instance for now. */
const OUT_OF_RESOURCES = 0xa700;

/**
 * 200 all stored, 202 some failed, 409 none stored (PS3.18 10.5.3.1); 503 when none was stored only because the
 * runtime would not run them for now (each failed 0xA700: the model's queue full, no inference worker loaded), the
 * status PS3.18 gives an origin server out of resources. A PACS takes a 409 as a conflict in its request, not to be
 * sent again, and so never sent the study again; the store response still says why, instance by instance.
 */
export function storeStatus(stored: number, failed: readonly FailedInstance[]): number {
  if (failed.length === 0) return 200;
  if (stored > 0) return 202;
  return failed.every((f) => failureStatus(f.rejection) === OUT_OF_RESOURCES) ? 503 : 409;
}

/** Retry-After of a 503 store response: the longest the runtime's refusals asked for, at least 1 second. */
export function storeRetryAfter(failed: readonly FailedInstance[]): number {
  return Math.max(
    1,
    ...failed.map((f) => (f.rejection instanceof DicomRejected ? 0 : (f.rejection.retryAfterSeconds ?? 0))),
  );
}
