import { capFields, summariseFields } from '../../common/errors/app-error';
import type { TimeRange } from '../../common/iso-time';
import { BatchItemErrorDto, FraudScoreRequestDto } from './fraud-score.dto';
import { fraudItemErrors, timeRangeError } from './fraud-item.schema';
import { BatchIds, itemPanError, notAnObjectError, WHOLE_ITEM } from './batch-envelope.util';

/**
 * Each batch item's error, undefined for an item to score. An item is first checked on its own; then,
 * as a bank keys the answers by transactionId, the first valid item with a transactionId (compared
 * exactly) holds it and each later valid one with it gets DUPLICATE_TRANSACTION_ID naming that item's
 * index. An invalid item (one dated outside `range` included) holds no id, so it never makes a valid one a
 * duplicate.
 */
export function batchItemErrors(items: readonly unknown[], range: TimeRange): Array<BatchItemErrorDto | undefined> {
  const ids = new BatchIds('DUPLICATE_TRANSACTION_ID', 'transactionId');
  return items.map(
    (item, index) => itemError(item, range) ?? ids.repeat((item as FraudScoreRequestDto).transactionId, index),
  );
}

function itemError(item: unknown, range: TimeRange): BatchItemErrorDto | undefined {
  const refused = itemPanError(item) ?? notAnObjectError(item, 'transaction');
  if (refused) return refused;
  const fields = fraudItemErrors(item, WHOLE_ITEM);
  if (fields.length === 0) {
    const outside = timeRangeError(item as FraudScoreRequestDto, range);
    if (!outside) return undefined;
    return { code: 'TIME_OUT_OF_RANGE', detail: `${outside.field}: ${outside.reason}`, errors: [outside] };
  }
  // An item's errors are listed as a refusal's are: at most MAX_FIELD_ERRORS (100,000 unknown keys were each named).
  return { code: 'VALIDATION_FAILED', detail: summariseFields(fields), errors: capFields(fields) };
}
