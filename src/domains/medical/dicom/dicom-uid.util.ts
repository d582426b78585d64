import { AppError } from '../../../common/errors/app-error';

/** PS3.5 9.1: numbers without leading zeros separated by dots (at most 64 characters, checked apart). */
export const DICOM_UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

export const isDicomUid = (value: string): boolean => value.length <= 64 && DICOM_UID_PATTERN.test(value);

/**
 * A Study Instance UID in a request path. One that is no UID (`1..2`, `1.`, `01.2`) is a 400 naming it: the parser
 * refuses such a UID in an instance, so no finding is ever kept under it, and a 404 or a STOW of instances each
 * failed as of another study (409) would hide the typo.
 */
export function checkStudyUidParam(studyInstanceUID: string): void {
  if (isDicomUid(studyInstanceUID)) return;
  const reason = 'not a DICOM UID (PS3.5 9.1: numbers without leading zeros separated by dots, at most 64 characters)';
  throw new AppError('VALIDATION_FAILED', `studyInstanceUID is ${reason}`, {
    fields: [{ field: 'studyInstanceUID', reason }],
  });
}
