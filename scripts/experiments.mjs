#!/usr/bin/env node
/**
 * Regenerates the numbers of docs/RESULTS.md (the paper's experiments on the bundled LeNet and the
 * synthetic nets). Needs `npm run build` first.
 *
 *   node scripts/experiments.mjs OUT [stage ...]     run stages (default: all), outputs under OUT/
 *   node scripts/experiments.mjs OUT --tables        print the markdown tables from OUT/
 *   node scripts/experiments.mjs OUT figures         copy / redraw the pictures of docs/RESULTS.md into docs/figures/
 *
 * Every stage is one or more `netmoments` commands (printed before they run, and the same as in
 * docs/RESULTS.md), except `figure3-check`, which samples the real model through the library to
 * check the sensitivity maps' flip probabilities. On 2 shared CPU cores the whole run takes about
 * two hours; each stage can be run alone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const OUT = args[0];
if (!OUT) {
  process.stderr.write('usage: node scripts/experiments.mjs OUT [stage ...] | OUT --tables\n');
  process.exit(2);
}
const DIGITS = 'fixtures/mnist/digits-100.npy';
const LABELS = 'fixtures/mnist/labels-100.npy';
const LENET = 'fixtures/lenet.onnx';

/** Stage name -> list of netmoments argument lists ({OUT} is replaced). */
const STAGES = {
  table1: [
    ['tightness', LENET, '--data', DIGITS, '--sigma', '8', '--runs', '100', '--mc', '10000', '--out-dir', '{OUT}/table1-sigma8'],
    ['tightness', LENET, '--data', DIGITS, '--sigma', '32', '--runs', '50', '--mc', '10000', '--out-dir', '{OUT}/table1-sigma32'],
  ],
  figure2: [['tightness', '--paper', '--runs', '30', '--mc', '10000', '--out-dir', '{OUT}/figure2']],
  'figure2-mean': [['tightness', '--paper', '--runs', '30', '--mc', '10000', '--mean-sd', '1', '--out-dir', '{OUT}/figure2-mean1']],
  'figure3-sweep': ['250', '500', '1000'].map((s) => [
    'sensitivity',
    LENET,
    '--data',
    DIGITS,
    '--labels',
    LABELS,
    '--count',
    '20',
    '--stride',
    '3',
    '--sigma',
    s,
    '--out-dir',
    `{OUT}/figure3-sweep-${s}`,
  ]),
  figure3: [['sensitivity', LENET, '--data', DIGITS, '--labels', LABELS, '--stride', '2', '--sigma', '500', '--out-dir', '{OUT}/figure3']],
  table2: [
    ['attack', LENET, '--universal', '--data', DIGITS, '--labels', LABELS, '--count', '50', '--beta', '60', '--iters', '150', '--out-dir', '{OUT}/universal'],
    [
      'fooling',
      LENET,
      '--data',
      DIGITS,
      '--start',
      '50',
      '--count',
      '50',
      '--perturbation',
      '{OUT}/universal/mu.npy',
      '--sigma',
      '1',
      '--mc',
      '1000',
      '--out',
      '{OUT}/table2-heldout.json',
    ],
    [
      'fooling',
      LENET,
      '--data',
      DIGITS,
      '--count',
      '50',
      '--perturbation',
      '{OUT}/universal/mu.npy',
      '--sigma',
      '1',
      '--mc',
      '1000',
      '--out',
      '{OUT}/table2-train.json',
    ],
  ],
  'table2-small': [
    [
      'attack',
      LENET,
      '--universal',
      '--data',
      DIGITS,
      '--labels',
      LABELS,
      '--count',
      '50',
      '--beta',
      '15',
      '--iters',
      '150',
      '--out-dir',
      '{OUT}/universal-beta15',
    ],
    [
      'fooling',
      LENET,
      '--data',
      DIGITS,
      '--start',
      '50',
      '--count',
      '50',
      '--perturbation',
      '{OUT}/universal-beta15/mu.npy',
      '--sigma',
      '1',
      '--mc',
      '1000',
      '--out',
      '{OUT}/table2-beta15-heldout.json',
    ],
  ],
  attacks: [
    ['attack', LENET, '--input', DIGITS, '--count', '20', '--target', '3', '--out-dir', '{OUT}/eq3-paper'],
    ['attack', LENET, '--input', DIGITS, '--count', '20', '--target', '3', '--rounds', '5', '--iters', '60', '--out-dir', '{OUT}/eq3-relinearized'],
    ['attack', LENET, '--input', DIGITS, '--labels', LABELS, '--count', '20', '--untargeted', '--out-dir', '{OUT}/eq4-paper'],
    [
      'attack',
      LENET,
      '--input',
      DIGITS,
      '--labels',
      LABELS,
      '--count',
      '20',
      '--untargeted',
      '--rounds',
      '3',
      '--iters',
      '100',
      '--out-dir',
      '{OUT}/eq4-relinearized',
    ],
  ],
};

