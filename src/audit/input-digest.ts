import { createHmac, randomBytes, webcrypto } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { OnApplicationShutdown } from '@nestjs/common';
import { AuditInputDigester } from '../common/access';
import { makeDirSync } from '../common/make-dir';
import type { AppConfig } from '../config/app-config';
import type { CanonicalDigestReply, CanonicalDigestRequest } from './canonical-digest.worker';
import { keyedDigest } from './keyed-digest';

const DEV_SECRET_FILE = 'audit-hmac.key';

/**
 * From this many bytes digestAsync hashes on libuv's thread pool; below it the pool's round trip costs
 * more than the hash (about 1 ms per MB on this project's machine).
 */
const POOL_FROM_BYTES = 64 * 1024;

/** A digest thread that cannot start or keeps dying (a broken install) is not started again after this many. */
const MAX_THREADS_LOST = 3;

/**
 * HMAC-SHA256 of a request's canonical input under a server secret: proves later which input a
 * decision was made on, while a low-entropy input (an amount, a birth date) cannot be guessed back
 * from the digest by anyone without the secret.
 */
export class InputDigester extends AuditInputDigester implements OnApplicationShutdown {
  private readonly secret: Buffer;
  private poolKey?: Promise<webcrypto.CryptoKey>;
  /** poolKey once imported: a digest is then handed to the pool at the call, not a microtask later. */
  private poolKeyReady?: webcrypto.CryptoKey;
  /** The digest thread (canonical-digest.worker), started at the first large JSON body; see digestJson. */
  private digestThread?: Worker;
  private readonly waiting = new Map<number, { resolve: (digest: string) => void; fallback: () => void }>();
  private nextId = 0;
  /** Threads lost in a row without one answer: at MAX_THREADS_LOST, large bodies are digested here for good. */
  private threadsLost = 0;
  /** Set at shutdown: no thread is started again (a late digest is worked out here). */
  private closed = false;

  constructor(config: AppConfig) {
    super();
    this.secret = auditSecret(config);
  }

  digest(parts: readonly Uint8Array[]): string {
    return keyedDigest(this.secret, parts);
  }

  /**
   * A large JSON body's digest worked out on the digest thread, which parses `json` again and writes its
   * canonical form, while the event loop goes on with the request (a 1,000-transaction batch: about 7 ms of
   * the event loop's time otherwise). Should the thread fail or stop, the digest is worked out here from
   * `canonical`, the same bytes: a request never fails for it.
   */
  override digestJson(json: Uint8Array, canonical: () => Uint8Array): Promise<string> {
    const thread = this.digestThreadOrNone();
    if (!thread) return super.digestJson(json, canonical);
    const id = ++this.nextId;
    return new Promise<string>((resolve) => {
      this.waiting.set(id, { resolve, fallback: () => resolve(this.digest([canonical()])) });
      // The bytes are copied into the message: the caller's buffer stays as it is.
      thread.postMessage({ id, json } satisfies CanonicalDigestRequest);
    });
  }

  onApplicationShutdown(): Promise<void> {
    this.closed = true;
    const thread = this.digestThread;
    this.digestThread = undefined;
    this.failWaiting();
    return thread ? thread.terminate().then(() => undefined) : Promise.resolve();
  }

  private digestThreadOrNone(): Worker | undefined {
    if (this.digestThread || this.closed || this.threadsLost >= MAX_THREADS_LOST) return this.digestThread;
    let thread: Worker;
    try {
      thread = new Worker(join(__dirname, 'canonical-digest.worker.js'), { workerData: { secret: this.secret } });
    } catch {
      return undefined;
    }
    // The gateway's own shutdown ends it; it never holds the process open by itself.
    thread.unref();
    thread.on('message', (reply: CanonicalDigestReply) => {
      const waiter = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (!waiter) return;
      this.threadsLost = 0;
      if ('digest' in reply) waiter.resolve(reply.digest);
      else waiter.fallback();
    });
    const lost = (): void => {
      if (this.digestThread !== thread) return;
      this.digestThread = undefined;
      if (!this.closed) this.threadsLost++;
      this.failWaiting();
    };
    thread.on('error', lost);
    thread.on('exit', lost);
    this.digestThread = thread;
    return thread;
  }

