/**
 * `netmoments attack MODEL --input X (--target J | --untargeted) [--alpha 0.04] [--beta B] [--var-max 2] --out-dir DIR`
 * and `netmoments attack MODEL --universal --data D --out-dir DIR`: Gaussian noise that fools the
 * model, found with the closed-form mean and its gradients (the paper's Eq. 3 and Eq. 4; see
 * src/experiments/attack.ts), verified by sampling through the real model. Writes DIR/attack.json
 * (netmoments.attack/1), DIR/mu.npy (the noise means) and PNGs of clean / noise / noisy inputs.
 */
import type { CommandModule } from 'yargs';
import { VERSION, seedFor } from '../analyze.js';
import { imageGeometry, parseLayoutChoice, pixelIndex, requireImageGeometry, type ImageGeometry, type LayoutChoice } from '../data/layout.js';
import { encodeNpy } from '../data/npy.js';
import { preprocessingFromMetadata } from '../data/preprocess.js';
import { NetmomentsError } from '../errors.js';
import { Linearizer } from '../linearize/linearizer.js';
import { Rng } from '../moments/montecarlo.js';
import { loadModel, type LoadedModel } from '../onnx/load.js';
import { Canvas } from '../report/heatmap.js';
import { progressBar } from '../report/progress.js';
import { writeFilesAtomic } from '../report/write.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { firstIndices, numberIn, sig, toJson, wholeNumber } from '../experiments/cli.js';
import { Attacker, type AttackMode, type AttackResult } from '../experiments/attack.js';
import { modelRunOptions, openInputs, preprocessingFor, stderrWriter, type ModelRunArgs } from './common.js';

interface AttackArgs extends ModelRunArgs {
  model: string;
  input?: string;
  data?: string;
  labels?: string;
  count?: number;
  start: number;
  target?: number;
  untargeted?: boolean;
  universal?: boolean;
  alpha?: number;
  beta?: number;
  'var-max': number;
  iters: number;
  rounds: number;
  temperature: number;
  kappa: number;
  verify?: number;
  'valid-range'?: boolean;
  seed: number;
  'out-dir': string;
  quiet?: boolean;
}

/** The paper's MNIST box: beta 30 for Eq. 3, 550 for Eq. 4 (pixel units, the LeNet's input units). */
export const PAPER_BETA = { targeted: 30, untargeted: 550, universal: 30 } as const;
export const PAPER_ALPHA = { targeted: 1, untargeted: 0.04, universal: 1 } as const;

interface Display {
  scale: number;
  offset: number;
  /** The valid input range in model units, when the model declares its preprocessing (or --scale/--offset). */
  range?: { lo: number; hi: number };
}

function displayFor(model: LoadedModel, args: ModelRunArgs): Display {
  const meta = preprocessingFromMetadata(model.graph.metadata, model.file);
  const p = preprocessingFor(model, args);
  if (meta || args.scale !== undefined || args.offset !== undefined) {
    const a = p.offset,
      b = p.offset + p.scale;
    return { ...p, range: { lo: Math.min(a, b), hi: Math.max(a, b) } };
  }
  return p;
}

/** One input drawn as an image: 1 channel (or 4, or anything but 3) in gray from channel 0, 3 channels in RGB. */
function drawImage(cv: Canvas, x0: number, y0: number, v: ArrayLike<number>, g: ImageGeometry, map: (t: number) => number, zoom: number): void {
  for (let r = 0; r < g.height; r++)
    for (let c = 0; c < g.width; c++) {
      const px = (ch: number) => {
        const t = map(v[pixelIndex(g, ch, r, c)]);
        return t <= 0 ? 0 : t >= 255 ? 255 : Math.round(t);
      };
      const rgb = g.channels === 3 ? [px(0), px(1), px(2)] : [px(0), px(0), px(0)];
      cv.fill(x0 + c * zoom, y0 + r * zoom, zoom, zoom, rgb);
    }
}

