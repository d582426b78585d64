/* `write` regenerates openapi.json from the code; `check` fails when the committed file has drifted. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../app.factory';
import { loadConfig } from '../config/app-config';
import { buildOpenApiDocument } from './openapi';

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode !== 'write' && mode !== 'check') throw new Error('usage: openapi.cli (write|check)');
  // The document needs the routes only: a throwaway data directory keeps ./data untouched.
  const dataDir = mkdtempSync(join(tmpdir(), 'gateway-openapi-'));
  let text: string;
  try {
    const app = await createApp(loadConfig({ ...process.env, LOG_LEVEL: 'error', DATA_DIR: dataDir }), {
      withDocs: false,
    });
    text = `${JSON.stringify(buildOpenApiDocument(app), null, 2)}\n`;
    await app.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  const file = join(process.cwd(), 'openapi.json');
  if (mode === 'write') {
    writeFileSync(file, text);
    console.log(`wrote ${file}`);
    return;
  }
  let committed = '';
  try {
    committed = readFileSync(file, 'utf8');
  } catch {
    // missing counts as drift
  }
  if (committed !== text) {
    console.error('openapi.json is out of date with the code: run `npm run openapi` and commit the result.');
    process.exitCode = 1;
    return;
  }
  console.log('openapi.json matches the code');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