  /** Works out here every digest still waiting for the thread (it stopped, or the gateway is). */
  private failWaiting(): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const waiter of waiting) waiter.fallback();
  }

  /**
   * digest's HMAC by WebCrypto, which runs on libuv's thread pool: a large image is hashed while the
   * event loop parses it and the runtime runs it. The same bytes as digest (each part length-prefixed)
   * are framed into one buffer first, so the parts may change once this returns.
   */
  override digestAsync(parts: readonly Uint8Array[]): Promise<string> {
    let total = 0;
    for (const part of parts) total += 8 + part.byteLength;
    if (total < POOL_FROM_BYTES) return super.digestAsync(parts);
    const framed = Buffer.allocUnsafe(total);
    let at = 0;
    for (const part of parts) {
      framed.writeBigUInt64BE(BigInt(part.byteLength), at);
      framed.set(part, at + 8);
      at += 8 + part.byteLength;
    }
    this.poolKey ??= webcrypto.subtle
      .importKey('raw', this.secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
      .then((key) => (this.poolKeyReady = key));
    const signing = this.poolKeyReady
      ? webcrypto.subtle.sign('HMAC', this.poolKeyReady, framed)
      : this.poolKey.then((key) => webcrypto.subtle.sign('HMAC', key, framed));
    return signing.then(
      (signature) => Buffer.from(signature).toString('hex'),
      // The framed bytes are digest's HMAC input as one piece: the same answer on the event loop.
      () => createHmac('sha256', this.secret).update(framed).digest('hex'),
    );
  }
}

/**
 * The audit trail's server secret (input digests, chain anchors): AUDIT_HMAC_SECRET, required in
 * production; outside production one generated once in DATA_DIR.
 */
export function auditSecret(config: Pick<AppConfig, 'AUDIT_HMAC_SECRET' | 'NODE_ENV' | 'DATA_DIR'>): Buffer {
  if (config.AUDIT_HMAC_SECRET) return Buffer.from(config.AUDIT_HMAC_SECRET);
  if (config.NODE_ENV === 'production') {
    throw new Error('AUDIT_HMAC_SECRET must be set in production (at least 32 characters)');
  }
  return Buffer.from(devSecret(config.DATA_DIR));
}

/**
 * The audit secrets earlier rotations retired (AUDIT_HMAC_PREVIOUS_SECRETS), newest first: verify still takes the rows
 * and anchors keyed under them. None may be the current secret, the one generated outside production included (the
 * configuration refuses one equal to AUDIT_HMAC_SECRET already).
 */
export function retiredAuditSecrets(
  config: Pick<AppConfig, 'AUDIT_HMAC_SECRET' | 'AUDIT_HMAC_PREVIOUS_SECRETS' | 'NODE_ENV' | 'DATA_DIR'>,
): Buffer[] {
  const retired = config.AUDIT_HMAC_PREVIOUS_SECRETS ?? [];
  if (retired.length === 0) return [];
  const current = auditSecret(config);
  return retired.map((secret, i) => {
    const bytes = Buffer.from(secret);
    if (bytes.equals(current)) {
      throw new Error(
        `AUDIT_HMAC_PREVIOUS_SECRETS item ${i + 1} is the current audit secret: only a replaced one is retired`,
      );
    }
    return bytes;
  });
}

function devSecret(dataDir: string): string {
  const path = join(dataDir, DEV_SECRET_FILE);
  if (!existsSync(path)) {
    makeDirSync(dataDir);
    writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 });
  }
  return readFileSync(path, 'utf8').trim();
}
