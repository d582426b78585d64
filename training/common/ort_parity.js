#!/usr/bin/env node
'use strict';
/*
 * Runs an ONNX model with onnxruntime-node on the CPU, for parity checks against PyTorch.
 *
 * Usage: node training/common/ort_parity.js <model.onnx> <inputDir> <outputDir>
 *
 * <inputDir>/inputs.json lists the inputs:
 *   {"inputs": [{"name": "features", "shape": [n, f], "file": "features.bin"}]}
 * where each file holds float32 little-endian values in row-major order.
 * Every graph output is written to <outputDir>/<name>.bin (float32 little-endian) and described
 * in <outputDir>/outputs.json: {"outputs": [{"name", "shape", "file"}]}.
 */
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function readFloat32(file) {
  const buf = fs.readFileSync(file);
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i += 1) {
    out[i] = buf.readFloatLE(i * 4);
  }
  return out;
}

function writeFloat32(file, data) {
  const buf = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i += 1) {
    buf.writeFloatLE(Number(data[i]), i * 4);
  }
  fs.writeFileSync(file, buf);
}

async function main() {
  const [modelPath, inputDir, outputDir] = process.argv.slice(2);
  if (!modelPath || !inputDir || !outputDir) {
    process.stderr.write('usage: node ort_parity.js <model.onnx> <inputDir> <outputDir>\n');
    process.exit(2);
  }
  const spec = JSON.parse(fs.readFileSync(path.join(inputDir, 'inputs.json'), 'utf8'));
  const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'] });
  const feeds = {};
  for (const input of spec.inputs) {
    const data = readFloat32(path.join(inputDir, input.file));
    feeds[input.name] = new ort.Tensor('float32', data, input.shape);
  }
  const results = await session.run(feeds);
  fs.mkdirSync(outputDir, { recursive: true });
  const outputs = [];
  for (const name of session.outputNames) {
    const tensor = results[name];
    const file = `${name}.bin`;
    writeFloat32(path.join(outputDir, file), tensor.data);
    outputs.push({ name, shape: tensor.dims.map(Number), file, type: tensor.type });
  }
  fs.writeFileSync(path.join(outputDir, 'outputs.json'), `${JSON.stringify({ outputs }, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
