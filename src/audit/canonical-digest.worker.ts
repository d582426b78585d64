/**
 * The digest thread: the keyed digest of a JSON text's canonical form (canonicalJsonBytes of the parsed text, one
 * part), for a large body whose digest would otherwise hold up the event loop (InputDigester.digestJson).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { canonicalJsonBytes } from './audit-chain';
import { keyedDigest } from './keyed-digest';

export interface CanonicalDigestRequest {
  id: number;
  text: string;
}

export type CanonicalDigestReply = { id: number; digest: string } | { id: number; error: string };

const secret = Buffer.from((workerData as { secret: Uint8Array }).secret);

parentPort!.on('message', ({ id, text }: CanonicalDigestRequest) => {
  let reply: CanonicalDigestReply;
  try {
    reply = { id, digest: keyedDigest(secret, [canonicalJsonBytes(JSON.parse(text))]) };
  } catch (error) {
    reply = { id, error: error instanceof Error ? error.message : String(error) };
  }
  parentPort!.postMessage(reply);
});
