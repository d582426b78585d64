import type { MessageEvent } from '@nestjs/common';
import { Observable, type OperatorFunction } from 'rxjs';
import type { Principal } from './permissions';

/** setTimeout's longest delay: past it, Node fires after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The last thing a stream sends when the token that opened it expires. */
export const TOKEN_EXPIRED_COMMENT = 'token expired; reconnect with a fresh token';

/**
 * Emits once and completes when the caller's token stops being accepted (`validUntil`), at once if it
 * already has. Unsubscribing clears the timer. A token valid for longer than setTimeout can wait
 * (about 24.8 days) is waited for in steps.
 */
export function untilTokenExpires(principal: Pick<Principal, 'validUntil'>): Observable<void> {
  return new Observable<void>((subscriber) => {
    let timer: NodeJS.Timeout | undefined;
    const check = (): void => {
      const left = principal.validUntil - Date.now();
      if (left > 0) {
        timer = setTimeout(check, Math.min(left, MAX_TIMER_MS));
        return;
      }
      subscriber.next();
      subscriber.complete();
    };
    check();
    return () => clearTimeout(timer);
  });
}

/**
 * Ends a Server-Sent Events stream when the token that opened it expires, with the comment
 * TOKEN_EXPIRED_COMMENT: the token is checked once, when the stream opens, and would otherwise keep it
 * open for good. The client (an EventSource) reconnects, and must bring a fresh token.
 */
export function endAtTokenExpiry<T extends MessageEvent>(
  principal: Pick<Principal, 'validUntil'>,
): OperatorFunction<T, T | MessageEvent> {
  return (source) =>
    new Observable<T | MessageEvent>((subscriber) => {
      // Each is unsubscribed once the stream ends, whichever way: expiry, the source completing, the client leaving.
      subscriber.add(
        untilTokenExpires(principal).subscribe(() => {
          subscriber.next({ comment: TOKEN_EXPIRED_COMMENT });
          subscriber.complete();
        }),
      );
      subscriber.add(source.subscribe(subscriber));
    });
}
