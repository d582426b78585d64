#!/usr/bin/env node
'use strict';
/*
 * CPU latency of an image model in onnxruntime-node with ONE intra-op thread.
 * Usage: node training/medical/ort_bench.js <model.onnx> [runs=50] [warmup=10] [size=256]
 * Prints JSON {medianMs, p90Ms, meanMs, runs, warmup} for a batch of one 1x1xSIZExSIZE float32 image.
 */
const ort = require('onnxruntime-node');

async function main() {
  const [modelPath, runsArg, warmArg, sizeArg] = process.argv.slice(2);
  const runs = Number(runsArg || 50);
  const warmup = Number(warmArg || 10);
  const size = Number(sizeArg || 256);
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const data = new Float32Array(size * size);
  for (let i = 0; i < data.length; i += 1) data[i] = Math.sin(i * 0.001);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, [1, 1, size, size]) };
  for (let i = 0; i < warmup; i += 1) await session.run(feeds);
  const t = [];
  for (let i = 0; i < runs; i += 1) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  const median = t.length % 2 ? t[(t.length - 1) / 2] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2;
  const mean = t.reduce((a, b) => a + b, 0) / t.length;
  console.log(
    JSON.stringify({ medianMs: median, p90Ms: t[Math.floor(0.9 * (t.length - 1))], meanMs: mean, runs, warmup }),
  );
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