function run(argv) {
  const a = argv.map((s) => s.replaceAll('{OUT}', OUT));
  process.stderr.write(`\n$ netmoments ${a.join(' ')}\n`);
  const t = Date.now();
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'netmoments.js'), ...a], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  process.stderr.write(`(exit ${r.status}, ${((Date.now() - t) / 1000).toFixed(0)} s)\n`);
  if (r.status !== 0) process.exit(r.status ?? 3);
}

/**
 * figure3-check: for each sigma of the sweep (stride 3), the first 10 digits, the window with the
 * largest closed-form P(flip) and the window at the median, sampled 2000 times through the real
 * model: the fraction of samples whose class differs from the clean class, against the
 * closed-form P(flip) and the mean's decision.
 */
async function figure3Check() {
  const { loadModel, Linearizer, GaussianSampler, Rng, openDataset, windowIndices } = await import(join(ROOT, 'dist', 'index.js'));
  const { parseNpy, npyToFloat64 } = await import(join(ROOT, 'dist', 'data', 'npy.js'));
  const model = loadModel(join(ROOT, LENET));
  const lin = await Linearizer.create(model, { flips: false });
  const ds = openDataset(join(ROOT, DIGITS), { inputShape: [1, 28, 28] });
  const out = [];
  try {
    for (const sweep of ['250', '500', '1000']) {
      const dir = join(OUT, `figure3-sweep-${sweep}`);
      if (!existsSync(join(dir, 'sensitivity.json'))) continue;
      const rep = JSON.parse(readFileSync(join(dir, 'sensitivity.json'), 'utf8'));
      const flip = npyToFloat64(parseNpy(readFileSync(join(dir, 'flip-probability.npy'))));
      const fooled = npyToFloat64(parseNpy(readFileSync(join(dir, 'fooling-mean.npy'))));
      const { rows, cols } = rep.positions;
      const { stride, windowSize: w, sigma } = rep.noise;
      const P = rows * cols;
      for (let k = 0; k < 10; k++) {
        const im = rep.images[k];
        const f = flip.subarray(k * P, (k + 1) * P);
        const order = Array.from({ length: P }, (_, t) => t).sort((a, b) => f[b] - f[a]);
        for (const [which, t] of [
          ['max', order[0]],
          ['median', order[Math.floor(P / 2)]],
        ]) {
          const r = Math.floor(t / cols) * stride;
          const c = (t % cols) * stride;
          const idx = windowIndices([1, 28, 28], { row: r, col: c, height: w, width: w });
          const variance = new Float64Array(784);
          for (const i of idx) variance[i] = sigma * sigma;
          const sampler = new GaussianSampler(Float64Array.from(ds.get(im.input)), { kind: 'diagonal', variance });
          const rng = new Rng(1000 + k);
          const N = 2000;
          let away = 0;
          for (let done = 0; done < N; done += 500) {
            const xs = new Float32Array(500 * 784);
            sampler.sample(rng, xs, 500);
            const y = await lin.evaluate(xs, 500);
            for (let s = 0; s < 500; s++) {
              let best = 0;
              for (let j = 1; j < 10; j++) if (y[s * 10 + j] > y[s * 10 + best]) best = j;
              if (best !== im.cleanClass) away++;
            }
          }
          out.push({ sigma, input: im.input, which, row: r, col: c, flipProbability: f[t], foolingMean: fooled[k * P + t], sampled: away / N, samples: N });
        }
      }
    }
  } finally {
    await lin.release();
  }
  writeFileSync(join(OUT, 'figure3-check.json'), `${JSON.stringify(out, null, 2)}\n`);
  process.stderr.write(`wrote ${join(OUT, 'figure3-check.json')}\n`);
}

