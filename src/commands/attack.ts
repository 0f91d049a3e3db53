/**
 * `netmoments attack MODEL --input X (--target J | --untargeted) | --universal --data D ... --out-dir DIR`: Gaussian noise
 * that fools the model, found with the closed-form mean and its gradients (Eq. 3, Eq. 4; experiments/attack.ts), verified
 * by sampling. Writes attack.json, mu.npy and PNGs of original / perturbation / adversarial inputs (report/attack.ts).
 */
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { inputPreprocessing, inputRange, requireInputRange } from '../data/inputs.js';
import { parseLayoutChoice } from '../data/layout.js';
import { NetmomentsError } from '../errors.js';
import { Attacker, PAPER_ALPHA, PAPER_BETA, noiseDraw, type AttackMode, type FoundNoise } from '../experiments/attack.js';
import { numberIn, wholeNumber } from '../experiments/cli.js';
import { attackFiles, attackSummary, pictureGeometry, universalFiles, universalSummary, type AttackRunInfo } from '../report/attack.js';
import { writeFilesAtomic } from '../util/files.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import {
  checkRunArgs,
  loadModelInput,
  modelRunOptions,
  preprocessingArgs,
  selectInputs,
  selectionOptions,
  sessionOptions,
  stderrWriter,
  withProgress,
  type SelectionArgs,
} from './common.js';

interface AttackArgs extends SelectionArgs {
  model: string;
  input?: string;
  data?: string;
  target?: number;
  untargeted?: boolean;
  universal?: boolean;
  zoom?: number;
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

export const attackCommand: CommandModule<object, AttackArgs> = {
  command: 'attack <model>',
  describe: 'Gaussian noise N(mu, sigma^2 I) that fools the model (Eq. 3 targeted, Eq. 4 untargeted, or one universal mu), verified by sampling',
  builder: (y) =>
    selectionOptions(
      modelRunOptions(y)
        .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model' })
        .option('input', { type: 'string', describe: 'Input(s) to attack: .npy (model units; one or a batch), .png, idx' })
        .option('data', { type: 'string', describe: 'With --universal: the images the one noise mean is optimized over' }),
      'Labels file: the true classes (default: the clean prediction)',
    )
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
      .option('zoom', { type: 'number', describe: 'PNG pixels per input pixel, nearest neighbour (default 224 / long side: 8 for 28 x 28)' })
      .example('$0 attack fixtures/lenet.onnx --input fixtures/mnist/digit-0.npy --target 3 --out-dir out/eq3', 'Eq. 3: noise that makes the LeNet say 3')
      .example('$0 attack fixtures/lenet.onnx --input fixtures/mnist/digits-10.npy --count 2 --untargeted --out-dir out/eq4', 'Eq. 4 on 4% of the pixels')
      .example(
        '$0 attack fixtures/lenet.onnx --universal --data fixtures/mnist/digits-10.npy --beta 60 --out-dir out/universal',
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
    const zoom = argv.zoom === undefined ? undefined : wholeNumber('zoom', argv.zoom, 1);
    const verify = wholeNumber('verify', argv.verify ?? (mode === 'universal' ? 100 : 1000), 0);
    const count = checkRunArgs(argv);
    if (mode === 'universal' && rounds !== 1) throw new NetmomentsError('--rounds applies to per-input attacks, not --universal', { code: 'BAD_USAGE' });
    const { model, inputShape } = loadModelInput(argv.model, warn, argv);
    const geometry = pictureGeometry(inputShape, parseLayoutChoice(argv.layout), model.file, warn);
    const { ds, indices } = selectInputs(source, model, inputShape, argv, count, warn);
    const pre = { metadata: model.graph.metadata, modelFile: model.file, ...preprocessingArgs(argv) };
    const display = { ...inputPreprocessing(pre), range: inputRange(pre) };
    const clipTo = argv['valid-range'] ? requireInputRange(pre) : undefined;
    const linalg = sharedOrtLinearAlgebra({ threads: argv.threads });
    const settings = { alpha, beta, varMax, iters, rounds, temperature, verify, seed: argv.seed, linalg, kappa, clipTo };
    const attacker = await Attacker.create(model, { ...sessionOptions(argv, warn), target: argv.target });
    const { split, output } = attacker;
    const info: AttackRunInfo = { mode, model, input: source, inputShape, split, output, settings, target: argv.target, version: VERSION };
    const pictures = geometry && { geometry, display, zoom, draw: (found: FoundNoise, input: number) => noiseDraw(found, argv.seed, input) };
    try {
      const xs = indices.map((i) => ds.get(i));
      if (mode === 'universal') {
        const classes = indices.map((i) => ds.labels?.[i] ?? null);
        const res = await withProgress(argv.quiet, 'universal', iters, (update) =>
          attacker.universal(xs, indices, classes, settings, (stage, k) => stage === 'optimize' && update(Math.min(k, iters))),
        );
        writeFilesAtomic(argv['out-dir'], universalFiles(res, xs, info, pictures));
        if (!argv.quiet) process.stderr.write(universalSummary(res, info, argv['out-dir']));
        return;
      }
      const classes = indices.map((i) => (mode === 'targeted' ? argv.target : ds.labels?.[i]));
      const results = await withProgress(argv.quiet || indices.length < 2, 'attack', indices.length, (update) =>
        attacker.attackMany(xs, indices, mode, settings, classes, display.range, update),
      );
      writeFilesAtomic(argv['out-dir'], attackFiles(results, xs, info, pictures));
      if (!argv.quiet) process.stderr.write(attackSummary(results, info, argv['out-dir']));
    } finally {
      await attacker.release();
    }
  },
};
