import { AppError } from '../../../common/errors/app-error';
import { type MediaRange, mediaRanges } from '../accept-header.util';
import { isDicomUid } from '../dicom/dicom-uid.util';
import { SR_TRANSFER_SYNTAXES, type SrTransferSyntax } from './lesion-sr.util';

const DICOM = 'application/dicom';
const JSON_TYPE = 'application/json';
const DEFAULT_TRANSFER_SYNTAX: SrTransferSyntax = '1.2.840.10008.1.2.1';

/** What one instance's findings are answered as: JSON, or the SR in one of the transfer syntaxes it is written in. */
export type AnswerForm = { form: 'json' } | { form: 'sr'; transferSyntax: SrTransferSyntax };

/** Every form, in the order that breaks a tie: JSON, then the SR in its default transfer syntax first. */
const OFFERED: readonly AnswerForm[] = [
  { form: 'json' },
  ...(Object.keys(SR_TRANSFER_SYNTAXES) as SrTransferSyntax[]).map((transferSyntax) => ({
    form: 'sr' as const,
    transferSyntax,
  })),
];

/**
 * How specific a range is for a form (higher wins; undefined: it does not cover it). A DICOM range without a
 * transfer-syntax parameter names the default (PS3.18 8.7.3.5.2); `transfer-syntax=*` takes any.
 */
function specificity(range: MediaRange, answer: AnswerForm): number | undefined {
  if (range.type === '*/*') return 0;
  if (range.type === 'application/*') return 1;
  if (answer.form === 'json') return range.type === JSON_TYPE ? 3 : undefined;
  if (range.type !== DICOM) return undefined;
  const asked = range.params.get('transfer-syntax') ?? DEFAULT_TRANSFER_SYNTAX;
  if (asked === answer.transferSyntax) return 3;
  return asked === '*' ? 2 : undefined;
}

/**
 * The form the Accept header prefers (RFC 9110 12.5.1): each form takes its most specific range; the highest
 * quality wins, then the range listed first, then JSON and the default transfer syntax. JSON with no header,
 * and also when the header takes neither JSON nor DICOM (`text/html`): the gateway's default, not a 406. A 406
 * (NOT_ACCEPTABLE, naming Accept and the transfer syntaxes the SR is written in) when the header asks for DICOM
 * only in transfer syntaxes the gateway cannot write (`application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50`).
 */
export function answerForm(accept: string | undefined): AnswerForm {
  if (!accept?.trim()) return OFFERED[0];
  const ranges = mediaRanges(accept);
  let best: { answer: AnswerForm; quality: number; position: number } | undefined;
  for (const answer of OFFERED) {
    let match: MediaRange | undefined;
    let matchSpecificity = -1;
    for (const range of ranges) {
      const s = specificity(range, answer);
      if (s !== undefined && s > matchSpecificity) [match, matchSpecificity] = [range, s];
    }
    if (!match || match.quality === 0) continue;
    if (!best || match.quality > best.quality || (match.quality === best.quality && match.position < best.position)) {
      best = { answer, quality: match.quality, position: match.position };
    }
  }
  if (best) return best.answer;
  const unwritable = ranges.filter((r) => r.type === DICOM && r.quality > 0);
  if (unwritable.length === 0) return OFFERED[0];
  throw notAcceptable(unwritable.map((r) => r.params.get('transfer-syntax') ?? ''));
}

/** The Content-Type of an answer in `form`: the SR's names its transfer syntax (PS3.18 8.7.9), as its file meta does. */
export function answerContentType(answer: AnswerForm): string {
  return answer.form === 'sr' ? `${DICOM}; transfer-syntax=${answer.transferSyntax}` : JSON_TYPE;
}

function notAcceptable(asked: string[]): AppError {
  const writable = Object.entries(SR_TRANSFER_SYNTAXES)
    .map(([uid, name]) => `${uid} (${name})`)
    .join(', ');
  // Named back only when it is a UID (PS3.5 9.1, as a study UID in a path is checked): the header is the caller's text.
  const named = [...new Set(asked.map((ts) => (isDicomUid(ts) ? ts : 'a value that is not a transfer syntax UID')))];
  const reason = `transfer-syntax ${named.join(', ')} is not one the SR is written in; ask for one of ${writable}, or *`;
  return new AppError(
    'NOT_ACCEPTABLE',
    `the Accept header asks for the SR (application/dicom) only in transfer syntaxes the gateway cannot write: ` +
      `it writes ${writable}, or answers application/json`,
    { fields: [{ field: 'Accept', reason }] },
  );
}
