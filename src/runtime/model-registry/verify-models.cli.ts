/*
 * `npm run models:verify [dir]`: checks every manifest, sha256 and graph signature under the models
 * folder as the runtime would at boot, and what the project asks of bundled models besides: a
 * MODEL_CARD.md beside each, and model.onnx under 10 MB.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { inspectGraph } from '../worker-pool/ort-session';
import { ModelRegistryError, scanModels } from './model-registry';

const MAX_MODEL_BYTES = 10 * 1024 * 1024;

async function main(): Promise<void> {
  const root = process.argv[2] ?? 'models';
  try {
    const records = await scanModels(root, inspectGraph);
    const problems: string[] = [];
    for (const r of records) {
      const card = await stat(join(r.dir, 'MODEL_CARD.md')).catch(() => undefined);
      if (!card) problems.push(`${r.dir}: missing MODEL_CARD.md`);
      const size = (await stat(r.onnxPath)).size;
      if (size > MAX_MODEL_BYTES)
        problems.push(`${r.onnxPath}: ${size} bytes, over the 10 MB limit for bundled models`);
    }
    if (problems.length > 0) {
      console.error(problems.join('\n'));
      process.exitCode = 1;
      return;
    }
    for (const r of records) {
      console.log(
        `ok  ${r.domain}/${r.name}/${r.version}${r.isDefault ? ' (default)' : ''}  sha256 ${r.manifest.sha256.slice(0, 12)}…`,
      );
    }
    console.log(`${records.length} model version(s) verified in ${root}`);
  } catch (error) {
    if (error instanceof ModelRegistryError) {
      console.error(error.message);
      process.exitCode = 1;
      return;
    }
    throw error;
  }
}

void main();
