/**
 * `netmoments fooling MODEL --data D --perturbation P.npy --sigma S [--mc N] --out FILE`: predicted
 * fooling rate of a given (e.g. universal) perturbation from the closed-form mean, the real rate
 * from plain forward passes at x + P, and top-k ordering accuracy (the paper's Table 2;
 * experiments/fooling.ts). Writes netmoments.fooling/1 JSON (or CSV with --format csv, one row per
 * image; report/fooling.ts).
 */
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { readPerturbation } from '../data/vectors.js';
import { NetmomentsError } from '../errors.js';
import { wholeNumber } from '../experiments/cli.js';
import { foolingRate } from '../experiments/fooling.js';
import { foolingCsv, foolingJson, foolingSummary } from '../report/fooling.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import {
  checkRunArgs,
  dataOptions,
  emit,
  loadModelInput,
  methodFromArgs,
  methodLine,
  methodOptions,
  selectInputs,
  sessionOptions,
  stderrWriter,
  withProgress,
  type MethodArgs,
  type SelectionArgs,
} from './common.js';

interface FoolingArgs extends SelectionArgs, MethodArgs {
  model: string;
  data: string;
  perturbation: string;
  sigma: number;
  mc: number;
  seed: number;
  format: 'json' | 'csv';
  out?: string;
  quiet?: boolean;
}

export const foolingCommand: CommandModule<object, FoolingArgs> = {
  command: 'fooling <model>',
  describe: 'Fooling rate of a perturbation predicted from the closed-form mean vs the real one, and top-k ordering accuracy',
  builder: (y) =>
    methodOptions(dataOptions(y, 'Labels file, reported beside each image'))
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
        '$0 fooling fixtures/lenet.onnx --data fixtures/mnist/digits-100.npy --start 50 --count 10 --perturbation out/universal/mu.npy --sigma 1 --out fooling.json',
        'Table 2 on the bundled LeNet',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    if (!(Number.isFinite(argv.sigma) && argv.sigma >= 0)) throw new NetmomentsError(`--sigma must be a number >= 0, got ${argv.sigma}`, { code: 'BAD_USAGE' });
    const mc = argv.mc === 0 ? 0 : wholeNumber('mc', argv.mc, 2);
    const count = checkRunArgs(argv);
    const { model, inputShape, n } = loadModelInput(argv.model, warn, argv);
    const perturbation = readPerturbation(argv.perturbation, n);
    const { ds, indices } = selectInputs(argv.data, model, inputShape, argv, count, warn);
    const { sigma, seed } = argv;
    const info = {
      model,
      data: argv.data,
      perturbationFile: argv.perturbation,
      perturbation,
      sigma,
      mc,
      seed,
      version: VERSION,
    };
    const res = await withProgress(argv.quiet, 'fooling', indices.length, (update) =>
      foolingRate(model, ds, indices, {
        ...sessionOptions(argv, warn),
        ...methodFromArgs(argv),
        perturbation,
        sigma,
        mc,
        seed,
        linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
        onProgress: update,
      }),
    );
    warn(methodLine(res));
    emit(argv.format === 'csv' ? foolingCsv(res) : foolingJson(res, info), argv.out);
    if (!argv.quiet && (argv.out || !process.stdout.isTTY)) process.stderr.write(foolingSummary(res, info));
  },
};
