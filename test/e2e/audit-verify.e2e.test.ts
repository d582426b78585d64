import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AuditAnchors } from '../../src/audit/audit-anchor.service';
import type { AuditEventDto, AuditVerifyDto } from '../../src/audit/audit.dto';
import {
  deleteRows,
  forgedRows,
  insertRows,
  verifyCountsLegacyTrail,
  verifyNamesUnkeyedHead,
  withoutChecks,
} from '../fixtures/audit-tamper';
import { verifyAcrossRotation } from '../fixtures/audit-rotation';
import { createTestApp } from '../fixtures/test-app';
import { freshDataDir } from '../fixtures/test-data-dir';
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

  it('the table refuses a row below seq 1, a hash_version other than 1 or 2, and a hash or prev_hash that is not 64 lowercase hex', async () => {
    const [row] = forgedRows('by-hand/0', 1, 1);
    await assert.rejects(insertRows(db, [{ ...row, seq: 0 }]), /audit_events_seq_from_1/);
    await assert.rejects(insertRows(db, [{ ...row, seq: -7 }]), /audit_events_seq_from_1/);
    for (const hashVersion of [0, 3, -1]) {
      await assert.rejects(insertRows(db, [{ ...row, hashVersion }]), /audit_events_hash_version_known/);
    }
    // Each value the old check (`~ '^[0-9a-f]{64}$'`) refused, the cheaper one refuses: upper case, short (a char(64)
    // pads it with blanks), a blank, a letter past f or a non-ASCII digit inside, a leading blank.
    const hash = row.hash;
    for (const bad of [
      hash.toUpperCase(),
      hash.slice(1),
      `${hash.slice(0, 30)} ${hash.slice(31)}`,
      `${hash.slice(0, 63)}g`,
      `${hash.slice(0, 63)}\u0661`,
      ` ${hash.slice(1)}`,
      '',
    ]) {
      await assert.rejects(
        insertRows(db, [{ ...row, hash: bad }]),
        /audit_events_hashes_lower_hex/,
        JSON.stringify(bad),
      );
      await assert.rejects(
        insertRows(db, [{ ...row, prevHash: bad }]),
        /audit_events_hashes_lower_hex/,
        JSON.stringify(bad),
      );
    }
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

  it("reads a second row with the seq of a page's last row (the unique index dropped) and names it", async () => {
    // Verify reads 2,000 rows a page: the copy of seq 2,000 sat past the first page, and paging by seq skipped it.
    const rows = forgedRows('dup/0', 1, 2001);
    await insertRows(db, rows);
    await db.query('DROP INDEX audit_events_writer_seq');
    try {
      await insertRows(db, [rows[1999]]);
      const report = await verify();
      assert.equal(report.valid, false);
      const [, copy] = await db.query<Array<{ id: string }>>(
        `SELECT id::text AS id FROM audit_events WHERE writer_id = 'dup/0' AND seq = 2000 ORDER BY id`,
      );
      assert.deepEqual(report.firstBroken, {
        writerId: 'dup/0',
        seq: 2000,
        id: copy.id,
        reason: `expected seq 2001: ${MISSING}`,
      });
      assert.deepEqual(
        report.chains.find((c) => c.writerId === 'dup/0'),
        {
          writerId: 'dup/0',
          rows: 2000,
          valid: false,
          anchoredSeq: null,
          firstBroken: report.firstBroken,
          // Forged without the key: unkeyed rows, which no keyed row holds.
          unkeyedRows: 2000,
          rowsUnderRetiredSecrets: 0,
        },
      );
    } finally {
      await deleteRows(db, `writer_id = 'dup/0'`);
      await db.query('CREATE UNIQUE INDEX audit_events_writer_seq ON audit_events (writer_id, seq)');
    }
    assert.equal((await verify()).valid, true);
  });
});

