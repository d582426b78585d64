/* `npm run models:verify [dir]`: checks every manifest, sha256 and graph signature under the models folder. */
import { inspectGraph } from '../worker-pool/ort-session';
import { ModelRegistryError, scanModels } from './model-registry';

async function main(): Promise<void> {
  const root = process.argv[2] ?? 'models';
  try {
    const records = await scanModels(root, inspectGraph);
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
