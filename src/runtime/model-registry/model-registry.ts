import { createHash } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import Ajv from 'ajv';
import { MODEL_MANIFEST_SCHEMA, ModelManifest, TensorSpec } from './model-manifest.schema';

/** A tensor as the ONNX graph declares it; a string or negative dimension is symbolic. */
export interface GraphTensor {
  name: string;
  type: string;
  shape: Array<number | string>;
}

export interface GraphSignature {
  inputs: GraphTensor[];
  outputs: GraphTensor[];
}

/** Reads a graph's declared inputs and outputs from model.onnx's bytes (the ORT driver implements it). */
export type GraphInspector = (onnx: Uint8Array) => Promise<GraphSignature>;

export interface ModelVersionRecord {
  name: string;
  version: string;
  domain: string;
  dir: string;
  onnxPath: string;
  /**
   * model.onnx as read once at boot, in memory the workers share: the bytes whose sha256 was checked and
   * whose graph was inspected are the bytes every worker loads (a file replaced since is not read again).
   */
  onnxBytes: Uint8Array;
  manifest: ModelManifest;
  /** The version that serves callers who do not pin one. */
  isDefault: boolean;
}

export interface RegistryProblem {
  path: string;
  reason: string;
}

export class ModelRegistryError extends Error {
  constructor(readonly problems: RegistryProblem[]) {
    super(`Refusing to serve models:\n${problems.map((p) => `  ${p.path}: ${p.reason}`).join('\n')}`);
    this.name = 'ModelRegistryError';
  }
}

const ajv = new Ajv({ allErrors: true, allowUnionTypes: true });
const validateManifest = ajv.compile<ModelManifest>(MODEL_MANIFEST_SCHEMA);

/** A model file, read once into a SharedArrayBuffer (handed to every worker without a copy). */
export async function readModelFile(path: string): Promise<Uint8Array> {
  const file = await open(path);
  try {
    const { size } = await file.stat();
    const bytes = new Uint8Array(new SharedArrayBuffer(size));
    let at = 0;
    while (at < size) {
      const { bytesRead } = await file.read(bytes, at, size - at, at);
      if (bytesRead === 0) break; // cut short while read: its sha256 will not match
      at += bytesRead;
    }
    return bytes.subarray(0, at);
  } finally {
    await file.close();
  }
}

/**
 * The folders in `dir`, hidden ones aside. A symbolic link to a folder counts as one (a version linked in
 * from a model store; the sha256 vouches for the bytes wherever they lie): skipping it would serve an older
 * version as the default without a word. A link that leads nowhere is a problem, not a skip.
 */
async function subdirs(dir: string, problems: RegistryProblem[]): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isDirectory()) names.push(entry.name);
    else if (entry.isSymbolicLink()) {
      const path = join(dir, entry.name);
      const target = await stat(path).catch((error: NodeJS.ErrnoException) => error);
      if (target instanceof Error) {
        problems.push({ path, reason: `symbolic link that cannot be followed (${target.code ?? target.message})` });
      } else if (target.isDirectory()) names.push(entry.name);
    }
  }
  return names.sort();
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** A warmupShape must have its input's rank and keep its fixed dimensions. */
export function warmupShapeProblems(inputs: TensorSpec[]): string[] {
  const reasons: string[] = [];
  for (const spec of inputs) {
    const warmup = spec.warmupShape;
    if (!warmup) continue;
    const field = `input "${spec.name}" warmupShape [${warmup.join(', ')}]`;
    if (warmup.length !== spec.shape.length)
      reasons.push(`${field} must have the rank of shape [${spec.shape.join(', ')}]`);
    else if (spec.shape.some((d, i) => d >= 0 && warmup[i] !== d)) {
      reasons.push(`${field} must keep the fixed dimensions of shape [${spec.shape.join(', ')}]`);
    }
  }
  return reasons;
}

/** Compares the manifest's tensor list with the graph's; returns the reasons they disagree. */
export function compareSignature(kind: 'input' | 'output', declared: TensorSpec[], graph: GraphTensor[]): string[] {
  const reasons: string[] = [];
  const byName = new Map(graph.map((t) => [t.name, t]));
  for (const spec of declared) {
    const actual = byName.get(spec.name);
    if (!actual) {
      reasons.push(`${kind} "${spec.name}" is not in the graph (graph has ${[...byName.keys()].join(', ')})`);
      continue;
    }
    byName.delete(spec.name);
    if (actual.type !== spec.dtype) {
      reasons.push(`${kind} "${spec.name}" is ${spec.dtype} in model.json but ${actual.type} in the graph`);
    }
    if (actual.shape.length !== spec.shape.length) {
      reasons.push(
        `${kind} "${spec.name}" has rank ${spec.shape.length} in model.json but ${actual.shape.length} in the graph`,
      );
      continue;
    }
    spec.shape.forEach((dim, i) => {
      const g = actual.shape[i];
      const graphFixed = typeof g === 'number' && g >= 0;
      if (graphFixed && dim !== g) {
        reasons.push(`${kind} "${spec.name}" dimension ${i} is ${dim} in model.json but ${g} in the graph`);
      }
    });
  }
  if (kind === 'input' && byName.size > 0) {
    reasons.push(`graph inputs missing from model.json: ${[...byName.keys()].join(', ')}`);
  }
  return reasons;
}

