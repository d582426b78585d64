import { AppError } from '../../../common/errors/app-error';
import { DicomRejected, isUnreadable } from './dicom-rejected';

/** The HTTP problem for a refused instance: 400 when the bytes are not readable DICOM, 422 when the gateway will not analyse them. */
export function dicomProblem(rejection: DicomRejected, field = 'body'): AppError {
  return new AppError(isUnreadable(rejection.reason) ? 'DICOM_INVALID' : 'DICOM_UNSUPPORTED', rejection.detail, {
    fields: [{ field: rejection.attribute ?? field, reason: `${rejection.reason}: ${rejection.detail}` }],
    cause: rejection,
  });
}
