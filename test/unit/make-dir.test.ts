import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { makeDir, makeDirSync } from '../../src/common/make-dir';

const rooted = process.platform === 'linux' && process.getuid?.() === 0;

for (const [name, make] of [
  // A rejection, as the async twin gives, for the same asserts.
  ['makeDirSync', (path: string, mode?: number) => new Promise<void>((done) => done(makeDirSync(path, mode)))],
  ['makeDir', makeDir],
] as const) {
  describe(name, () => {
    it('makes the path and what it lacks above it, each with the mode; a folder already there is fine', async () => {
      const root = mkdtempSync(join(tmpdir(), 'make-dir-'));
      try {
        const deep = join(root, 'a', 'b', 'c');
        await make(deep, 0o700);
        for (const dir of [join(root, 'a'), join(root, 'a', 'b'), deep])
          assert.equal(statSync(dir).mode & 0o777, 0o700);
        await make(deep, 0o700);
        await make(root);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    it('a file in the way is mkdir’s own error: EEXIST in its place, ENOTDIR above', async () => {
      const root = mkdtempSync(join(tmpdir(), 'make-dir-'));
      try {
        const file = join(root, 'file');
        writeFileSync(file, '');
        await assert.rejects(make(file), { code: 'EEXIST' });
        await assert.rejects(make(join(file, 'below', 'more')), { code: 'ENOTDIR' });
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    it(
      'a folder /proc will not make is ENOENT at once, where Node’s recursive mkdir loops for ever',
      { skip: !rooted },
      async () => {
        await assert.rejects(make('/proc/x/y'), { code: 'ENOENT', path: '/proc/x' });
        await assert.rejects(make('/proc/self/data'), { code: 'ENOENT' });
      },
    );
  });
}
