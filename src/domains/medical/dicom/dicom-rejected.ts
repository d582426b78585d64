import { AppError, httpStatusOf } from '../../../common/errors/app-error';

/**
 * Why an instance was refused. Each reason maps to an HTTP problem (one place: medical-errors.ts)
 * and to a DICOMweb STOW / DIMSE failure status, so every way in refuses the same file the same way.
 */
export type DicomRejectionReason =
  | 'NOT_DICOM'
  | 'MALFORMED'
  | 'UNSUPPORTED_TRANSFER_SYNTAX'
  | 'NOT_AN_IMAGE'
  | 'NO_PIXEL_DATA'
  | 'MODALITY_NOT_ACCEPTED'
  | 'UNSUPPORTED_PIXEL_FORMAT'
  | 'DECODE_FAILED'
  | 'TOO_MANY_FRAMES'
  | 'STUDY_MISMATCH'
  | 'DUPLICATE_INSTANCE';

export class DicomRejected extends Error {
  constructor(
    readonly reason: DicomRejectionReason,
    /** Safe to show: names attributes and values of the image format, never patient data. */
    readonly detail: string,
    /** The attribute at fault, as `(gggg,eeee) Keyword`. */
    readonly attribute?: string,
  ) {
    super(detail);
    this.name = 'DicomRejected';
  }

  /** The instance's SOP class and instance UIDs when they could be read, so a failure names its instance. */
  sop?: { classUID?: string; instanceUID?: string };

  withSop(classUID: string | undefined, instanceUID: string | undefined): this {
    if (classUID !== undefined || instanceUID !== undefined) this.sop ??= { classUID, instanceUID };
    return this;
  }
}

/** The status a STOW-RS FailedSOPSequence item or a C-STORE response carries for each reason (PS3.4 / PS3.18). */
export function failureStatusOf(reason: DicomRejectionReason): number {
  switch (reason) {
    case 'NOT_DICOM':
    case 'MALFORMED':
    case 'DECODE_FAILED':
      return 0xc000; // Error: cannot understand
    case 'UNSUPPORTED_TRANSFER_SYNTAX':
      return 0xc122; // Referenced Transfer Syntax not supported
    case 'NOT_AN_IMAGE':
    case 'MODALITY_NOT_ACCEPTED':
      return 0x0122; // Referenced SOP Class not supported
    case 'NO_PIXEL_DATA':
    case 'UNSUPPORTED_PIXEL_FORMAT':
    case 'TOO_MANY_FRAMES':
    case 'STUDY_MISMATCH':
      return 0xa900; // Data Set does not match SOP Class / request
    case 'DUPLICATE_INSTANCE':
      return 0x0111; // Duplicate SOP Instance (PS3.7 C.4.2.1.4)
  }
}

/**
 * The status of an instance the runtime would not run (its refusal, an AppError), for STOW-RS and DIMSE alike: one
 * answered 503 over HTTP (the model's queue full, no inference worker loaded, shutting down) is 0xA700, out of
 * resources, which a PACS sends again later; any other (a deadline passed) 0x0110, processing failure.
 */
export function runtimeFailureStatusOf(error: AppError): number {
  return httpStatusOf(error.code).status === 503 ? 0xa700 : 0x0110;
}

/** 400 for bytes that are not a readable DICOM file, 422 for a readable file the gateway will not analyse. */
export function isUnreadable(reason: DicomRejectionReason): boolean {
  return reason === 'NOT_DICOM' || reason === 'MALFORMED';
}
