import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import type { AuditEventDto, AuditVerifyDto } from '../../src/audit/audit.dto';
import { deleteRows, forgedRows, insertRows, withoutChecks } from '../fixtures/audit-tamper';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
const MISSING = 'rows are missing or reordered';

describe('audit verify, rows put in by hand', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let db: DataSource;
  const admin = bearer(tokenFor(['ml-admin'], { sub: 'ml-engineer-v' }));
  const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-v' }));
  const verify = async (): Promise<AuditVerifyDto> =>
    (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body as AuditVerifyDto;
  /** The gateway's chain with the most rows. */
  const liveChain = async (): Promise<string> =>
    (
      await db.query<Array<{ writer_id: string }>>(
        'SELECT writer_id FROM audit_events GROUP BY writer_id ORDER BY count(*) DESC LIMIT 1',
      )
    )[0].writer_id;
  const idOf = async (writerId: string, seq: number): Promise<string> =>
    (
      await db.query<Array<{ id: string }>>(
        'SELECT id::text AS id FROM audit_events WHERE writer_id = $1 AND seq = $2',
        [writerId, seq],
      )
    )[0].id;

  before(async () => {
    app = await createTestApp({ AUDIT_ANCHOR_INTERVAL_MS: '3600000' });
    http = request(app.getHttpServer());
    db = app.get(DataSource);
    for (let i = 0; i < 4; i++) {
      await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR).expect(200);
    }
  });
  after(() => app.close());

  it('the table refuses a row below seq 1, and a hash or prev_hash that is not 64 lowercase hex', async () => {
    const [row] = forgedRows('by-hand/0', 1, 1);
    await assert.rejects(insertRows(db, [{ ...row, seq: 0 }]), /audit_events_seq_from_1/);
    await assert.rejects(insertRows(db, [{ ...row, seq: -7 }]), /audit_events_seq_from_1/);
    await assert.rejects(insertRows(db, [{ ...row, hash: row.hash.toUpperCase() }]), /audit_events_hashes_hex/);
    await assert.rejects(insertRows(db, [{ ...row, prevHash: row.prevHash.slice(1) }]), /audit_events_hashes_hex/);
    // A first row as the gateway writes it (prev_hash the genesis hash, 64 zeros) is taken.
    await insertRows(db, [row]);
    await deleteRows(db, `writer_id = 'by-hand/0'`);
  });

  it('walks a chain from its lowest row: a row with seq 0 added to a live chain (a plain INSERT) is named', async () => {
    const chain = await liveChain();
    await withoutChecks(db, async () => {
      await insertRows(db, forgedRows(chain, 0, 1));
      try {
        const listed = (await http.get('/v1/audit/events?actor=forger').set('Authorization', auditor).expect(200)).body
          .events as AuditEventDto[];
        assert.deepEqual(
          listed.map((e) => [e.writerId, e.seq]),
          [[chain, 0]],
        );
        const report = await verify();
        assert.equal(report.valid, false);
        assert.deepEqual(report.firstBroken, {
          writerId: chain,
          seq: 0,
          id: await idOf(chain, 0),
          reason: `expected seq 1: ${MISSING}`,
        });
      } finally {
        await deleteRows(db, `actor = 'forger'`);
      }
    });
    assert.equal((await verify()).valid, true);
  });

  it('a whole chain below seq 1 (a ghost chain) is named, not listed as valid with no rows', async () => {
    await withoutChecks(db, async () => {
      await insertRows(db, forgedRows('ghost/0', -7, 3));
      try {
        const report = await verify();
        assert.equal(report.valid, false);
        assert.deepEqual(report.firstBroken, {
          writerId: 'ghost/0',
          seq: -7,
          id: await idOf('ghost/0', -7),
          reason: `expected seq 1: ${MISSING}`,
        });
        const ghost = report.chains.find((c) => c.writerId === 'ghost/0');
        assert.equal(ghost?.valid, false);
      } finally {
        await deleteRows(db, `writer_id = 'ghost/0'`);
      }
    });
    assert.equal((await verify()).valid, true);
  });
});
