/*
 * bench/audit verify: what GET /v1/audit/verify costs the event loop that answers every other request.
 * Seeds a scratch PostgreSQL database (DATABASE_URL names the server) with VERIFY_ROWS valid audit rows
 * (default 50,000, in 4 chains, written by the gateway's own commitGroup), then times one verify and four at
 * once, in process, with perf_hooks.monitorEventLoopDelay (1 ms resolution): its max is the longest stretch
 * the event loop could not answer anything.
 *
 *   npm run build:test && DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
 *     node dist-test/bench/audit/bench-verify.js
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { commitGroup, INSERT_SQL, type ChainHead } from '../../src/audit/audit-commit';
import { AppConfig } from '../../src/config/app-config';
import type { AuditDraft } from '../../src/audit/audit-writer.service';
import { rowKeyOf } from '../../test/fixtures/audit-tamper';
import { createScratchDatabase } from '../../test/fixtures/scratch-database';
import { createTestApp } from '../../test/fixtures/test-app';
import { bearer, tokenFor } from '../../test/fixtures/test-auth';

const ROWS = Number(process.env.VERIFY_ROWS ?? '50000');
const CHAINS = 4;

function draft(i: number): AuditDraft {
  return {
    occurredAt: new Date(Date.UTC(2026, 0, 1) + i),
    actor: 'risk-engine',
    roles: ['fraud-scorer'],
    tenant: 'bank-a',
    action: 'finance.fraud-score',
    modelName: 'card-fraud',
    modelVersion: '1',
    requestId: `req-${i}`,
    clientAddress: '10.0.0.7',
    inputDigest: 'ab'.repeat(32),
    outputSummary: { probability: 0.0123, decision: 'approve', reasonCodes: ['R01', 'R07'], shadow: null },
    outcome: 'ok',
    statusCode: 200,
    latencyMs: 3.2,
  };
}

async function seed(db: DataSource, key: Buffer): Promise<void> {
  const heads = new Map<string, ChainHead>();
  const store = {
    head: () => Promise.resolve(undefined),
    insert: async (json: string) => void (await db.query(INSERT_SQL, [json])),
  };
  for (let i = 0; i < ROWS; i += 1000) {
    const drafts = Array.from({ length: Math.min(1000, ROWS - i) }, (_, k) => draft(i + k));
    await commitGroup(store, heads, `seeded/${(i / 1000) % CHAINS}`, drafts, key);
  }
}

async function timed(label: string, run: () => Promise<unknown>): Promise<void> {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const start = performance.now();
  await run();
  const wall = performance.now() - start;
  delay.disable();
  const ms = (ns: number) => (ns / 1e6).toFixed(1);
  console.log(
    `${label}: ${(wall / 1000).toFixed(2)} s; event loop delay max ${ms(delay.max)} ms, p99 ${ms(delay.percentile(99))} ms, mean ${ms(delay.mean)} ms`,
  );
}

async function main(): Promise<void> {
  const server = process.env.DATABASE_URL;
  if (!server) throw new Error('DATABASE_URL must name a PostgreSQL server');
  const scratch = await createScratchDatabase(server, 'gateway_bench_verify');
  const app = await createTestApp({ DATABASE_URL: scratch.url, AUDIT_ANCHOR_INTERVAL_MS: '0' });
  try {
    await seed(app.get(DataSource), rowKeyOf(app.get(AppConfig)));
    const http = request(app.getHttpServer());
    const auditor = bearer(tokenFor(['auditor']));
    const verify = async () => {
      const report = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body as {
        valid: boolean;
        rowsChecked: number;
      };
      if (!report.valid || report.rowsChecked < ROWS) throw new Error(`unexpected report ${JSON.stringify(report)}`);
    };
    await verify(); // warm-up
    console.log(`${ROWS} rows in ${CHAINS} chains, PostgreSQL`);
    await timed("idle, 1 s (the machine's own noise)", () => new Promise((done) => setTimeout(done, 1000)));
    await timed('one verify', verify);
    await timed('four verifies at once', () => Promise.all([verify(), verify(), verify(), verify()]));
  } finally {
    await app.close();
    await scratch.drop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
