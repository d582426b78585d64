import { mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * `mkdir -p` that cannot hang. Node's `mkdir(path, { recursive: true })` (sync and async) takes an ENOENT as "make
 * the parent first" and tries again, for ever where mkdir answers ENOENT under a parent that exists, as /proc does
 * (`/proc/x`). Here the folders missing above `path` are found once, then made one at a time from the top, each
 * with `mode`; the first mkdir that fails throws its own error (ENOENT, EPERM, EROFS, ENOTDIR, ...).
 */
export function makeDirSync(path: string, mode?: number): void {
  const missing: string[] = [];
  for (let dir = resolve(path); !isThere(() => statSync(dir)); dir = dirname(dir)) {
    missing.push(dir);
    if (dirname(dir) === dir) break;
  }
  // Nothing missing: the path itself once more, for mkdir to say what is wrong there, if anything (EEXIST for a file).
  for (const dir of missing.length > 0 ? missing.reverse() : [resolve(path)]) {
    try {
      mkdirSync(dir, { mode });
    } catch (error) {
      // Made meanwhile by someone else (another gateway on the same DATA_DIR): fine if it is a folder.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(dir).isDirectory()) throw error;
    }
  }
}

/** makeDirSync's asynchronous twin. */
export async function makeDir(path: string, mode?: number): Promise<void> {
  const missing: string[] = [];
  for (let dir = resolve(path); !(await isThereAsync(() => stat(dir))); dir = dirname(dir)) {
    missing.push(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of missing.length > 0 ? missing.reverse() : [resolve(path)]) {
    try {
      await mkdir(dir, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || !(await stat(dir)).isDirectory()) throw error;
    }
  }
}

/** Whether the walk up stops here: something is there, or stat failed otherwise than ENOENT (left to mkdir to report). */
function isThere(statOf: () => unknown): boolean {
  try {
    statOf();
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

async function isThereAsync(statOf: () => Promise<unknown>): Promise<boolean> {
  try {
    await statOf();
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}
