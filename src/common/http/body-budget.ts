import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error';

/**
 * How many bytes of request bodies the gateway holds at once. Every route reads its body whole
 * (a STOW study, a batch of transactions), and each may be as large as its route's limit; without a
 * bound, a burst of large uploads (sixteen 60 MB bodies took 0.8-0.9 GB) grows the process until
 * the system kills it, and every request in flight with it. Past the budget a new upload is answered
 * 503 with Retry-After before a byte of it is read, and the sender tries again.
 *
 * A body counts from the moment its request is routed until its answer is sent or its connection
 * closes: by its Content-Length, or, when it comes chunked, by the most its parser would read
 * (`bodyLimitOf`; the route's body limit unless told otherwise). An upload is always let in when no
 * other is held, so the largest a route accepts still gets through alone.
 */
export function registerBodyBudget(
  fastify: FastifyInstance,
  budget: UploadBudget,
  bodyLimitOf: (request: FastifyRequest) => number = (request) => request.routeOptions.bodyLimit,
): void {
  fastify.addHook('preParsing', (request, reply, payload, done) => {
    const declared = request.headers['content-length'];
    const chunked = request.headers['transfer-encoding'] !== undefined;
    const bytes =
      declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : chunked ? bodyLimitOf(request) : 0;
    if (bytes === 0) return done(null, payload);
    const held = budget.held;
    if (!budget.take(bytes)) {
      const reason = `${held} bytes of other uploads are being received or processed (MAX_INFLIGHT_BODY_BYTES is ${budget.maxBytes})`;
      return done(
        new AppError('UPLOADS_BUSY', `too many uploads at once: ${reason}; try again shortly`, {
          retryAfterSeconds: 1,
          fields: [{ field: '(body)', reason }],
        }),
      );
    }
    // The response's close comes once, whether the answer was sent or the connection dropped.
    reply.raw.once('close', () => budget.release(bytes));
    done(null, payload);
  });
}

/**
 * The bytes of uploads held at once, whichever way they came: HTTP bodies and DIMSE data sets draw on
 * the one MAX_INFLIGHT_BODY_BYTES, so a burst on either cannot grow the process past it.
 */
export class UploadBudget {
  private heldBytes = 0;

  constructor(readonly maxBytes: number) {}

  get held(): number {
    return this.heldBytes;
  }

  /**
   * Takes `bytes` more for an upload that holds `own` bytes already. Refused (false, nothing taken)
   * when other uploads hold bytes and the total would pass the budget: an upload alone always gets in.
   */
  take(bytes: number, own = 0): boolean {
    if (this.heldBytes - own > 0 && this.heldBytes + bytes > this.maxBytes) return false;
    this.heldBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.heldBytes -= bytes;
  }
}