describe('audit verify, a break in one chain', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let db: DataSource;
  const admin = bearer(tokenFor(['ml-admin'], { sub: 'ml-engineer-w' }));
  const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-w' }));
  const verify = async (): Promise<AuditVerifyDto> =>
    (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body as AuditVerifyDto;

  before(async () => {
    // Its chains sort after the junk chain below: the walk used to end at the junk.
    app = await createTestApp({ AUDIT_WRITER_ID: 'zz-gateway', AUDIT_ANCHOR_INTERVAL_MS: '3600000' });
    http = request(app.getHttpServer());
    db = app.get(DataSource);
  });
  after(() => app.close());

  it('hides no other chain nor anchor: a junk row in the chain that sorts first, and a tail cut from an anchored chain, are both named', async () => {
    for (let i = 0; i < 6; i++) {
      await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR).expect(200);
    }
    await app.get(AuditAnchors).anchor();
    const [{ writer_id: chain, seq }] = await db.query<Array<{ writer_id: string; seq: string }>>(
      'SELECT writer_id, max(seq)::text AS seq FROM audit_events GROUP BY writer_id ORDER BY max(seq) DESC LIMIT 1',
    );
    const anchoredSeq = Number(seq);
    assert.ok(anchoredSeq >= 3, `${anchoredSeq} rows in the longest chain`);
    await deleteRows(db, 'writer_id = $1 AND seq > $2', [chain, anchoredSeq - 2]);
    const [junk] = forgedRows('aa-junk/0', 1, 1);
    await insertRows(db, [{ ...junk, hash: 'f'.repeat(64) }]);

    const report = await verify();
    assert.equal(report.valid, false);
    assert.deepEqual(
      [report.firstBroken?.writerId, report.firstBroken?.seq, report.firstBroken?.reason],
      ['aa-junk/0', 1, 'row content does not match its hash'],
    );
    assert.deepEqual(
      report.anchorBreaks.map((b) => [b.writerId, b.seq, b.reason.split(':')[0]]),
      [[chain, anchoredSeq, `rows after seq ${anchoredSeq - 2} cut off`]],
    );
    const byChain = new Map(report.chains.map((c) => [c.writerId, c]));
    assert.deepEqual(byChain.get('aa-junk/0')?.firstBroken, report.firstBroken);
    assert.deepEqual(byChain.get(chain), {
      writerId: chain,
      rows: anchoredSeq - 2,
      valid: false,
      anchoredSeq,
      firstBroken: null,
      unkeyedRows: 0,
      rowsUnderRetiredSecrets: 0,
    });
    // Every chain of the gateway is walked and reported, not only those before the junk.
    assert.ok(report.chains.filter((c) => c.writerId.startsWith('zz-gateway/')).length >= 1);
    assert.ok(report.anchorsChecked >= 1);
    // The junk chain, and any of the gateway's chains its anchor did not reach, are held by their hashes alone.
    assert.equal(report.unanchoredChains, report.chains.filter((c) => c.anchoredSeq === null).length);
    assert.ok(report.unanchoredChains >= 1);
  });
});

describe('audit verify, keyed row hashes', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  const token = bearer(tokenFor(['ml-admin', 'auditor'], { sub: 'auditor-k' }));

  before(async () => {
    // One lane: every row of the gateway goes to the one chain keyed-gw/0.
    app = await createTestApp({ AUDIT_WRITER_ID: 'keyed-gw', AUDIT_LANES: '1', AUDIT_ANCHOR_INTERVAL_MS: '3600000' });
    http = request(app.getHttpServer());
  });
  after(() => app.close());

  it('a trail written before keyed hashes (hash_version 1) still verifies, and what no keyed row holds is counted unkeyed', async () => {
    await verifyCountsLegacyTrail(app, http, token, 'keyed-gw');
    const report = await (await http.get('/v1/audit/verify').set('Authorization', token).expect(200)).body;
    // This gateway's own database: the legacy chain alone rests on unkeyed hashes.
    assert.deepEqual([report.unkeyedRows, report.unkeyedChains], [4, 1]);
  });

  it('a row with a correct unkeyed sha256 appended at the head of a live chain is named, and stays named once the gateway goes on from it', async () => {
    await verifyNamesUnkeyedHead(app, http, token, 'keyed-gw/0');
  });
});

describe('audit verify across a rotation of AUDIT_HMAC_SECRET', () => {
  it('a chain that goes on across it verifies with the old secret in AUDIT_HMAC_PREVIOUS_SECRETS, counted; a row forged under the old secret after the new one is named; without it, its first row is', async () => {
    await verifyAcrossRotation(createTestApp, { DATA_DIR: await freshDataDir() }, 'rotating');
  });
});