function panelsPng(panels: Array<{ title: string; values: ArrayLike<number>; kind: 'image' | 'noise' }>, g: ImageGeometry, disp: Display): Uint8Array {
  const H = g.height;
  const W = g.width;
  const zoom = Math.max(1, Math.round(112 / Math.max(H, W)));
  const ts = 1;
  const titleH = 7 * ts + 6;
  const pw = Math.max(W * zoom, ...panels.map((p) => p.title.length * 6 * ts));
  const gap = 8;
  const cv = new Canvas(gap + panels.length * (pw + gap), gap + titleH + H * zoom + gap);
  let lo = Infinity,
    hi = -Infinity;
  if (!disp.range)
    for (const p of panels)
      if (p.kind === 'image')
        for (let i = 0; i < p.values.length; i++) {
          lo = Math.min(lo, p.values[i]);
          hi = Math.max(hi, p.values[i]);
        }
  const imageMap = disp.range ? (t: number) => ((t - disp.offset) / disp.scale) * 255 : (t: number) => (hi > lo ? ((t - lo) / (hi - lo)) * 255 : 128);
  panels.forEach((p, i) => {
    const x0 = gap + i * (pw + gap);
    cv.text(x0, gap, p.title, ts);
    let map = imageMap;
    if (p.kind === 'noise') {
      let m = 0;
      for (let k = 0; k < p.values.length; k++) m = Math.max(m, Math.abs(p.values[k]));
      map = (t: number) => 128 + (m > 0 ? (127 * t) / m : 0);
    }
    drawImage(cv, x0, gap + titleH, p.values, g, map, zoom);
  });
  return cv.png();
}

/**
 * The geometry the pictures are drawn in, or undefined (with a note on stderr) when the input is
 * not a picture (a flat [100] input, a 16-channel feature map). An explicit --layout that cannot
 * read the input as an image at all is a usage error naming the model.
 */
function pictureGeometry(shape: number[], choice: LayoutChoice, file: string, warn: (m: string) => void): ImageGeometry | undefined {
  const g = choice === 'auto' ? imageGeometry(shape, choice) : requireImageGeometry(shape, choice, `--layout ${choice}`, file);
  if (g?.picture) return g;
  warn(
    `the model's input [${shape.join(', ')}] is not an image (${g ? `${g.channels} channels` : 'no rows and columns'}): ` +
      'writing no PNG pictures, only mu.npy and attack.json',
  );
  return undefined;
}

/** One draw of the found noise on S: e = mu + sigma eps (0 outside S). */
function noiseSample(mu: Float64Array, S: Int32Array, sigma2: number, seed: number): Float64Array {
  const e = Float64Array.from(mu);
  const rng = new Rng(seed);
  const s = Math.sqrt(sigma2);
  for (const k of S) e[k] += s * rng.normal();
  return e;
}

