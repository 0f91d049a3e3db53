// The LeNet table of docs/RESULTS.md: at each ReLU of the bundled LeNet, over held-out digits at
// sigma 8 (pixel units), per logit: mean error in output standard deviations |MC mean - analytic
// mean| / MC sd, and MC variance / analytic variance for the exact and the paper's variance.
// Usage: npm run build && node bench/lenet-relus.mjs [digits=20] [mcSamples=10000] [sigma=8]
import { loadModel } from '../dist/onnx/load.js';
import { Analyzer } from '../dist/analyze.js';
import { readNpy, npyToFloat32 } from '../dist/data/npy.js';
import { monteCarloMoments } from '../dist/moments/montecarlo.js';
import { sharedOrtLinearAlgebra } from '../dist/runtime/linalg.js';

const digits = Number(process.argv[2] ?? 20);
const samples = Number(process.argv[3] ?? 10000);
const sigma = Number(process.argv[4] ?? 8);
const model = loadModel(new URL('../fixtures/lenet.onnx', import.meta.url).pathname);
const xs = npyToFloat32(readNpy(new URL('../fixtures/mnist/digits-100.npy', import.meta.url).pathname));
const linalg = sharedOrtLinearAlgebra();
const noise = { kind: 'isotropic', sigma };

// Monte Carlo once per digit (it does not depend on the split)
const first = await Analyzer.create(model, { relu: 2, noise, flips: false });
const mc = [];
for (let k = 0; k < digits; k++) {
  const x = xs.subarray(k * 784, (k + 1) * 784);
  mc.push(await monteCarloMoments((b, c) => first.linearizer.evaluate(b, c), 10, Float64Array.from(x), noise, { samples, batchSize: 2500, seed: 1000 + k }));
}
await first.release();

const rows = [];
for (const relu of [0, 1, 2]) {
  const an = await Analyzer.create(model, { relu, noise, linalg });
  const err = Array.from({ length: 10 }, () => []);
  const rExact = Array.from({ length: 10 }, () => []);
  const rPaper = Array.from({ length: 10 }, () => []);
  const flips = [];
  let secs = 0;
  for (let k = 0; k < digits; k++) {
    const x = xs.subarray(k * 784, (k + 1) * 784);
    const t = Date.now();
    const r = await an.analyzeInput(x, k);
    secs += (Date.now() - t) / 1000;
    flips.push(
      r.linearization.expectedFlips
        .filter((l) => !l.isSplit)
        .map((l) => `${l.node}:${l.expectedFlips.toFixed(0)}`)
        .join(' '),
    );
    for (let i = 0; i < 10; i++) {
      const sd = Math.sqrt(mc[k].variance[i]);
      err[i].push(Math.abs(mc[k].mean[i] - r.mean[i]) / sd);
      rExact[i].push(mc[k].variance[i] / r.variance[i]);
      rPaper[i].push(mc[k].variance[i] / r.variancePaper[i]);
    }
  }
  await an.release();
  const mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
  const sd = (a) => Math.sqrt(mean(a.map((v) => (v - mean(a)) ** 2)));
  rows.push({
    relu,
    width: an.split.width,
    err: err.map(mean),
    rExact: rExact.map(mean),
    rExactSd: rExact.map(sd),
    rPaper: rPaper.map(mean),
    rPaperSd: rPaper.map(sd),
    secs: secs / digits,
    flips: flips[0],
  });
}
console.log(
  `LeNet (fixtures/lenet.onnx), ${digits} held-out digits (fixtures/mnist/digits-100.npy, first ${digits}), sigma ${sigma} pixel units, linearized at the image, Monte Carlo ${samples} samples per digit\n`,
);
console.log('| ReLU (width) | quantity | ' + Array.from({ length: 10 }, (_, i) => `logit ${i}`).join(' | ') + ' | all |');
console.log('|---|---|' + '---|'.repeat(11));
const f = (v) => v.toFixed(3);
const avg = (a) => a.reduce((s, v) => s + v, 0) / a.length;
for (const r of rows) {
  console.log(`| ${r.relu} (${r.width}) | mean error / MC sd | ${r.err.map(f).join(' | ')} | ${f(avg(r.err))} |`);
  console.log(`| | MC var / exact var | ${r.rExact.map((v, i) => `${f(v)} ± ${f(r.rExactSd[i])}`).join(' | ')} | ${f(avg(r.rExact))} |`);
  console.log(`| | MC var / paper var | ${r.rPaper.map((v, i) => `${f(v)} ± ${f(r.rPaperSd[i])}`).join(' | ')} | ${f(avg(r.rPaper))} |`);
}
console.log('');
for (const r of rows)
  console.log(
    `ReLU ${r.relu}: analytic ${r.secs.toFixed(2)} s per digit (mean, exact + paper variance, covariance, flips); expected state changes elsewhere on digit 0: ${r.flips}`,
  );
