// bench/propagate: moment propagation through every layer vs two-stage linearization vs Monte Carlo
// from one run: per input the mean error (in MC output-sd units, worst over the outputs) and the
// variance ratio range (analytic / MC) of each method, their medians and worsts, and the CPU-time
// ratio propagate / two-stage / MC per input.
// Usage: npm run build && node bench/propagate.mjs [inputs=20] [mcSamples=75000] [sigmas=8,32] [first=50]
//          [--model FILE.onnx] [--images FOLDER] [--rank K] [--output-covariance reverse|factor] [--hermite K]
//          [--reverse-hermite K] [--probes P]   (Hermite columns carried / recorded for the reverse pass, probe rows)
// Default: the bundled LeNet on fixtures/mnist/digits-100.npy from digit `first` (held out from the
// tests' 0-2). With --images, PNGs of a folder (sorted by name, from the `first`-th, default 0),
// read with the model's preprocessing metadata as the CLI reads them (e.g. --model
// fixtures/fashion-resnet.onnx --images fixtures/fashion).
import { loadModel } from '../dist/onnx/load.js';
import { Analyzer } from '../dist/analyze.js';
import { Linearizer } from '../dist/linearize/linearizer.js';
import { readNpy, npyToFloat32 } from '../dist/data/npy.js';
import { openModelInputs } from '../dist/data/inputs.js';
import { monteCarloMoments } from '../dist/moments/montecarlo.js';
import { createPropagator } from '../dist/propagate/index.js';
import { cpus } from 'node:os';

const flags = {};
const positional = [];
for (let a = 2; a < process.argv.length; a++) {
  if (process.argv[a].startsWith('--')) flags[process.argv[a].slice(2)] = process.argv[++a];
  else positional.push(process.argv[a]);
}
const modelFile = flags.model ?? new URL('../fixtures/lenet.onnx', import.meta.url).pathname;
const model = loadModel(modelFile);
const inputShape = Linearizer.inputShapeOf(model);
const n = inputShape.reduce((a, b) => a * b, 1);
let input;
let source;
if (flags.images) {
  const ds = openModelInputs(flags.images, { inputShape, metadata: model.graph.metadata, modelFile });
  input = (k) => ds.get(k);
  source = { name: flags.images, size: ds.size, first: 0 };
} else {
  const xs = npyToFloat32(readNpy(new URL('../fixtures/mnist/digits-100.npy', import.meta.url).pathname));
  input = (k) => xs.subarray(k * n, (k + 1) * n);
  source = { name: 'fixtures/mnist/digits-100.npy', size: xs.length / n, first: 50 };
}
const digits = Math.min(Number(positional[0] ?? 20), source.size);
const samples = Number(positional[1] ?? 75000);
const sigmas = (positional[2] ?? '8,32').split(',').map(Number);
const first = Number(positional[3] ?? source.first);
const median = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

console.log(
  `machine: ${cpus().length} cores, node ${process.version}; ${modelFile}, inputs ${first}..${first + digits - 1} of ${source.name}, Monte Carlo ${samples} samples, threads 1`,
);
const rank = flags.rank !== undefined ? Number(flags.rank) : undefined;
const outputCovariance = flags['output-covariance'];
const number = (name) => (flags[name] !== undefined ? Number(flags[name]) : undefined);
const hermiteColumns = number('hermite');
const reverseHermiteColumns = number('reverse-hermite');
const hermiteProbes = number('probes');
const prop = await createPropagator(model, { threads: 1, rank, outputCovariance, hermiteColumns, reverseHermiteColumns, hermiteProbes });
console.log(
  `propagate plan: ${prop.plan.join(' -> ')}; rank ${rank ?? 'full'}, output covariance ${outputCovariance ?? 'default'}, Hermite columns ${hermiteColumns ?? 'default'} carried, ${reverseHermiteColumns ?? 'default'} recorded, probes ${hermiteProbes ?? 'default'}`,
);
for (const sigma of sigmas) {
  const noise = { kind: 'isotropic', sigma };
  const two = await Analyzer.create(model, { noise, variance: 'exact', flips: false, probabilitySamples: 0, threads: 1, method: 'two-stage' });
  // warm-up, not timed: six inputs each (V8 optimizes propagate's loops over the first few calls,
  // ~1-2 s in all, and the first call at a noise fills the noise-only caches; a dataset run pays
  // this once)
  for (let w = 0; w < Math.min(6, source.size); w++) {
    await prop.moments(input(w), noise);
    await two.analyzeInput(input(w), w);
  }
  const rows = [];
  let tp = 0;
  let tt = 0;
  let tm = 0;
  for (let k = first; k < first + digits; k++) {
    const x = input(k);
    let t = cpu();
    const p = await prop.moments(x, noise);
    tp += cpu() - t;
    t = cpu();
    const r2 = await two.analyzeInput(x, k);
    tt += cpu() - t;
    t = cpu();
    const mc = await monteCarloMoments((b, c) => two.linearizer.evaluate(b, c), p.mean.length, Float64Array.from(x), noise, {
      samples,
      batchSize: 2500,
      seed: 1000 + k,
    });
    tm += cpu() - t;
    const stat = (mean, variance) => {
      let err = 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < mean.length; i++) {
        err = Math.max(err, Math.abs(mean[i] - mc.mean[i]) / Math.sqrt(mc.variance[i]));
        const q = variance[i] / mc.variance[i];
        lo = Math.min(lo, q);
        hi = Math.max(hi, q);
      }
      return { err, lo, hi };
    };
    const a = stat(p.mean, p.variance);
    const b = stat(r2.mean, r2.variance);
    rows.push({ k, a, b });
    console.log(
      `sigma ${sigma} input ${k}: propagate mean err ${a.err.toFixed(4)} sd, var/MC ${a.lo.toFixed(3)}-${a.hi.toFixed(3)} | two-stage mean err ${b.err.toFixed(4)} sd, var/MC ${b.lo.toFixed(3)}-${b.hi.toFixed(3)}`,
    );
  }
  await two.release();
  const pe = rows.map((r) => r.a.err);
  const te = rows.map((r) => r.b.err);
  console.log(
    `sigma ${sigma} summary (MC standard error of a mean ${(1 / Math.sqrt(samples)).toFixed(4)} sd): propagate mean err median ${median(pe).toFixed(4)} worst ${Math.max(...pe).toFixed(4)}, var/MC ${Math.min(...rows.map((r) => r.a.lo)).toFixed(3)}-${Math.max(...rows.map((r) => r.a.hi)).toFixed(3)}; two-stage mean err median ${median(te).toFixed(4)} worst ${Math.max(...te).toFixed(4)}, var/MC ${Math.min(...rows.map((r) => r.b.lo)).toFixed(3)}-${Math.max(...rows.map((r) => r.b.hi)).toFixed(3)}; median err ratio two-stage/propagate ${(median(te) / median(pe)).toFixed(1)}x`,
  );
  console.log(
    `sigma ${sigma} CPU s per input: propagate ${(tp / digits).toFixed(3)}, two-stage ${(tt / digits).toFixed(3)}, MC ${(tm / digits).toFixed(3)}; ratio propagate/two-stage ${(tp / tt).toFixed(2)}, MC/propagate ${(tm / tp).toFixed(1)}`,
  );
}
await prop.release();
