import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decode } from 'jsonwebtoken';
import { REPO_ROOT } from '../fixtures/paths';

/** `npm run token`'s script as built by build:test, run with its own DATA_DIR (it makes the dev key pair there). */
const TOKEN_CLI = join(REPO_ROOT, 'dist-test', 'src', 'auth', 'token.cli.js');

describe('npm run token', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'token-cli-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  const token = (...args: string[]) =>
    spawnSync(process.execPath, [TOKEN_CLI, ...args], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir, NODE_ENV: 'development' },
      encoding: 'utf8',
    });

  it('prints a token with the tenant asked for', () => {
    const run = token('--role', 'auditor', '--tenant', 'bank-a');
    assert.equal(run.status, 0, run.stderr);
    assert.equal((decode(run.stdout.trim()) as { tenant?: string }).tenant, 'bank-a');
  });

  // It printed tokens the gateway then refused with 401, with nothing said when they were made.
  it('refuses a tenant the gateway would refuse, saying why', () => {
    for (const [tenant, why] of [
      ['bank-a ', 'token tenant claim starts or ends with white space or an invisible character'],
      ['cafe\u0301', 'token tenant claim not in Unicode normalization form C (NFC)'],
      ['bank-\u0007', 'token tenant claim malformed'],
    ]) {
      const run = token('--role', 'auditor', '--tenant', tenant);
      assert.equal(run.status, 1, JSON.stringify(tenant));
      assert.equal(run.stdout, '');
      assert.equal(run.stderr.trim(), `--tenant: the gateway would refuse it (${why})`);
    }
  });
});
