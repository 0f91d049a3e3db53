// bench/propagate: moment propagation through every layer vs two-stage linearization vs Monte Carlo
// on the bundled LeNet, from one run: per digit the mean error (in MC output-sd units, worst over
// the 10 logits) and the variance ratio range (analytic / MC) of each method, their medians and
// worsts, and the CPU-time ratio propagate / two-stage / MC per digit.
// Usage: npm run build && node bench/propagate.mjs [digits=20] [mcSamples=75000] [sigmas=8,32] [firstDigit=50]
// (digits are taken from fixtures/mnist/digits-100.npy starting at firstDigit: held out from the tests' 0-2)
import { loadModel } from '../dist/onnx/load.js';
import { Analyzer } from '../dist/analyze.js';
import { readNpy, npyToFloat32 } from '../dist/data/npy.js';
import { monteCarloMoments } from '../dist/moments/montecarlo.js';
import { createPropagator } from '../dist/propagate/index.js';
import { cpus } from 'node:os';

const digits = Number(process.argv[2] ?? 20);
const samples = Number(process.argv[3] ?? 75000);
const sigmas = (process.argv[4] ?? '8,32').split(',').map(Number);
const first = Number(process.argv[5] ?? 50);
const model = loadModel(new URL('../fixtures/lenet.onnx', import.meta.url).pathname);
const xs = npyToFloat32(readNpy(new URL('../fixtures/mnist/digits-100.npy', import.meta.url).pathname));
const median = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

console.log(
  `machine: ${cpus().length} cores, node ${process.version}; LeNet, digits ${first}..${first + digits - 1}, Monte Carlo ${samples} samples, threads 1`,
);
const prop = await createPropagator(model, { threads: 1 });
console.log(`propagate plan: ${prop.plan.join(' -> ')}`);
for (const sigma of sigmas) {
  const noise = { kind: 'isotropic', sigma };
  const two = await Analyzer.create(model, { noise, variance: 'exact', flips: false, probabilitySamples: 0, threads: 1, method: 'two-stage' });
  // warm-up, not timed: six inputs each (V8 optimizes propagate's loops over the first few calls,
  // ~1-2 s in all, and the first call at a noise fills the noise-only caches; a dataset run pays
  // this once)
  for (const w of [0, 1, 2, 3, 4, 5]) {
    await prop.moments(xs.subarray(w * 784, (w + 1) * 784), noise);
    await two.analyzeInput(xs.subarray(w * 784, (w + 1) * 784), w);
  }
  const rows = [];
  let tp = 0;
  let tt = 0;
  let tm = 0;
  for (let k = first; k < first + digits; k++) {
    const x = xs.subarray(k * 784, (k + 1) * 784);
    let t = cpu();
    const p = await prop.moments(x, noise);
    tp += cpu() - t;
    t = cpu();
    const r2 = await two.analyzeInput(x, k);
    tt += cpu() - t;
    t = cpu();
    const mc = await monteCarloMoments((b, c) => two.linearizer.evaluate(b, c), 10, Float64Array.from(x), noise, { samples, batchSize: 2500, seed: 1000 + k });
    tm += cpu() - t;
    const stat = (mean, variance) => {
      let err = 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < 10; i++) {
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
      `sigma ${sigma} digit ${k}: propagate mean err ${a.err.toFixed(4)} sd, var/MC ${a.lo.toFixed(3)}-${a.hi.toFixed(3)} | two-stage mean err ${b.err.toFixed(4)} sd, var/MC ${b.lo.toFixed(3)}-${b.hi.toFixed(3)}`,
    );
  }
  await two.release();
  const pe = rows.map((r) => r.a.err);
  const te = rows.map((r) => r.b.err);
  console.log(
    `sigma ${sigma} summary (MC standard error of a mean ${(1 / Math.sqrt(samples)).toFixed(4)} sd): propagate mean err median ${median(pe).toFixed(4)} worst ${Math.max(...pe).toFixed(4)}, var/MC ${Math.min(...rows.map((r) => r.a.lo)).toFixed(3)}-${Math.max(...rows.map((r) => r.a.hi)).toFixed(3)}; two-stage mean err median ${median(te).toFixed(4)} worst ${Math.max(...te).toFixed(4)}, var/MC ${Math.min(...rows.map((r) => r.b.lo)).toFixed(3)}-${Math.max(...rows.map((r) => r.b.hi)).toFixed(3)}; median err ratio two-stage/propagate ${(median(te) / median(pe)).toFixed(1)}x`,
  );
  console.log(
    `sigma ${sigma} CPU s per digit: propagate ${(tp / digits).toFixed(3)}, two-stage ${(tt / digits).toFixed(3)}, MC ${(tm / digits).toFixed(3)}; ratio propagate/two-stage ${(tp / tt).toFixed(2)}, MC/propagate ${(tm / tp).toFixed(1)}`,
  );
}
await prop.release();
