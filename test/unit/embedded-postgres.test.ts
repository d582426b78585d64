import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { embeddedDurabilityWarning } from '../../src/database/embedded-postgres';

describe('embedded PGlite durability', () => {
  it('warns production, and only production, that the embedded database does not flush to disk', () => {
    const warning = embeddedDurabilityWarning({ NODE_ENV: 'production', DATABASE_URL: undefined });
    assert.match(warning ?? '', /power cut/);
    assert.match(warning ?? '', /DATABASE_URL/);
    assert.equal(embeddedDurabilityWarning({ NODE_ENV: 'development', DATABASE_URL: undefined }), undefined);
    assert.equal(
      embeddedDurabilityWarning({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db.example/audit' }),
      undefined,
    );
  });

  it('rests on a fact of the bundled PGlite: it runs PostgreSQL with fsync off (revisit the warning when this fails)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pglite-fsync-'));
    const db = await PGlite.create(dir);
    try {
      const { rows } = await db.query<{ fsync: string }>('SHOW fsync');
      assert.equal(rows[0].fsync, 'off');
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
