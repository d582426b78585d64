/**
 * Digests a request's canonical input for the audit trail (HMAC-SHA256 under a server secret).
 * Provided by the audit module; handlers digest before they hand buffers to the runtime, which
 * may move them to a worker thread.
 */
export abstract class AuditInputDigester {
  abstract digest(parts: readonly Uint8Array[]): string;
}