/**
 * Scans `<root>/<domain>/<name>/<version>/`, validating each manifest against the schema, the
 * sha256 of model.onnx and the graph's signature. Any problem refuses the whole set, naming
 * every path and reason: a gateway in a regulated setting must not start on a model it cannot vouch for.
 */
export async function scanModels(root: string, inspect: GraphInspector): Promise<ModelVersionRecord[]> {
  if (!(await exists(root)))
    throw new ModelRegistryError([{ path: root, reason: 'models directory does not exist (MODELS_DIR)' }]);
  if (!(await stat(root)).isDirectory()) {
    throw new ModelRegistryError([{ path: root, reason: 'MODELS_DIR is not a directory' }]);
  }
  const problems: RegistryProblem[] = [];
  const records: ModelVersionRecord[] = [];
  for (const domain of await subdirs(root, problems)) {
    for (const name of await subdirs(join(root, domain), problems)) {
      for (const version of await subdirs(join(root, domain, name), problems)) {
        const dir = join(root, domain, name, version);
        const record = await loadVersion(dir, { domain, name, version }, inspect, problems);
        if (record) records.push(record);
      }
    }
  }
  checkNamesAndDefaults(records, problems, root);
  // A gateway with nothing to serve would report itself ready and answer every inference with 404.
  if (records.length === 0 && problems.length === 0) {
    problems.push({ path: root, reason: 'no model versions (<domain>/<name>/<version>/) under MODELS_DIR' });
  }
  if (problems.length > 0) throw new ModelRegistryError(problems);
  return records;
}

async function loadVersion(
  dir: string,
  expected: { domain: string; name: string; version: string },
  inspect: GraphInspector,
  problems: RegistryProblem[],
): Promise<ModelVersionRecord | undefined> {
  const manifestPath = join(dir, 'model.json');
  const onnxPath = join(dir, 'model.onnx');
  if (!(await exists(manifestPath))) {
    problems.push({ path: manifestPath, reason: 'missing model.json' });
    return undefined;
  }
  if (!(await exists(onnxPath))) {
    problems.push({ path: onnxPath, reason: 'missing model.onnx' });
    return undefined;
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (error) {
    problems.push({ path: manifestPath, reason: `not valid JSON: ${(error as Error).message}` });
    return undefined;
  }
  if (!validateManifest(manifest)) {
    const reasons = (validateManifest.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
    problems.push({ path: manifestPath, reason: `does not match the manifest schema: ${reasons.join('; ')}` });
    return undefined;
  }
  for (const key of ['domain', 'name', 'version'] as const) {
    if (manifest[key] !== expected[key]) {
      problems.push({
        path: manifestPath,
        reason: `${key} is "${manifest[key]}" but the folder says "${expected[key]}"`,
      });
      return undefined;
    }
  }
  const warmup = warmupShapeProblems(manifest.inputs);
  if (warmup.length > 0) {
    problems.push({ path: manifestPath, reason: warmup.join('; ') });
    return undefined;
  }
  const onnxBytes = await readModelFile(onnxPath);
  const digest = createHash('sha256').update(onnxBytes).digest('hex');
  if (digest !== manifest.sha256) {
    problems.push({ path: onnxPath, reason: `sha256 mismatch: model.json says ${manifest.sha256}, file is ${digest}` });
    return undefined;
  }
  let graph: GraphSignature;
  try {
    graph = await inspect(onnxBytes);
  } catch (error) {
    problems.push({ path: onnxPath, reason: `ONNX Runtime cannot load the graph: ${(error as Error).message}` });
    return undefined;
  }
  const mismatches = [
    ...compareSignature('input', manifest.inputs, graph.inputs),
    ...compareSignature('output', manifest.outputs, graph.outputs),
  ];
  if (mismatches.length > 0) {
    problems.push({ path: dir, reason: `model.json does not match the graph: ${mismatches.join('; ')}` });
    return undefined;
  }
  return { ...expected, dir, onnxPath, onnxBytes, manifest, isDefault: false };
}

function checkNamesAndDefaults(records: ModelVersionRecord[], problems: RegistryProblem[], root: string): void {
  const byName = new Map<string, ModelVersionRecord[]>();
  for (const r of records) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  for (const [name, versions] of byName) {
    const domains = new Set(versions.map((v) => v.domain));
    if (domains.size > 1) {
      problems.push({
        path: root,
        reason: `model name "${name}" is used in several domains (${[...domains].join(', ')})`,
      });
    }
    const marked = versions.filter((v) => v.manifest.default === true);
    if (marked.length > 1) {
      const dirs = marked.map((v) => relative(root, v.dir)).join(', ');
      problems.push({ path: root, reason: `model "${name}" has several versions marked default: ${dirs}` });
    }
    const chosen = marked[0] ?? versions.reduce((a, b) => (Number(b.version) > Number(a.version) ? b : a));
    chosen.isDefault = true;
  }
}