/** figures: the pictures docs/RESULTS.md shows, into docs/figures/ (tightness SVGs redrawn from the JSON). */
async function figures() {
  const { tightnessPlots } = await import(join(ROOT, 'dist', 'experiments', 'tightness.js'));
  const { copyFileSync } = await import('node:fs');
  const dest = join(ROOT, 'docs', 'figures');
  mkdirSync(dest, { recursive: true });
  const svg = [
    ['table1-sigma8', 'lenet-relu2-data', ['variance', 'variance-paper', 'mean'], 'table1'],
    ['figure2-mean1', 'fc-2-relu1-var0.0001-mean1', ['variance', 'variance-paper'], 'figure2'],
    ['figure2-mean1', 'conv-4-relu1-var1-mean1', ['variance', 'mean'], 'figure2'],
  ];
  for (const [dir, study, kinds, prefix] of svg) {
    const rep = JSON.parse(readFileSync(join(OUT, dir, 'tightness.json'), 'utf8'));
    const s = rep.studies.find((x) => x.name === study);
    const plots = tightnessPlots(s);
    for (const k of kinds) writeFileSync(join(dest, `${prefix}-${study}-${k}.svg`), plots[`${study}-${k}.svg`]);
  }
  const png = [
    ['figure3/flip-probability.png', 'figure3-flip-probability.png'],
    ['figure3/fooling-mean.png', 'figure3-fooling-mean.png'],
    ['eq3-relinearized/attack-0.png', 'eq3-attack-0.png'],
    ['eq4-paper/attack-2.png', 'eq4-attack-2.png'],
    ['universal/universal.png', 'universal.png'],
  ];
  for (const [src, name] of png) copyFileSync(join(OUT, src), join(dest, name));
  process.stderr.write(`wrote ${svg.length + png.length} figure groups to ${dest}\n`);
}

// ---------------------------------------------------------------------------------------------
// markdown tables

const f = (v, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : Number(v.toPrecision(d)).toString());
const pct = (v, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : `${Number((100 * v).toPrecision(d))}%`);
const read = (p) => (existsSync(join(OUT, p)) ? JSON.parse(readFileSync(join(OUT, p), 'utf8')) : null);

