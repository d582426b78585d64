/**
 * Digests a request's canonical input for the audit trail (HMAC-SHA256 under a server secret).
 * Provided by the audit module; handlers digest before they hand buffers to the runtime, which
 * may move them to a worker thread.
 */
export abstract class AuditInputDigester {
  abstract digest(parts: readonly Uint8Array[]): string;

  /**
   * The same digest, worked out where it does not hold up the event loop (an implementation may use
   * a thread), for a large input such as an image: a handler starts it, goes on with the request,
   * and awaits it before the answer leaves. The bytes are read before this returns, so the buffers
   * may be handed on at once.
   */
  digestAsync(parts: readonly Uint8Array[]): Promise<string> {
    return Promise.resolve(this.digest(parts));
  }

  /**
   * The digest of a JSON body's canonical bytes as one part, what `digest([canonical()])` gives, worked out
   * from `json` (the body's bytes as sent, UTF-8) where it does not hold up the event loop (an implementation
   * may parse them again on another thread); `canonical` gives the same bytes from the parsed body, here.
   */
  digestJson(_json: Uint8Array, canonical: () => Uint8Array): Promise<string> {
    return Promise.resolve(this.digest([canonical()]));
  }
}