export const attackCommand: CommandModule<object, AttackArgs> = {
  command: 'attack <model>',
  describe: 'Gaussian noise N(mu, sigma^2 I) that fools the model (Eq. 3 targeted, Eq. 4 untargeted, or one universal mu), verified by sampling',
  builder: (y) =>
    modelRunOptions(y)
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model' })
      .option('input', { type: 'string', describe: 'Input(s) to attack: .npy (model units; one or a batch), .png, idx' })
      .option('data', { type: 'string', describe: 'With --universal: the images the one noise mean is optimized over' })
      .option('labels', { type: 'string', describe: 'Labels file: the true classes (default: the clean prediction)' })
      .option('count', { type: 'number', describe: 'Use N inputs from --start (default: all from there)' })
      .option('start', { type: 'number', default: 0, describe: 'Index of the first input used (0-based)' })
      .option('target', { type: 'number', describe: 'Eq. 3: make this class the most likely' })
      .option('untargeted', { type: 'boolean', describe: 'Eq. 4: move away from the true class, on a random --alpha fraction of the input' })
      .option('universal', { type: 'boolean', describe: 'One noise mean for all inputs of --data: minimizes the average closed-form correct-class margin' })
      .option('alpha', {
        type: 'number',
        describe: 'Fraction of input elements the noise may touch, chosen at random with --seed (default: 0.04 untargeted, else 1)',
      })
      .option('beta', {
        type: 'number',
        describe: "Box |mu_k| <= beta in model units (default: the paper's MNIST values, 30 targeted and universal, 550 untargeted)",
      })
      .option('var-max', { type: 'number', default: 2, describe: 'Noise variance bound: 0 < sigma^2 <= var-max' })
      .option('iters', { type: 'number', default: 300, describe: 'Spectral projected gradient iterations (per round)' })
      .option('rounds', {
        type: 'number',
        default: 1,
        describe: 'Linearizations: 1 linearizes once at the clean image (the paper); more re-linearize at x + mu',
      })
      .option('temperature', { type: 'number', default: 0.1, describe: 'Log-sum-exp smoothing of the max in the objective (logit units)' })
      .option('kappa', { type: 'number', default: 1, describe: 'Universal: clip each margin below at -kappa' })
      .option('verify', { type: 'number', describe: 'Verification samples through the real model per input (default 1000; universal 100)' })
      .option('valid-range', {
        type: 'boolean',
        describe: 'Also keep x + mu inside the input range the model declares (pixels 0..255 mapped by its preprocessing); not in the paper',
      })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the pixel choice, the verification samples and the pictures' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for attack.json, mu.npy and the PNGs' })
      .example('$0 attack fixtures/lenet.onnx --input fixtures/mnist/digit-0.npy --target 3 --out-dir out/eq3', 'Eq. 3: noise that makes the LeNet say 3')
      .example('$0 attack fixtures/lenet.onnx --input fixtures/mnist/digits-100.npy --count 10 --untargeted --out-dir out/eq4', 'Eq. 4 on 4% of the pixels')
      .example(
        '$0 attack fixtures/lenet.onnx --universal --data fixtures/mnist/digits-100.npy --count 50 --beta 60 --out-dir out/universal',
        'one noise mean for 50 digits',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    const modes = [argv.target !== undefined, !!argv.untargeted, !!argv.universal].filter(Boolean).length;
    if (modes !== 1) throw new NetmomentsError('give exactly one of --target J, --untargeted or --universal', { code: 'BAD_USAGE' });
    const mode: AttackMode | 'universal' = argv.universal ? 'universal' : argv.untargeted ? 'untargeted' : 'targeted';
    if (argv.input !== undefined && argv.data !== undefined) throw new NetmomentsError('give --input or --data, not both', { code: 'BAD_USAGE' });
    const source = argv.input ?? argv.data;
    if (source === undefined)
      throw new NetmomentsError(mode === 'universal' ? '--universal needs --data D' : 'name the input(s) to attack with --input', { code: 'BAD_USAGE' });
    const alpha = numberIn('alpha', argv.alpha ?? PAPER_ALPHA[mode], 0, 1, { lo: true });
    const beta = numberIn('beta', argv.beta ?? PAPER_BETA[mode], 0, Number.MAX_VALUE, { lo: true });
    const varMax = numberIn('var-max', argv['var-max'], 0, Number.MAX_VALUE, { lo: true });
    const iters = wholeNumber('iters', argv.iters, 0);
    const rounds = wholeNumber('rounds', argv.rounds, 1);
    const temperature = numberIn('temperature', argv.temperature, 0, Number.MAX_VALUE, { lo: true });
    const kappa = numberIn('kappa', argv.kappa, 0, Number.MAX_VALUE);
    const verify = wholeNumber('verify', argv.verify ?? (mode === 'universal' ? 100 : 1000), 0);
    if (argv.threads !== undefined) wholeNumber('threads', argv.threads, 1);
    const count = argv.count === undefined ? undefined : wholeNumber('count', argv.count, 1);
    if (mode === 'universal' && rounds !== 1)
      throw new NetmomentsError('--rounds applies to per-input attacks; the universal attack linearizes once per image', { code: 'BAD_USAGE' });
    const model = loadModel(argv.model);
    const inputShape = Linearizer.inputShapeOf(model);
    const geometry = pictureGeometry(inputShape, parseLayoutChoice(argv.layout), model.file, warn);
    const ds = openInputs(source, model, inputShape, argv, argv.labels, warn);
    const indices = firstIndices(ds.size, count, source, wholeNumber('start', argv.start, 0));
    if (indices.length === 0) throw new NetmomentsError('holds no inputs', { file: source });
    const disp = displayFor(model, argv);
    const linalg = sharedOrtLinearAlgebra({ threads: argv.threads });
    if (argv['valid-range'] && !disp.range) {
      throw new NetmomentsError('--valid-range needs the input range: the model declares no preprocessing; give --scale and --offset', {
        file: model.file,
        code: 'BAD_USAGE',
      });
    }
    const clipTo = argv['valid-range'] ? disp.range : undefined;
    const settings = { alpha, beta, varMax, iters, rounds, temperature, verify, seed: argv.seed, linalg, kappa, clipTo };
    const attacker = await Attacker.create(model, { relu: argv.relu, output: argv.output, threads: argv.threads, onWarning: warn });
    const d = attacker.output.size;
    if (mode === 'targeted' && !(Number.isInteger(argv.target) && argv.target! >= 0 && argv.target! < d)) {
      await attacker.release();
      throw new NetmomentsError(`--target must be a class index in [0, ${d}), got ${argv.target}`, { code: 'BAD_USAGE' });
    }
    const n = attacker.n;
    const files: Record<string, string | Uint8Array> = {};
    const common = {
      model: model.file,
      input: source,
      split: attacker.split,
      output: attacker.output,
      box: { beta, varMin: 1e-6 * varMax, varMax, alpha, validRange: clipTo ?? null },
      optimizer: {
        method: 'spectral projected gradient (Birgin, Martinez and Raydan 2000) with a nonmonotone line search, on the box-scaled variables',
        iterations: iters,
        rounds,
        linearization: rounds === 1 ? 'once, at the clean image (as in the paper)' : `at the clean image, then re-linearized at x + mu ${rounds - 1} time(s)`,
        smoothing: `log-sum-exp of the max at temperature ${temperature}`,
      },
      run: { version: VERSION, modelSha256: model.sha256, seed: argv.seed, verify },
    };
    try {
      if (mode === 'universal') {
        const xs = indices.map((i) => ds.get(i));
        const classes = indices.map((i) => (ds.labels ? ds.labels[i] : null));
        const bar = argv.quiet ? undefined : progressBar('universal', iters);
        let res;
        try {
          res = await attacker.universal(xs, indices, classes, settings, (stage, k) => {
            if (stage === 'optimize') bar?.update(Math.min(k, iters));
          });
        } finally {
          bar?.stop();
        }
        files['mu.npy'] = encodeNpy(Float32Array.from(res.mu), inputShape);
        if (geometry) {
          const show = Math.min(3, xs.length);
          const panels: Array<{ title: string; values: ArrayLike<number>; kind: 'image' | 'noise' }> = [{ title: 'mu', values: res.mu, kind: 'noise' }];
          for (let i = 0; i < show; i++) {
            const e = noiseSample(res.mu, res.elements, res.sigma2, seedFor(argv.seed, indices[i]));
            const im = res.images[i];
            panels.push({ title: `clean ${im.cleanClass}`, values: xs[i], kind: 'image' });
            panels.push({ title: `+mu: ${im.realClass}`, values: Float64Array.from(xs[i], (v, k) => v + e[k]), kind: 'image' });
          }
          files['universal.png'] = panelsPng(panels, geometry, disp);
        }
        const report = {
          schema: 'netmoments.attack/1',
          mode,
          ...common,
          elements: res.elements.length,
          sigma2: res.sigma2,
          objective: res.objective,
          objectiveStart: res.objectiveStart,
          objectiveDefinition: `mean over images of max(E_c - max_{j != c} E_j, -${kappa}), c the label (or the clean class)`,
          iterations: res.iterations,
          evaluations: res.evaluations,
          predictedFoolingRate: res.predictedFoolingRate,
          realFoolingRate: res.realFoolingRate,
          sampledFoolingRate: res.sampledFoolingRate,
          mu: { file: 'mu.npy', linf: Math.max(...Array.from(res.mu, Math.abs)), l2: Math.hypot(...res.mu) },
          results: res.images,
          files: Object.keys(files).concat('attack.json'),
        };
        files['attack.json'] = toJson(report);
        writeFilesAtomic(argv['out-dir'], files);
        if (!argv.quiet) {
          process.stderr.write(
            `universal noise over ${xs.length} inputs (ReLU ${attacker.split.index}, beta ${beta}, sigma^2 ${sig(res.sigma2)}): margin ${sig(res.objectiveStart)} -> ${sig(res.objective)}; ` +
              `fooling predicted ${sig(100 * res.predictedFoolingRate, 4)}%, real at x + mu ${sig(100 * res.realFoolingRate, 4)}%, sampled ${sig(100 * res.sampledFoolingRate, 4)}%; wrote ${argv['out-dir']}\n`,
          );
        }
        return;
      }
      const results: AttackResult[] = [];
      const bar = argv.quiet || indices.length < 2 ? undefined : progressBar('attack', indices.length);
      try {
        for (let t = 0; t < indices.length; t++) {
          const i = indices[t];
          const x = ds.get(i);
          const cls = mode === 'targeted' ? argv.target! : ds.labels ? ds.labels[i] : undefined;
          results.push(await attacker.attack(x, i, mode, settings, cls, disp.range));
          bar?.update(t + 1);
        }
      } finally {
        bar?.stop();
      }
      const mus = new Float32Array(results.length * n);
      results.forEach((r, k) => mus.set(r.mu, k * n));
      files['mu.npy'] = encodeNpy(mus, [results.length, ...inputShape]);
      if (geometry)
        results.forEach((r, k) => {
          const x = ds.get(indices[k]);
          const e = noiseSample(r.mu, r.elements, r.sigma2, seedFor(argv.seed, r.input));
          const what = mode === 'targeted' ? `target ${r.targetClass}` : `not ${r.trueClass}`;
          files[`attack-${r.input}.png`] = panelsPng(
            [
              { title: `clean: ${r.cleanClass}`, values: x, kind: 'image' },
              { title: 'noise', values: e, kind: 'noise' },
              { title: `${what}: ${sig(100 * r.verification.rate, 3)}%`, values: Float64Array.from(x, (v, j) => v + e[j]), kind: 'image' },
            ],
            geometry,
            disp,
          );
        });
      const succeeded = results.filter((r) => r.success).length;
      const report = {
        schema: 'netmoments.attack/1',
        mode,
        ...common,
        target: mode === 'targeted' ? argv.target : null,
        objectiveDefinition:
          mode === 'targeted'
            ? 'max_{i != j} E_i - E_j (Eq. 3; < 0: the target has the largest mean)'
            : 'E_c - max_{i != c} E_i (Eq. 4; < 0: the true class is not the largest mean)',
        successDefinition:
          mode === 'targeted'
            ? 'at least half of the verification samples are classified as the target'
            : 'at least half of the verification samples are not classified as the true class',
        succeeded,
        attacked: results.length,
        results: results.map((r, k) => ({
          ...r,
          elements: r.elements.length,
          mu: { file: 'mu.npy', index: k, linf: Math.max(...Array.from(r.mu, Math.abs)) },
          picture: geometry ? `attack-${r.input}.png` : null,
        })),
        files: Object.keys(files).concat('attack.json'),
      };
      files['attack.json'] = toJson(report);
      writeFilesAtomic(argv['out-dir'], files);
      if (!argv.quiet) {
        const lines = results.map(
          (r) =>
            `  input ${r.input}: clean ${r.cleanClass}, objective ${sig(r.objectiveStart)} -> ${sig(r.objective)}, sigma^2 ${sig(r.sigma2)}, ` +
            `real model at x + mu: ${r.realAtMean.predicted}; ${mode === 'targeted' ? `samples classified ${r.targetClass}` : `samples away from ${r.trueClass}`}: ${sig(100 * r.verification.rate, 3)}% of ${r.verification.samples}`,
        );
        process.stderr.write(
          `${mode} attack (Eq. ${mode === 'targeted' ? 3 : 4}) on ${results.length} input(s) (ReLU ${attacker.split.index}, beta ${beta}, alpha ${alpha}): ${succeeded} succeeded\n${lines.join('\n')}\nwrote ${argv['out-dir']}\n`,
        );
      }
    } finally {
      await attacker.release();
    }
  },
};
