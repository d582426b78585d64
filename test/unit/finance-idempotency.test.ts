import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Logger, LoggerService } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuditInputDigester } from '../../src/common/access';
import { AppConfig } from '../../src/config/app-config';
import { bodyDigest, canonicalBytes } from '../../src/domains/finance/canonical-input.util';
import { FinanceModels } from '../../src/domains/finance/finance-models';
import { IdempotencyService } from '../../src/domains/finance/idempotency/idempotency.service';
import { IdempotencyRepository } from '../../src/domains/finance/idempotency/idempotency.repository';

/** A request with an Idempotency-Key and its reply, as the route hands them to the service. */
/** A digester that answers what `digest` says (its digestAsync is the base class's, over digest). */
function digesterOf(digest: (parts: readonly Uint8Array[]) => string): AuditInputDigester {
  return new (class extends AuditInputDigester {
    digest = digest;
  })();
}

/** Finance models whose slowest may wait `timeoutMs` for its answer. */
function modelsOf(timeoutMs: number): FinanceModels {
  return { longestTimeoutMs: () => timeoutMs } as unknown as FinanceModels;
}

function exchangeFor(body: unknown): [FastifyRequest, FastifyReply] {
  const request = {
    headers: { 'idempotency-key': 'k-1' },
    raw: { rawHeaders: ['Idempotency-Key', 'k-1'] },
    body,
    url: '/v1/finance/fraud-scores',
  };
  const reply = { header: () => reply, status: () => reply };
  return [request as unknown as FastifyRequest, reply as unknown as FastifyReply];
}

describe('finance: Idempotency-Key', () => {
  it('an answer the database will not keep is still returned, logged, and its key freed', async () => {
    const released: string[] = [];
    const repository = {
      claim: () => Promise.resolve(new Date()),
      complete: () => Promise.reject(new Error('unsupported Unicode escape sequence')),
      release: (_scope: string, key: string) => {
        released.push(key);
        return Promise.resolve();
      },
    } as unknown as IdempotencyRepository;
    const digester = digesterOf(() => 'd'.repeat(64));
    const config = Object.assign(new AppConfig(), { IDEMPOTENCY_TTL_HOURS: 24, AUTH_ISSUER: 'https://idp.test' });
    const idempotency = new IdempotencyService(repository, digester, config, modelsOf(10_000));
    const errors: unknown[] = [];
    const quiet = () => undefined;
    const logger: LoggerService = { log: quiet, warn: quiet, error: (message: unknown) => errors.push(message) };
    Logger.overrideLogger(logger);
    try {
      const answer = { scored: 1 };
      const out = await idempotency.answer(...exchangeFor({}), () => Promise.resolve(answer));
      assert.deepEqual(out, answer);
    } finally {
      Logger.overrideLogger(false);
    }
    assert.deepEqual(released, ['k-1']);
    assert.equal(errors.length, 1);
    assert.match(JSON.stringify(errors[0]), /answer not kept/);
  });

  it("works out a body's keyed digest once for the key's check and the audit row", async () => {
    const digested: string[] = [];
    const digester = digesterOf((parts) => {
      digested.push(Buffer.from(parts[0]).toString());
      return String(digested.length).padStart(64, '0');
    });
    const repository = {
      claim: () => Promise.resolve(new Date()),
      complete: () => Promise.resolve(),
    } as unknown as IdempotencyRepository;
    const config = Object.assign(new AppConfig(), { IDEMPOTENCY_TTL_HOURS: 24, AUTH_ISSUER: 'https://idp.test' });
    const idempotency = new IdempotencyService(repository, digester, config, modelsOf(10_000));
    const body = { transactions: [{ transactionId: 't-1', amount: 5 }] };
    let audited: string | undefined;
    // The route's handler, as the fraud controllers note their audit row's digest.
    const handle = (): Promise<unknown> => {
      audited = bodyDigest(digester, body);
      return Promise.resolve({ scored: 1 });
    };
    await idempotency.answer(...exchangeFor(body), handle);
    assert.deepEqual(digested, [Buffer.from(canonicalBytes(body)).toString()]);
    assert.equal(audited, '1'.padStart(64, '0'));
    // Another body with the same content is digested on its own, to the same canonical bytes.
    bodyDigest(digester, { transactions: [{ amount: 5, transactionId: 't-1' }] });
    assert.deepEqual(digested, [digested[0], digested[0]]);
  });
});
