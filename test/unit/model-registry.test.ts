import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rename, rm, symlink, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { ModelRegistryError, scanModels } from '../../src/runtime/model-registry/model-registry';
import { inspectGraph } from '../../src/runtime/worker-pool/ort-session';
import { FIXTURE_MODELS } from '../fixtures/paths';

let root: string;
const linear = (v: string) => join(root, 'generic', 'fixture-linear', v);

async function editManifest(version: string, edit: (m: Record<string, unknown>) => void): Promise<void> {
  const path = join(linear(version), 'model.json');
  const manifest = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  edit(manifest);
  await writeFile(path, JSON.stringify(manifest));
}

async function refusal(): Promise<string> {
  try {
    await scanModels(root, inspectGraph);
  } catch (error) {
    assert.ok(error instanceof ModelRegistryError, String(error));
    return error.message;
  }
  assert.fail('the registry accepted a broken model');
}

describe('model registry', () => {
  const temps: string[] = [];
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'models-'));
    temps.push(root);
    await cp(join(FIXTURE_MODELS, 'generic', 'fixture-linear'), join(root, 'generic', 'fixture-linear'), {
      recursive: true,
    });
  });
  after(async () => {
    for (const dir of temps) await rm(dir, { recursive: true, force: true });
  });

  it('loads every version and serves the one marked default', async () => {
    const records = await scanModels(root, inspectGraph);
    assert.deepEqual(
      records.map((r) => [r.name, r.version, r.isDefault]),
      [
        ['fixture-linear', '1', false],
        ['fixture-linear', '2', true],
      ],
    );
  });

  it('reads each model.onnx once: the bytes it hashes are the bytes it inspects and hands the workers', async () => {
    const inspected: Uint8Array[] = [];
    const records = await scanModels(root, (bytes) => {
      inspected.push(bytes);
      return inspectGraph(bytes);
    });
    assert.equal(records.length, 2);
    for (const [i, record] of records.entries()) {
      assert.equal(createHash('sha256').update(record.onnxBytes).digest('hex'), record.manifest.sha256);
      assert.equal(inspected[i], record.onnxBytes, 'the graph inspected is the one hashed');
      assert.ok(record.onnxBytes.buffer instanceof SharedArrayBuffer, 'shared with the workers, not copied');
    }
  });

  it('serves the highest version when none is marked default', async () => {
    await editManifest('2', (m) => delete m.default);
    const records = await scanModels(root, inspectGraph);
    assert.equal(records.find((r) => r.isDefault)?.version, '2');
  });

  it('refuses two versions both marked default', async () => {
    await editManifest('1', (m) => (m.default = true));
    assert.match(await refusal(), /several versions marked default/);
  });

  it('refuses a missing model.onnx, naming the path', async () => {
    await rm(join(linear('1'), 'model.onnx'));
    const message = await refusal();
    assert.match(message, /missing model\.onnx/);
    assert.ok(message.includes(join(linear('1'), 'model.onnx')));
  });

  it('refuses a missing model.json', async () => {
    await rm(join(linear('1'), 'model.json'));
    assert.match(await refusal(), /fixture-linear\/1\/model\.json: missing model\.json/);
  });

  it('refuses a manifest that is not JSON', async () => {
    await writeFile(join(linear('1'), 'model.json'), '{ not json');
    assert.match(await refusal(), /not valid JSON/);
  });

  it('refuses a manifest that breaks the schema (missing field, unknown field)', async () => {
    await editManifest('1', (m) => {
      delete m.provenance;
      m.inputz = [];
    });
    const message = await refusal();
    assert.match(message, /does not match the manifest schema/);
    assert.match(message, /provenance/);
    assert.match(message, /additional properties/);
  });

  it('refuses a model.onnx whose sha256 does not match the manifest', async () => {
    await appendFile(join(linear('1'), 'model.onnx'), Buffer.from([0]));
    assert.match(await refusal(), /sha256 mismatch/);
  });

  it('refuses inputs and outputs that do not match the graph', async () => {
    await editManifest('1', (m) => {
      m.inputs = [{ name: 'features', dtype: 'float32', shape: [-1, 4] }];
    });
    await editManifest('2', (m) => {
      m.outputs = [{ name: 'y', dtype: 'int64', shape: [-1, 3] }];
    });
    const message = await refusal();
    assert.match(message, /input "features" is not in the graph/);
    assert.match(message, /graph inputs missing from model\.json: x/);
    assert.match(message, /output "y" is int64 in model\.json but float32 in the graph/);
    assert.match(message, /output "y" dimension 1 is 3 in model\.json but 2 in the graph/);
  });

  it('refuses a manifest whose name or version disagrees with its folder', async () => {
    await editManifest('1', (m) => (m.version = '7'));
    assert.match(await refusal(), /version is "7" but the folder says "1"/);
  });

  it('refuses one name used in two domains', async () => {
    await cp(linear('1'), join(root, 'finance', 'fixture-linear', '1'), { recursive: true });
    await editManifest('1', () => undefined);
    const path = join(root, 'finance', 'fixture-linear', '1', 'model.json');
    const m = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...m, domain: 'finance' }));
    assert.match(await refusal(), /used in several domains/);
  });

  it('follows a version linked in from elsewhere: skipped, it let the older version serve as the default', async () => {
    const store = await mkdtemp(join(tmpdir(), 'model-store-'));
    temps.push(store);
    await rename(linear('2'), join(store, '2'));
    await symlink(join(store, '2'), linear('2'));
    const records = await scanModels(root, inspectGraph);
    assert.deepEqual(
      records.map((r) => [r.version, r.isDefault]),
      [
        ['1', false],
        ['2', true],
      ],
    );
  });

  it('refuses a link that leads nowhere, naming it', async () => {
    await symlink(join(root, 'no-such-store', '3'), linear('3'));
    const message = await refusal();
    assert.ok(message.includes(`${linear('3')}: symbolic link that cannot be followed (ENOENT)`), message);
  });

  it('refuses a models folder that does not exist', async () => {
    await assert.rejects(scanModels(join(root, 'nope'), inspectGraph), /models directory does not exist/);
  });

  it('refuses a models folder with no model in it, or a file in its place', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'models-empty-'));
    try {
      await assert.rejects(scanModels(empty, inspectGraph), /no model versions .* under MODELS_DIR/);
      await writeFile(join(empty, 'a-file'), 'x');
      await assert.rejects(scanModels(join(empty, 'a-file'), inspectGraph), /MODELS_DIR is not a directory/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
