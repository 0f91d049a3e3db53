/**
 * `netmoments fooling MODEL --data D --perturbation P.npy --sigma S [--mc N] --out FILE`: predicted
 * fooling rate of a given (e.g. universal) perturbation from the closed-form mean, the real rate
 * from plain forward passes at x + P, and top-k ordering accuracy (the paper's Table 2). Writes
 * netmoments.fooling/1 JSON (or CSV with --format csv, one row per image).
 */
import { readFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { checkInputVector } from '../data/layout.js';
import { npyToFloat64, parseNpy } from '../data/npy.js';
import { NetmomentsError } from '../errors.js';
import { Linearizer } from '../linearize/linearizer.js';
import { loadModel } from '../onnx/load.js';
import { progressBar } from '../report/progress.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { csv } from '../util/csv.js';
import { firstIndices, sig, toJson, wholeNumber } from '../experiments/cli.js';
import { foolingRate } from '../experiments/fooling.js';
import { emit, modelRunOptions, openInputs, stderrWriter, type ModelRunArgs } from './common.js';

interface FoolingArgs extends ModelRunArgs {
  model: string;
  data: string;
  labels?: string;
  count?: number;
  start: number;
  perturbation: string;
  sigma: number;
  mc: number;
  seed: number;
  format: 'json' | 'csv';
  out?: string;
  quiet?: boolean;
}

/** Read a perturbation of n values (model input units) from .npy; errors name the file. */
export function readPerturbation(path: string, n: number): Float64Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new NetmomentsError(code === 'ENOENT' ? 'no such file' : `cannot read the file (${code})`, { file: path });
  }
  const a = parseNpy(bytes, path);
  checkInputVector(a.shape, n, 'the perturbation', path);
  const p = npyToFloat64(a);
  for (let i = 0; i < p.length; i++)
    if (!Number.isFinite(p[i])) throw new NetmomentsError(`the perturbation holds a non-finite value at element ${i}`, { file: path });
  return p;
}

export const foolingCommand: CommandModule<object, FoolingArgs> = {
  command: 'fooling <model>',
  describe: 'Fooling rate of a perturbation predicted from the closed-form mean vs the real one, and top-k ordering accuracy',
  builder: (y) =>
    modelRunOptions(y)
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model' })
      .option('data', { type: 'string', demandOption: true, describe: 'Inputs (.npy in model units, idx, PNG or a folder of PNGs)' })
      .option('labels', { type: 'string', describe: 'Labels file, reported beside each image' })
      .option('count', { type: 'number', describe: 'Use N inputs from --start (default: all from there)' })
      .option('start', { type: 'number', default: 0, describe: 'Index of the first input used (0-based)' })
      .option('perturbation', {
        type: 'string',
        demandOption: true,
        describe: '.npy of n values added to every input (model units), e.g. mu.npy of `attack --universal`',
      })
      .option('sigma', { type: 'number', default: 0, describe: 'Isotropic noise around x + P (model units; 0: the perturbation alone)' })
      .option('mc', { type: 'number', default: 0, describe: 'Also sample N noisy inputs per image through the real model' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the sampling' })
      .option('format', { choices: ['json', 'csv'] as const, default: 'json' as const, describe: 'Report format' })
      .option('out', { type: 'string', describe: 'Write the report here (atomically) instead of stdout' })
      .example(
        '$0 fooling fixtures/lenet.onnx --data fixtures/mnist/digits-100.npy --perturbation out/universal/mu.npy --sigma 1 --out fooling.json',
        'Table 2 on the bundled LeNet',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    if (!(Number.isFinite(argv.sigma) && argv.sigma >= 0)) throw new NetmomentsError(`--sigma must be a number >= 0, got ${argv.sigma}`, { code: 'BAD_USAGE' });
    const mc = argv.mc === 0 ? 0 : wholeNumber('mc', argv.mc, 2);
    if (argv.threads !== undefined) wholeNumber('threads', argv.threads, 1);
    const count = argv.count === undefined ? undefined : wholeNumber('count', argv.count, 1);
    const model = loadModel(argv.model);
    const inputShape = Linearizer.inputShapeOf(model);
    const n = inputShape.reduce((a, b) => a * b, 1);
    const perturbation = readPerturbation(argv.perturbation, n);
    const ds = openInputs(argv.data, model, inputShape, argv, argv.labels, warn);
    const indices = firstIndices(ds.size, count, argv.data, wholeNumber('start', argv.start, 0));
    if (indices.length === 0) throw new NetmomentsError('holds no inputs', { file: argv.data });
    const bar = argv.quiet ? undefined : progressBar('fooling', indices.length);
    let res;
    try {
      res = await foolingRate(model, ds, indices, {
        relu: argv.relu,
        output: argv.output,
        threads: argv.threads,
        onWarning: warn,
        perturbation,
        sigma: argv.sigma,
        mc,
        seed: argv.seed,
        linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
        onProgress: (k) => bar?.update(k),
      });
    } finally {
      bar?.stop();
    }
    let norm2 = 0,
      normInf = 0;
    for (const v of perturbation) {
      norm2 += v * v;
      normInf = Math.max(normInf, Math.abs(v));
    }
    const report = {
      schema: 'netmoments.fooling/1',
      model: model.file,
      data: argv.data,
      perturbation: { file: argv.perturbation, l2: Math.sqrt(norm2), linf: normInf },
      split: res.split,
      output: res.output,
      noise: { kind: 'isotropic', sigma: argv.sigma },
      linearizationPoint: 'input',
      run: { version: VERSION, modelSha256: model.sha256, seed: argv.seed, mc },
      images: res.images.length,
      predictedFoolingRate: res.predictedFoolingRate,
      realFoolingRate: res.realFoolingRate,
      expectedFoolingRate: res.expectedFoolingRate,
      sampledFoolingRate: res.sampledFoolingRate,
      agreement: res.agreement,
      missed: res.missed,
      falseAlarms: res.falseAlarms,
      topK: res.topK,
      topKMonteCarlo: res.topKMonteCarlo,
      results: res.images,
    };
    let text: string;
    if (argv.format === 'csv') {
      text = csv(
        [
          'input',
          'label',
          'clean_class',
          'predicted_class',
          'real_class',
          'predicted_fooled',
          'real_fooled',
          'flip_probability',
          'sampled_fooling',
          ...res.topK.map((t) => `top${t.k}_agree`),
        ],
        res.images.map((im) => [
          im.input,
          im.label,
          im.cleanClass,
          im.predictedClass,
          im.realClass,
          im.predictedFooled,
          im.realFooled,
          im.flipProbability,
          im.sampledFooling ?? null,
          ...im.topK,
        ]),
      );
    } else text = toJson(report);
    emit(text, argv.out);
    if (!argv.quiet && (argv.out || !process.stdout.isTTY)) {
      process.stderr.write(
        `fooling of ${argv.perturbation} on ${res.images.length} inputs of ${argv.data} (ReLU ${res.split.index}, sigma ${argv.sigma}): ` +
          `predicted ${sig(100 * res.predictedFoolingRate, 4)}%, real ${sig(100 * res.realFoolingRate, 4)}%, expected (P(flip)) ${sig(100 * res.expectedFoolingRate, 4)}%` +
          `${res.sampledFoolingRate !== null ? `, sampled ${sig(100 * res.sampledFoolingRate, 4)}%` : ''}; top-k ordering ${res.topK.map((t) => `${sig(100 * t.accuracy, 4)}%`).join(' ')}\n`,
      );
    }
  },
};
