import { setImmediate as nextTurn } from 'node:timers/promises';
import { AppError } from '../../common/errors/app-error';
import { BatchIds, batchEnvelope, itemPanError, notAnObjectError } from './batch-envelope.util';
import {
  CreditBatchApplicationDto,
  CreditBatchItemErrorDto,
  MAX_BATCH_APPLICATIONS,
  parseCreditBatchApplication,
} from './credit-assessment.dto';

const creditBatch = batchEnvelope('applications', MAX_BATCH_APPLICATIONS);

/** The credit batch's envelope, checked without copying its items; each item is then checked on its own. */
export function parseCreditBatch(body: unknown): unknown[] {
  return creditBatch.items(body);
}

/** A card number outside the credit batch's items: 422 naming it, before the Idempotency-Key is read. */
export function creditEnvelopePanRefusal(body: unknown, bodyDigits?: string): AppError | undefined {
  return creditBatch.panRefusal(body, bodyDigits);
}

/**
 * Items checked before the event loop takes a turn for other requests: the single route's class-based checks cost
 * about 60-90 µs an application on this project's machine, so a full batch checked at once would hold a card
 * authorisation waiting behind it for up to a tenth of a second; 64 hold it a few milliseconds at most.
 */
const ITEMS_PER_TURN = 64;

export type CreditBatchCheck = { error: CreditBatchItemErrorDto } | { application: CreditBatchApplicationDto };

/**
 * Each credit batch item checked: by the single route's rules (the same field errors alone and in a batch) and its
 * applicationId, or its error. As a bank keys the answers by applicationId, the first valid item with an id (compared
 * exactly) holds it, and each later valid one with it gets DUPLICATE_APPLICATION_ID naming that item's index; an
 * invalid item holds no id.
 */
export async function creditBatchChecks(items: readonly unknown[]): Promise<CreditBatchCheck[]> {
  const ids = new BatchIds('DUPLICATE_APPLICATION_ID', 'applicationId');
  const checks: CreditBatchCheck[] = [];
  for (let index = 0; index < items.length; index++) {
    if (index > 0 && index % ITEMS_PER_TURN === 0) await nextTurn();
    const checked = await checkItem(items[index]);
    const repeat = 'application' in checked ? ids.repeat(checked.application.applicationId, index) : undefined;
    checks.push(repeat ? { error: repeat } : checked);
  }
  return checks;
}

async function checkItem(item: unknown): Promise<CreditBatchCheck> {
  const refused = itemPanError(item) ?? notAnObjectError(item, 'application');
  if (refused) return { error: refused };
  try {
    return { application: await parseCreditBatchApplication(item) };
  } catch (error) {
    if (!(error instanceof AppError) || error.code !== 'VALIDATION_FAILED') throw error;
    return { error: { code: 'VALIDATION_FAILED', detail: error.detail, errors: error.fields } };
  }
}
