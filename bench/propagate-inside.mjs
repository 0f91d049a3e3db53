// bench/propagate-inside: where propagate's error enters a deep net. Per tensor the propagation
// carries between steps (each step's outputs, PropagatorOptions.onTensor), its per-unit mean and
// forward variance (|F_i|^2 over the covariance rows + r_i: what the next rule reads) against a
// Monte Carlo of the model with those tensors as extra outputs (one onnxruntime session, batches of
// inputs mu + sigma eps). The Monte Carlo is saved once (--save DIR) and reused (--mc DIR), so that
// variants of the propagation (PROPOPTS) compare against the same samples.
// Usage (ImageNet-shaped models, one 3x224x224 input): npm run build, then
//   1. the tensors' names, and the propagation alone (with --reference, its top-5 logits):
//      node bench/propagate-inside.mjs --model M.onnx --input X.npy --sigma 0.1 --names-out names.json [--reference mc10k.json]
//   2. the Monte Carlo of those tensors, saved once:
//      node bench/propagate-inside.mjs --model M.onnx --input X.npy --sigma 0.1 --names names.json --samples 4000 --save DIR
//   3. a propagation (options as JSON in PROPOPTS, default analyze's for the input's size when the full
//      rank does not fit: src/method.ts fallbackRank and propagateRows) against it, per tensor:
//      [PROPOPTS='{"rank":128,"hermiteColumns":48,"residualRows":16,"seed":2}'] node bench/propagate-inside.mjs --model M.onnx --input X.npy --sigma 0.1 --mc DIR
//        [--reference mc10k.json] [--filter REGEX] [--stop-after TENSOR]
// Per tensor: |mean error| / MC sd and var / MC var over the units with MC variance > 0 (median,
// p95, worst), the mean signed error / sd (a bias shared by the units), and the level MC noise alone
// gives (|N(0, 1/S)|: median 0.674 / sqrt(S), p95 1.96 / sqrt(S); a variance's relative sd about
// sqrt(2 / S) for a Gaussian unit). With --reference: the top-5 logits' mean error and sd ratio, and
// the mean error over all outputs.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../dist/onnx/load.js';
import { makeBatchDynamicProbed } from '../dist/onnx/batch.js';
import { ModelSession } from '../dist/runtime/session.js';
import { Rng } from '../dist/moments/montecarlo.js';
import { readNpy, npyToFloat32 } from '../dist/data/npy.js';
import { createPropagator } from '../dist/propagate/index.js';
import { fallbackRank, planPropagation, propagateRows } from '../dist/method.js';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const modelFile = opt('model');
const x = npyToFloat32(readNpy(opt('input')));
const n = x.length;
const sigma = Number(opt('sigma', '0.1'));
const noise = { kind: 'isotropic', sigma };
const model = loadModel(modelFile);

