import type { TimeRange } from '../../common/iso-time';
import { BatchItemErrorDto, FraudScoreRequestDto } from './fraud-score.dto';
import { fraudItemErrors, timeRangeError } from './fraud-item.schema';
import { itemPanError, WHOLE_ITEM } from './batch-envelope.util';

/**
 * Each batch item's error, undefined for an item to score. An item is first checked on its own; then,
 * as a bank keys the answers by transactionId, the first valid item with a transactionId (compared
 * exactly) holds it and each later valid one with it gets DUPLICATE_TRANSACTION_ID naming that item's
 * index. An invalid item (one dated outside `range` included) holds no id, so it never makes a valid one a
 * duplicate.
 */
export function batchItemErrors(items: readonly unknown[], range: TimeRange): Array<BatchItemErrorDto | undefined> {
  // A Map, not an object: a transactionId such as `__proto__` or `constructor` is a plain key.
  const holder = new Map<string, number>();
  return items.map((item, index) => {
    const error = itemError(item, range);
    if (error) return error;
    const id = (item as FraudScoreRequestDto).transactionId;
    const first = holder.get(id);
    if (first === undefined) {
      holder.set(id, index);
      return undefined;
    }
    const reason = `already sent as item ${first} of this batch`;
    return {
      code: 'DUPLICATE_TRANSACTION_ID',
      detail: `transactionId: ${reason}`,
      errors: [{ field: 'transactionId', reason }],
    };
  });
}

function itemError(item: unknown, range: TimeRange): BatchItemErrorDto | undefined {
  const pan = itemPanError(item);
  if (pan) return pan;
  if (typeof item !== 'object' || item === null || Array.isArray(item)) {
    const reason = 'each transaction must be an object';
    return { code: 'VALIDATION_FAILED', detail: `${WHOLE_ITEM}: ${reason}`, errors: [{ field: WHOLE_ITEM, reason }] };
  }
  const fields = fraudItemErrors(item);
  if (fields.length === 0) {
    const outside = timeRangeError(item as FraudScoreRequestDto, range);
    if (!outside) return undefined;
    return { code: 'TIME_OUT_OF_RANGE', detail: `${outside.field}: ${outside.reason}`, errors: [outside] };
  }
  return { code: 'VALIDATION_FAILED', detail: fields.map((f) => `${f.field}: ${f.reason}`).join('; '), errors: fields };
}
