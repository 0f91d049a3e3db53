/**
 * `netmoments sweep MODEL --data D [--labels L] --sigma 1,2,4,8 | --sigma 0:32:8 [--mc N] --out-dir DIR`:
 * accuracy and flip rate against the noise level, the dataset report (`report`'s runner) once per
 * sigma (dataset/sweep.ts), with Monte Carlo check points. Writes sweep.csv, sweep.json
 * (netmoments.sweep/1) and sweep.svg to --out-dir, and a table to stderr.
 */
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { parseLayoutChoice } from '../data/layout.js';
import { datasetRange, parseSigmaList, runSweep } from '../dataset/sweep.js';
import { sampleCount, wholeNumber } from '../experiments/cli.js';
import { progressBar, type Progress } from '../report/progress.js';
import { sweepCsv, sweepJson, sweepSvg, sweepTable } from '../report/sweep.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { writeFilesAtomic } from '../util/files.js';
import {
  checkRunArgs,
  loadModelInput,
  methodFromArgs,
  methodLine,
  methodOptions,
  modelRunOptions,
  selectInputs,
  selectionOptions,
  sessionOptions,
  stderrWriter,
  type MethodArgs,
  type SelectionArgs,
} from './common.js';

interface SweepArgs extends SelectionArgs, MethodArgs {
  model: string;
  data: string;
  sigma: string;
  mc: number;
  'mc-inputs': number;
  'trust-check': number;
  'probability-samples': number;
  seed: number;
  'out-dir': string;
  quiet?: boolean;
}

export const sweepCommand: CommandModule<object, SweepArgs> = {
  command: 'sweep <model>',
  describe: 'Accuracy and flip rate against sigma over a dataset: sweep.csv, sweep.json and an SVG plot, with Monte Carlo check points',
  builder: (y) =>
    selectionOptions(methodOptions(modelRunOptions(y)), 'Labels: .npy, idx1 or text (default: found beside idx/PNG data); give them for the accuracy')
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX classifier' })
      .option('data', { type: 'string', demandOption: true, describe: 'Inputs: .npy batch (model units; uint8 is pixels), MNIST idx, a folder of PNGs' })
      .option('sigma', {
        type: 'string',
        demandOption: true,
        describe: 'Noise levels (isotropic sd in model input units): a list 1,2,4,8 or a range start:stop:step (0:32:8 = 0, 8, 16, 24, 32)',
      })
      .option('mc', { type: 'number', default: 0, describe: 'Monte Carlo samples per sampled input at every sigma (check points on the plot)' })
      .option('mc-inputs', { type: 'number', default: 10, describe: 'How many inputs (spread evenly over the data) get --mc samples' })
      .option('trust-check', {
        type: 'number',
        default: 256,
        describe:
          "Without --mc: N Monte Carlo samples for the --mc-inputs inputs at every sigma, behind their trust verdicts (the 'untrusted' column; as `report`). 0: none",
      })
      .option('probability-samples', { type: 'number', default: 8192, describe: 'Quasi-Monte Carlo points of the flip probabilities (as `report`)' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the class-probability points and Monte Carlo (as `report`)' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for sweep.csv, sweep.json and sweep.svg' })
      .example(
        '$0 sweep fixtures/lenet.onnx --data fixtures/mnist/digits-100.npy --labels fixtures/mnist/labels-100.npy --count 10 --sigma 0:100:50 --mc 100 --mc-inputs 2 --out-dir sweep/',
        '20 LeNet digits from sigma 0 to 100, Monte Carlo check points',
      )
      .example(
        '$0 sweep fixtures/lenet.onnx --data fixtures/mnist/t10k-100-images-idx3-ubyte --count 10 --sigma 8,64 --out-dir sweep/',
        'two levels; the labels are found beside the idx file',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    const sigmas = parseSigmaList(argv.sigma);
    const mc = argv.mc === 0 ? 0 : wholeNumber('mc', argv.mc, 2);
    const mcInputs = wholeNumber('mc-inputs', argv['mc-inputs'], 1);
    const trustCheck = mc > 0 ? 0 : sampleCount('trust-check', argv['trust-check']);
    const probabilitySamples = wholeNumber('probability-samples', argv['probability-samples'], 128);
    // --sigma is a list here: checked by parseSigmaList above, not as one number
    const count = checkRunArgs({ ...argv, sigma: undefined });
    const { model, inputShape } = loadModelInput(argv.model, warn, argv);
    const sel = selectInputs(argv.data, model, inputShape, argv, count, warn);
    const ds = datasetRange(sel.ds, sel.indices[0], sel.indices.length);
    let bar: Progress | undefined;
    let label = '';
    const res = await runSweep(model, ds, sigmas, {
      ...sessionOptions(argv, warn),
      ...methodFromArgs(argv),
      layout: parseLayoutChoice(argv.layout),
      seed: argv.seed,
      linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
      maxMemory: argv['max-memory'],
      variance: 'exact',
      mc,
      mcInputs,
      trustCheck,
      probabilitySamples,
      dataFile: argv.data,
      labelsFile: argv.labels,
      onSigma: (sigma, k) => (label = `sweep: sigma ${sigma} (${k + 1} of ${sigmas.length})`),
      onPhase: (_phase, total, done) => {
        bar?.stop();
        bar = argv.quiet ? undefined : progressBar(label, total);
        bar?.update(done);
      },
      onProgress: (done) => bar?.update(done),
    }).finally(() => bar?.stop());
    if (res.method) warn(methodLine(res));
    const info = { model, data: argv.data, labels: argv.labels ?? null, seed: argv.seed, mc, mcInputs, trustCheck, version: VERSION };
    const title = `${model.file.split('/').pop()}: accuracy and flip rate against sigma (${res.first.inputs} inputs)`;
    const dir = argv['out-dir'];
    writeFilesAtomic(dir, { 'sweep.csv': sweepCsv(res), 'sweep.svg': sweepSvg(res, title), 'sweep.json': sweepJson(res, info) });
    if (!argv.quiet) process.stderr.write(`${sweepTable(res)}netmoments: sweep: ${sigmas.length} noise levels -> ${join(dir, 'sweep.{csv,json,svg}')}\n`);
  },
};