if (opt('save')) {
  // Monte Carlo of the tensors the propagation carries (their names from a first, cheap list:
  // every node output of the original graph that is not inside an affine run is one of them)
  const dir = opt('save');
  mkdirSync(dir, { recursive: true });
  const samples = Number(opt('samples', '4000'));
  const batch = Number(opt('batch', '16'));
  const names = JSON.parse(readFileSync(opt('names'), 'utf8'));
  const graph = await makeBatchDynamicProbed(model.graph, { file: modelFile });
  const g = graph.clone();
  for (const name of names) if (!g.outputs.some((o) => o.name === name)) g.outputs.push({ name, elemType: 1 });
  for (const name of names) g.valueInfo.delete(name);
  const session = await ModelSession.create(g.toBytes(), { file: modelFile });
  const inName = graph.dataInputs[0].name;
  const dims = [3, 224, 224];
  const run = async (xs, count) => session.run({ [inName]: { type: 'float32', data: xs, dims: [count, ...dims] } }, names);
  const clean = await run(x, 1);
  const shift = names.map((t) => Float64Array.from(clean[t].data));
  const s1 = names.map((t, i) => new Float64Array(shift[i].length));
  const s2 = names.map((t, i) => new Float64Array(shift[i].length));
  const rng = new Rng(20261207);
  const xs = new Float32Array(batch * n);
  const t0 = Date.now();
  for (let done = 0; done < samples; done += batch) {
    const count = Math.min(batch, samples - done);
    for (let j = 0; j < count * n; j++) xs[j] = x[j % n] + sigma * rng.normal();
    const out = await run(xs.subarray(0, count * n), count);
    names.forEach((t, i) => {
      const y = out[t].data;
      const size = shift[i].length;
      const a = s1[i];
      const b = s2[i];
      const c = shift[i];
      for (let s = 0; s < count; s++) {
        const o = s * size;
        for (let u = 0; u < size; u++) {
          const v = y[o + u] - c[u];
          a[u] += v;
          b[u] += v * v;
        }
      }
    });
    if ((done / batch) % 25 === 0) process.stderr.write(`${done + count} samples, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  }
  const index = { model: modelFile, sigma, samples, tensors: [] };
  names.forEach((t, i) => {
    const size = shift[i].length;
    const mean = new Float64Array(size);
    const variance = new Float64Array(size);
    for (let u = 0; u < size; u++) {
      const a = s1[i][u] / samples;
      mean[u] = shift[i][u] + a;
      variance[u] = Math.max(0, (s2[i][u] / samples - a * a) * (samples / (samples - 1)));
    }
    const file = `t${i}.bin`;
    const buf = new Float64Array(2 * size);
    buf.set(mean);
    buf.set(variance, size);
    writeFileSync(join(dir, file), Buffer.from(buf.buffer));
    index.tensors.push({ name: t, size, file });
  });
  writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
  console.log(`saved ${names.length} tensors, ${samples} samples, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await session.release();
  process.exit(0);
}

// the propagation, with each carried tensor's per-unit mean and forward variance kept
// default: analyze's sketch rank and rows at this input size (a full-rank factor of a 224x224 image
// does not fit); PROPOPTS's fields replace them
const plan = await planPropagation(model, {});
const defaults = { rank: fallbackRank(plan), ...propagateRows(plan) };
const extra = { ...defaults, ...JSON.parse(process.env.PROPOPTS ?? '{}') };
const filter = new RegExp(opt('filter', '.'));
const kept = new Map();
const order = [];
const prop = await createPropagator(model, {
  ...extra,
  onTensor: (name, v) => {
    order.push(name);
    if (!filter.test(name)) return;
    const size = v.m.length;
    const variance = Float64Array.from(v.r);
    for (let d = v.probes; d < v.probes + v.k; d++) {
      const o = d * size;
      for (let i = 0; i < size; i++) variance[i] += v.F[o + i] * v.F[o + i];
    }
    kept.set(name, { mean: Float64Array.from(v.m), variance, rows: v.F.length / size });
    if (name === opt('stop-after')) throw new StopHere();
  },
});
class StopHere extends Error {}
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
let p;
try {
  p = await prop.moments(x, noise);
} catch (e) {
  if (!(e instanceof StopHere)) throw e;
}
const cpu = process.cpuUsage(cpu0);
console.log(
  `propagate ${JSON.stringify(extra)}: ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} CPU s, rank ${p?.rank ?? extra.rank}${p ? '' : `, stopped after ${opt('stop-after')}`}`,
);
await prop.release();
if (opt('names-out')) writeFileSync(opt('names-out'), JSON.stringify(order));

const pct = (a, f) => a[Math.min(a.length - 1, Math.floor(f * (a.length - 1)))];
const f3 = (v) => v.toFixed(3);
if (opt('mc')) {
  const dir = opt('mc');
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  const S = index.samples;
  console.log(
    `Monte Carlo ${S} samples: noise alone gives |mean err|/sd median ${f3(0.674 / Math.sqrt(S))} p95 ${f3(1.96 / Math.sqrt(S))}; var/MC relative sd ~${f3(Math.sqrt(2 / S))}`,
  );
  console.log('tensor | units | |mean err|/sd median p95 max | signed mean err/sd (avg) | var/MC p5 median p95 | rows');
  for (const t of index.tensors) {
    const mine = kept.get(t.name);
    if (!mine) continue;
    const buf = new Float64Array(readFileSync(join(dir, t.file)).buffer.slice(0));
    const mean = buf.subarray(0, t.size);
    const variance = buf.subarray(t.size);
    const e = [];
    const q = [];
    let signed = 0;
    for (let u = 0; u < t.size; u++) {
      if (!(variance[u] > 1e-10 * (1 + mean[u] * mean[u]))) continue;
      const sd = Math.sqrt(variance[u]);
      const err = (mine.mean[u] - mean[u]) / sd;
      e.push(Math.abs(err));
      signed += err;
      q.push(mine.variance[u] / variance[u]);
    }
    e.sort((a, b) => a - b);
    q.sort((a, b) => a - b);
    console.log(
      `${t.name} | ${e.length}/${t.size} | ${f3(pct(e, 0.5))} ${f3(pct(e, 0.95))} ${f3(e.at(-1))} | ${f3(signed / e.length)} | ${f3(pct(q, 0.05))} ${f3(pct(q, 0.5))} ${f3(pct(q, 0.95))} | ${mine.rows}`,
    );
  }
}
if (p && opt('reference') && existsSync(opt('reference'))) {
  const ref = JSON.parse(readFileSync(opt('reference'), 'utf8'));
  const top = [...ref.mean.keys()].sort((a, b) => ref.mean[b] - ref.mean[a]).slice(0, 5);
  const err = top.map((j) => Math.abs(p.mean[j] - ref.mean[j]) / ref.sd[j]);
  const ratio = top.map((j) => Math.sqrt(p.variance[j]) / ref.sd[j]);
  const signed = top.map((j) => (p.mean[j] - ref.mean[j]) / ref.sd[j]);
  console.log(
    `top-5 vs ${ref.samples}-sample Monte Carlo: mean error / sd ${signed.map(f3).join(' ')} (max |.| ${f3(Math.max(...err))}); sd / MC sd ${ratio.map(f3).join(' ')} (worst ${f3(Math.max(...ratio.map((r) => Math.abs(r - 1))))} off)`,
  );
  // every output that varies under the noise: |mean error| / sd median, p95, max (as bench/scale.mjs
  // prints; an output constant in the samples, e.g. a class a Relu before the pooling keeps at 0,
  // has no sd to measure an error in)
  const varying = [...ref.mean.keys()].filter((j) => ref.sd[j] > 0);
  const all = varying.map((j) => Math.abs(p.mean[j] - ref.mean[j]) / ref.sd[j]).sort((a, b) => a - b);
  const at = (f) => f3(all[Math.min(all.length - 1, Math.floor(f * all.length))]);
  console.log(
    `all ${all.length} that vary${all.length < ref.mean.length ? ` (of ${ref.mean.length})` : ''}: |mean error| / sd median ${at(0.5)} p95 ${at(0.95)} max ${at(1)}`,
  );
}
process.exit(0);
