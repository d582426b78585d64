/*
 * `npm run models:verify [dir]`: checks every manifest, sha256 and graph signature under the models
 * folder as the runtime would at boot, makes each model's session on the CPU and warms it up as a worker
 * does (a warm-up that fails stops the boot), and checks what the project asks of bundled models besides:
 * a MODEL_CARD.md beside each, and model.onnx under 10 MB.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createSession, inspectGraph, warmUp, warmupBatchSizes } from '../worker-pool/ort-session';
import { DEFAULT_BATCHING, isBatchable } from './model-manifest.schema';
import { ModelRegistryError, ModelVersionRecord, scanModels } from './model-registry';

const MAX_MODEL_BYTES = 10 * 1024 * 1024;

/** Why the model's session cannot be made and warmed on the CPU, as a worker would at boot; undefined if it can. */
async function warmupProblem(r: ModelVersionRecord): Promise<string | undefined> {
  const m = r.manifest;
  // The boot's warm-up batch sizes, without the environment's BATCH_MAX_SIZE.
  const largest = isBatchable(m) ? (m.batching?.maxBatchSize ?? DEFAULT_BATCHING.maxBatchSize) : 1;
  try {
    const { session } = await createSession(r.onnxBytes, 'cpu', 1, 0);
    try {
      await warmUp(
        session,
        m.inputs,
        m.outputs.map((o) => o.name),
        warmupBatchSizes(largest),
      );
    } finally {
      await session.release();
    }
    return undefined;
  } catch (error) {
    return `${r.dir}: model ${r.name} version ${r.version}: ${(error as Error).message}`;
  }
}

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
      const warmup = await warmupProblem(r);
      if (warmup) problems.push(warmup);
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