function tables() {
  const lines = [];
  for (const t of ['table1-sigma8', 'table1-sigma32']) {
    const r = read(`${t}/tightness.json`);
    if (!r) continue;
    const s = r.studies[0];
    lines.push(`\n### ${t}: ${s.runs} digits, sigma ${s.noise.sigma}, ${s.mc} MC samples, ReLU ${s.split.index}\n`);
    lines.push('| logit | MC/analytic mean | mean error (output sd) | MC/analytic variance, exact | MC/analytic variance, paper |');
    lines.push('|---|---|---|---|---|');
    for (const row of s.table) {
      lines.push(
        `| ${row.output} | ${f(row.meanRatio.mean)} ± ${f(row.meanRatio.std, 2)} | ${f(row.meanErrorSd.mean)} ± ${f(row.meanErrorSd.std, 2)} | ${f(row.varianceRatio.mean)} ± ${f(row.varianceRatio.std, 2)} | ${f(row.variancePaperRatio.mean)} ± ${f(row.variancePaperRatio.std, 2)} |`,
      );
    }
    const fl = s.runDetails.map((d) => d.expectedFlips);
    const layers = fl[0].map((l, i) => `${l.node} ${f(fl.reduce((a, x) => a + x[i].expectedFlips, 0) / fl.length)}/${l.units}`);
    lines.push(
      `\nFit through the origin over all (digit, logit) points: mean slope ${f(s.fit.mean.slope, 4)} (R² ${f(s.fit.mean.r2, 4)}), exact variance ${f(s.fit.variance.slope, 4)} (R² ${f(s.fit.variance.r2, 3)}), paper variance ${f(s.fit.variancePaper.slope, 4)} (R² ${f(s.fit.variancePaper.r2, 3)}). Average expected state changes under the noise: ${layers.join(', ')}.`,
    );
  }
  for (const t of ['figure2', 'figure2-mean1']) {
    const r = read(`${t}/tightness.json`);
    if (!r) continue;
    lines.push(
      `\n### ${t}: ${r.run.runs} covariance draws per cell, ${r.run.mc} MC samples, ReLU ${r.studies[0].split.index}${t.endsWith('mean1') ? ', input mean ~ N(0, I), linearized there' : ', zero input (as in the paper)'}\n`,
    );
    lines.push(
      '| net | max variance | mean slope (R²) | exact variance slope (R²) | paper variance slope (R²) | MC/analytic variance, exact | MC/analytic variance, paper | expected flips (other ReLUs) |',
    );
    lines.push('|---|---|---|---|---|---|---|---|');
    for (const s of r.studies) {
      const row = s.table[0];
      const flips = s.runDetails.map((d) => d.expectedFlips.filter((l) => !l.isSplit).reduce((a, l) => a + l.expectedFlips, 0));
      const units = s.runDetails[0].expectedFlips.filter((l) => !l.isSplit).reduce((a, l) => a + l.units, 0);
      lines.push(
        `| ${s.name.split('-relu')[0]} | ${s.noise.maxVariance} | ${f(s.fit.mean.slope)} (${f(s.fit.mean.r2, 2)}) | ${f(s.fit.variance.slope)} (${f(s.fit.variance.r2, 2)}) | ${f(s.fit.variancePaper.slope)} (${f(s.fit.variancePaper.r2, 2)}) | ` +
          `${f(row.varianceRatio.mean)} ± ${f(row.varianceRatio.std, 2)} | ${f(row.variancePaperRatio.mean)} ± ${f(row.variancePaperRatio.std, 2)} | ${f(flips.reduce((a, b) => a + b, 0) / flips.length, 2)}/${units} |`,
      );
    }
  }
  const sweep = ['250', '500', '1000'].map((s) => [s, read(`figure3-sweep-${s}/sensitivity.json`)]).filter(([, r]) => r);
  if (sweep.length) {
    lines.push('\n### Figure 3 sweep: 20 digits, 7x7 windows, stride 3 (64 positions)\n');
    lines.push('| sigma | fooled by the mean (pairs) | average P(flip) | images with some window fooled by the mean | images with some window P(flip) > 0.5 |');
    lines.push('|---|---|---|---|---|');
    for (const [s, r] of sweep) {
      lines.push(
        `| ${s} | ${pct(r.overall.foolingRateMean)} | ${f(r.overall.meanFlipProbability)} | ${r.images.filter((i) => i.foolingRateMean > 0).length}/${r.images.length} | ${r.images.filter((i) => i.mostSensitiveWindow.flipProbability > 0.5).length}/${r.images.length} |`,
      );
    }
  }
  const fig3 = read('figure3/sensitivity.json');
  if (fig3) {
    lines.push(
      `\n### Figure 3: ${fig3.overall.images} digits, sigma ${fig3.noise.sigma}, stride ${fig3.noise.stride} (${fig3.positions.rows}x${fig3.positions.cols} positions)\n`,
    );
    lines.push('| class | digits | fooled by the mean | average P(flip) |');
    lines.push('|---|---|---|---|');
    for (const c of fig3.classes) lines.push(`| ${c.class} | ${c.images} | ${pct(c.foolingRateMean)} | ${f(c.meanFlipProbability)} |`);
  }
  const chk = read('figure3-check.json');
  if (chk) {
    lines.push(
      '\n### Figure 3 check: closed-form P(flip) against 2000 samples through the real model (first 10 digits, stride 3; per sigma, the window of largest P(flip) and the median window)\n',
    );
    lines.push(
      '| sigma | window | fooled by the mean | mean closed-form P(flip) | mean sampled flip rate | mean abs difference | pairs with sampled rate > 0.5 |',
    );
    lines.push('|---|---|---|---|---|---|---|');
    for (const sg of [...new Set(chk.map((c) => c.sigma))]) {
      for (const which of ['max', 'median']) {
        const g = chk.filter((c) => c.sigma === sg && c.which === which);
        const avg = (fn) => g.reduce((a, c) => a + fn(c), 0) / g.length;
        lines.push(
          `| ${sg} | ${which} | ${g.filter((c) => c.foolingMean).length}/${g.length} | ${f(avg((c) => c.flipProbability))} | ${f(avg((c) => c.sampled))} | ${f(avg((c) => Math.abs(c.sampled - c.flipProbability)))} | ${g.filter((c) => c.sampled > 0.5).length}/${g.length} |`,
        );
      }
    }
  }
  for (const u of ['universal', 'universal-beta15']) {
    const uni = read(`${u}/attack.json`);
    if (!uni) continue;
    lines.push(`\n### ${u} (attack --universal): ${uni.results.length} digits, beta ${uni.box.beta}, sigma² ${f(uni.sigma2)}\n`);
    lines.push(
      `Margin ${f(uni.objectiveStart)} -> ${f(uni.objective)}; fooling on the optimization digits: predicted ${pct(uni.predictedFoolingRate)}, real at x + mu ${pct(uni.realFoolingRate)}, sampled ${pct(uni.sampledFoolingRate)}; |mu|_inf ${f(uni.mu.linf)}, |mu|_2 ${f(uni.mu.l2)}.`,
    );
  }
  for (const t of ['table2-train', 'table2-heldout', 'table2-beta15-heldout']) {
    const r = read(`${t}.json`);
    if (!r) continue;
    lines.push(`\n### ${t}: ${r.images} digits, sigma ${r.noise.sigma}\n`);
    lines.push(
      '| predicted fooling (mean) | expected (P(flip)) | real (x + P) | sampled (x + P + noise) | agreement | missed | false alarms | top-1 | top-2 | top-3 | top-4 | top-5 |',
    );
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    lines.push(
      `| ${pct(r.predictedFoolingRate)} | ${pct(r.expectedFoolingRate)} | ${pct(r.realFoolingRate)} | ${pct(r.sampledFoolingRate)} | ${pct(r.agreement)} | ${r.missed} | ${r.falseAlarms} | ${r.topK.map((t2) => pct(t2.accuracy)).join(' | ')} |`,
    );
    if (r.topKMonteCarlo) lines.push(`\nTop-k against the Monte Carlo means: ${r.topKMonteCarlo.map((t2) => pct(t2.accuracy)).join(', ')}.`);
  }
  for (const t of ['eq3-paper', 'eq3-relinearized', 'eq4-paper', 'eq4-relinearized']) {
    const r = read(`${t}/attack.json`);
    if (!r) continue;
    const res = r.results;
    const nontrivial = res.filter((x) => (r.mode === 'targeted' ? x.cleanClass !== x.targetClass : x.cleanClass === x.trueClass));
    const ok = nontrivial.filter((x) => x.success);
    const surrogateOk = nontrivial.filter((x) => x.objective < 0);
    const med = (a) => (a.length ? a.slice().sort((p, q) => p - q)[Math.floor(a.length / 2)] : NaN);
    lines.push(
      `\n### ${t}: ${r.optimizer.linearization}; beta ${r.box.beta}, alpha ${r.box.alpha}, var-max ${r.box.varMax}\n\n` +
        `${ok.length}/${nontrivial.length} digits verified (>= 50% of ${r.run.verify} samples ${r.mode === 'targeted' ? 'classified as the target' : 'away from the true class'}); ` +
        `the closed-form objective is < 0 on ${surrogateOk.length}/${nontrivial.length}; real model at x + mu agrees on ${nontrivial.filter((x) => (r.mode === 'targeted' ? x.realAtMean.predicted === x.targetClass : x.realAtMean.predicted !== x.trueClass)).length}/${nontrivial.length}; ` +
        `median sigma² ${f(med(res.map((x) => x.sigma2)))}, median verified rate ${pct(med(nontrivial.map((x) => x.verification.rate)))}, median out-of-range fraction of x + mu ${pct(med(res.map((x) => x.outOfRange)))}.`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (args[1] === '--tables') tables();
else {
  mkdirSync(OUT, { recursive: true });
  const stages = args.length > 1 ? args.slice(1) : [...Object.keys(STAGES), 'figure3-check', 'figures'];
  for (const s of stages) {
    if (s === 'figure3-check') await figure3Check();
    else if (s === 'figures') await figures();
    else if (STAGES[s]) for (const a of STAGES[s]) run(a);
    else {
      process.stderr.write(`unknown stage '${s}' (stages: ${[...Object.keys(STAGES), 'figure3-check', 'figures'].join(', ')})\n`);
      process.exit(2);
    }
  }
}
