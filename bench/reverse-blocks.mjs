// bench/reverse-blocks: CPU seconds per reverse row of a model's bottom part (the Gram form's cost,
// src/linearize/linearizer.ts gramChunk) at several rows per adjoint run. Each run re-runs the
// bottom's primal part once, so one or two rows a run waste much of it; large runs fall out of the
// caches. One warm-up run per size, then about 32 rows' worth of runs; the point is a fixed smooth
// image-sized pattern (no input file needed).
// Usage: npm run build && node bench/reverse-blocks.mjs MODEL.onnx RELU [ROWS...]   (default rows 1 2 4 8 16 32)
import { loadModel } from '../dist/onnx/load.js';
import { makeBatchDynamicProbed } from '../dist/onnx/batch.js';
import { splitModelAt } from '../dist/onnx/split.js';
import { createJacobianEngine } from '../dist/linearize/jacobian.js';
import { readFileSync } from 'node:fs';

const [file, reluArg, ...rest] = process.argv.slice(2);
if (!file || reluArg === undefined) {
  console.error('usage: node bench/reverse-blocks.mjs MODEL.onnx RELU [ROWS...]');
  process.exit(2);
}
const sizes = rest.length > 0 ? rest.map(Number) : [1, 2, 4, 8, 16, 32];
const gib = () => (process.memoryUsage.rss() / 2 ** 30).toFixed(2);
const model = loadModel(file);
const graph = await makeBatchDynamicProbed(model.graph, { file });
const sr = await splitModelAt(graph, Number(reluArg), { file });
const e = await createJacobianEngine(sr.bottom, { mode: 'auto', varying: [graph.dataInputs[0].name], outputs: [sr.relu.input] });
if (!(await e.reverseReady())) throw new Error(`no reverse mode for this bottom: ${e.description}`);
const n = e.inputSize;
const p = e.outputSize;
console.log(
  `${file} split at ReLU ${reluArg}: p = ${p}, n = ${n}; adjoint ${((await e.reverseRowBytes()) / 1e6).toFixed(1)} MB a row (estimate), engine chunk ${await e.reverseChunk()}; rss ${gib()} GiB`,
);
const point = Float32Array.from({ length: n }, (_, i) => 1.5 * Math.sin(0.37 * i));
for (const k of sizes) {
  const U = new Float32Array(k * p);
  for (let i = 0; i < k; i++) U[i * p + ((i * 7) % p)] = 1;
  await e.vjp(point, U, k); // warm-up: onnxruntime plans and allocates for this batch size
  const reps = Math.max(1, Math.round(32 / k));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) await e.vjp(point, U, k);
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6 / (reps * k);
  const wall = (performance.now() - t0) / 1000 / (reps * k);
  console.log(
    `${k} rows a run: ${cpu.toFixed(4)} CPU s a row (${wall.toFixed(4)} s wall), ${(512 * cpu).toFixed(1)} CPU s per 512 rows; rss ${gib()} GiB; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
  );
}
await e.release();
