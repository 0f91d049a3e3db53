// bench/analyze: the cost of the analytic answer against the sampling it replaces, in one run.
//   - median wall time of analyze per LeNet digit (mean + exact and paper variance + covariance +
//     class probabilities + expected flips, last ReLU, linearized at the image, sigma 8)
//   - the same for mean + exact variance + covariance only (the definition)
//   - the time of 75,000-sample Monte Carlo through the real model on one digit (the paper's count)
//   - JVP vs central finite-difference Jacobian of the bottom part (784 columns)
// Usage: npm run build && node bench/analyze.mjs [digits=10]
import { loadModel } from '../dist/onnx/load.js';
import { Analyzer } from '../dist/analyze.js';
import { readNpy, npyToFloat32 } from '../dist/data/npy.js';
import { monteCarloMoments } from '../dist/moments/montecarlo.js';
import { sharedOrtLinearAlgebra } from '../dist/runtime/linalg.js';
import { createJacobianEngine } from '../dist/linearize/jacobian.js';
import { splitModelAt } from '../dist/onnx/split.js';
import { cpus } from 'node:os';

const digits = Number(process.argv[2] ?? 10);
const model = loadModel(new URL('../fixtures/lenet.onnx', import.meta.url).pathname);
const xs = npyToFloat32(readNpy(new URL('../fixtures/mnist/digits-100.npy', import.meta.url).pathname));
const noise = { kind: 'isotropic', sigma: 8 };
const median = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];

const an = await Analyzer.create(model, { relu: 2, noise, at: 'input', linalg: sharedOrtLinearAlgebra() });
await an.analyzeInput(xs.subarray(0, 784), 0); // warm-up
const times = [];
for (let k = 0; k < digits; k++) {
  const t = performance.now();
  await an.analyzeInput(xs.subarray(k * 784, (k + 1) * 784), k);
  times.push((performance.now() - t) / 1000);
}
// the quantity: mean + exact variance + covariance only (no paper variance, class
// probabilities or expected flips), through the library
const core = await Analyzer.create(model, {
  relu: 2,
  noise,
  at: 'input',
  variance: 'exact',
  flips: false,
  probabilitySamples: 0,
  linalg: sharedOrtLinearAlgebra(),
});
await core.analyzeInput(xs.subarray(0, 784), 0);
const coreTimes = [];
for (let k = 0; k < digits; k++) {
  const t = performance.now();
  await core.analyzeInput(xs.subarray(k * 784, (k + 1) * 784), k);
  coreTimes.push((performance.now() - t) / 1000);
}
await core.release();
const x0 = xs.subarray(0, 784);
let t = performance.now();
await monteCarloMoments((b, c) => an.linearizer.evaluate(b, c), 10, Float64Array.from(x0), noise, { samples: 75000, batchSize: 2500, seed: 1 });
const mcSecs = (performance.now() - t) / 1000;
await an.release();

const split = await splitModelAt(model.graph, 2, { file: model.file });
const jac = {};
for (const mode of ['jvp', 'fd']) {
  const e = await createJacobianEngine(split.bottom, { mode, outputs: [split.relu.input] });
  await e.jacobian(x0); // warm-up
  const runs = [];
  for (let i = 0; i < 3; i++) {
    t = performance.now();
    await e.jacobian(x0);
    runs.push((performance.now() - t) / 1000);
  }
  jac[mode] = median(runs);
  await e.release();
}

const a = median(times);
console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}`);
console.log(
  `analyze, LeNet ReLU 2 (p = 500), sigma 8, linearized at the image: median ${a.toFixed(3)} s per digit over ${digits} digits (min ${Math.min(...times).toFixed(3)}, max ${Math.max(...times).toFixed(3)})`,
);
console.log(`Monte Carlo, 75,000 samples through the real model, one digit: ${mcSecs.toFixed(2)} s`);
console.log(`ratio Monte Carlo / analytic: ${(mcSecs / a).toFixed(1)}x`);
const c = median(coreTimes);
console.log(
  `mean + exact variance + covariance only (no paper variance, class probabilities, flips): median ${c.toFixed(3)} s per digit; ratio Monte Carlo / that: ${(mcSecs / c).toFixed(1)}x`,
);
console.log(
  `bottom Jacobian (500 x 784): JVP ${jac.jvp.toFixed(3)} s, central finite differences ${jac.fd.toFixed(3)} s, ratio FD/JVP ${(jac.fd / jac.jvp).toFixed(2)}x`,
);
