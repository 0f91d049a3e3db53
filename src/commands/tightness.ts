/**
 * `netmoments tightness MODEL (--data D | --synthetic) --runs R --mc N [--relu K] --out-dir DIR`
 * and `netmoments tightness --paper --out-dir DIR`: closed form against Monte Carlo through the real
 * model (the paper's Table 1 and Figure 2; experiments/tightness.ts). Writes DIR/tightness.json
 * (netmoments.tightness/1), DIR/runs.csv (one row per run and output) and one SVG scatter plot per
 * study and quantity (report/tightness.ts).
 */
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import { runIndices, wholeNumber } from '../experiments/cli.js';
import { parseNumberList } from '../experiments/common.js';
import { PAPER_REGIMES, PAPER_RELU, tightnessOnData, tightnessSynthetic, type TightnessStudy } from '../experiments/tightness.js';
import { Linearizer } from '../linearize/linearizer.js';
import { loadModel, loadModelBytes, type LoadedModel } from '../onnx/load.js';
import { tightnessFiles, tightnessSummary } from '../report/tightness.js';
import { writeFilesAtomic } from '../util/files.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { paperNets } from '../synthetic/nets.js';
import {
  checkRunArgs,
  loadModelInput,
  methodFromArgs,
  noiseFromArgs,
  noiseRunOptions,
  openInputs,
  sessionOptions,
  stderrWriter,
  withProgress,
  type NoiseRunArgs,
} from './common.js';

interface TightnessArgs extends NoiseRunArgs {
  model?: string;
  data?: string;
  synthetic?: boolean;
  paper?: boolean;
  runs: number;
  start: number;
  mc: number;
  'max-var': string;
  'mean-sd': number;
  seed: number;
  'out-dir': string;
  quiet?: boolean;
}

export const tightnessCommand: CommandModule<object, TightnessArgs> = {
  command: 'tightness [model]',
  describe: 'Closed-form moments against Monte Carlo over many runs: Table 1 ratios and the Figure 2 fit (SVG plots)',
  builder: (y) =>
    noiseRunOptions(y)
      .positional('model', { type: 'string', describe: 'ONNX model (not with --paper)' })
      .option('data', { type: 'string', describe: 'Runs over the inputs of this dataset (.npy, idx, PNG/JPEG, image/class folders), under the noise options' })
      .option('synthetic', {
        type: 'boolean',
        describe: "Runs at the zero input with random covariances in each --max-var regime (the paper's synthetic study)",
      })
      .option('paper', {
        type: 'boolean',
        describe: "The paper's synthetic study: FC and conv nets of depth 2, 3, 4, split at ReLU 1 (l = 2), regimes 1e-4, 1, 200",
      })
      .option('runs', { type: 'number', default: 20, describe: 'Runs per study (inputs with --data, covariance draws otherwise; the paper used 200)' })
      .option('start', { type: 'number', default: 0, describe: 'With --data: index of the first input (run k analyses input start + k)' })
      .option('mc', { type: 'number', default: 10000, describe: 'Monte Carlo samples per run (the paper used 75000)' })
      .option('max-var', { type: 'string', default: PAPER_REGIMES.join(','), describe: 'Synthetic regimes: comma-separated maximum variances' })
      .option('mean-sd', {
        type: 'number',
        default: 0,
        describe: "Synthetic: draw each run's input mean from N(0, s^2 I) and linearize there (default 0: the zero input, as in the paper)",
      })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the covariance draws and the Monte Carlo' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for tightness.json, runs.csv and the SVG plots' })
      .example(
        '$0 tightness fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --sigma 8 --runs 5 --mc 2000 --out-dir out/table1',
        'Table 1 on the bundled LeNet',
      )
      .example('$0 tightness --paper --runs 3 --mc 2000 --out-dir out/figure2', 'Figure 2: synthetic FC and conv nets (paper: --runs 200)') as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    const runs = wholeNumber('runs', argv.runs, 1);
    const mc = wholeNumber('mc', argv.mc, 2);
    const modes = [argv.data !== undefined, !!argv.synthetic, !!argv.paper].filter(Boolean).length;
    if (modes !== 1) throw new NetmomentsError('give exactly one of --data D, --synthetic or --paper', { code: 'BAD_USAGE' });
    if (argv.paper && argv.model) throw new NetmomentsError('--paper builds its own nets: give no model', { code: 'BAD_USAGE', file: argv.model });
    if (!argv.paper && !argv.model) throw new NetmomentsError('name a model (or use --paper)', { code: 'BAD_USAGE' });
    checkRunArgs(argv);
    const regimes = parseNumberList(argv['max-var'], '--max-var');
    for (const v of regimes) if (!(v > 0)) throw new NetmomentsError(`--max-var values must be > 0, got ${v}`, { code: 'BAD_USAGE' });
    const meanSd = Number(argv['mean-sd']);
    if (!(Number.isFinite(meanSd) && meanSd >= 0)) throw new NetmomentsError(`--mean-sd must be a number >= 0, got ${argv['mean-sd']}`, { code: 'BAD_USAGE' });
    const common = { runs, mc, seed: argv.seed, linalg: sharedOrtLinearAlgebra({ threads: argv.threads }) };
    const studies: TightnessStudy[] = [];
    const done = (s: TightnessStudy) => {
      studies.push(s);
      if (!argv.quiet) process.stderr.write(tightnessSummary(s));
    };

    if ((argv.paper || argv.synthetic) && argv.method === 'propagate')
      warn('synthetic runs compare the two-stage surrogate only; the propagate column comes with --data runs');
    const synthetic = async (model: LoadedModel, relu: string | number | undefined, label?: string) => {
      const lin = await Linearizer.create(model, { ...sessionOptions(argv, warn), relu });
      try {
        for (const v of regimes) {
          done(
            await withProgress(argv.quiet, `${label ?? 'tightness'} var ${v}`, runs, (update) =>
              tightnessSynthetic(model, { ...common, maxVariance: v, meanSd, linearizer: lin, onProgress: update }),
            ),
          );
        }
      } finally {
        await lin.release();
      }
    };

    if (argv.paper) {
      for (const net of paperNets()) await synthetic(loadModelBytes(net.bytes, `${net.name}.onnx`), argv.relu ?? PAPER_RELU, net.name);
    } else if (argv.synthetic) {
      await synthetic(loadModel(argv.model!), argv.relu);
    } else {
      const { model, inputShape, n } = loadModelInput(argv.model!, warn, argv);
      const ds = openInputs(argv.data!, model, inputShape, argv, undefined, warn);
      const indices = runIndices(ds.size, runs, wholeNumber('start', argv.start, 0), argv.data!, warn);
      const { noise, noiseFile, window, layout, noiseMean } = noiseFromArgs(argv, n, warn);
      if (noiseMean) throw new NetmomentsError('tightness compares zero-mean noise around each input: --noise-mean is not used here', { code: 'BAD_USAGE' });
      done(
        await withProgress(argv.quiet, 'tightness', indices.length, (update) =>
          tightnessOnData(model, ds, {
            ...common,
            ...sessionOptions(argv, warn),
            runs: indices.length,
            noise: noise!,
            noiseFile,
            window,
            layout,
            indices,
            ...methodFromArgs(argv),
            onProgress: update,
          }),
        ),
      );
    }

    const run = { version: VERSION, seed: argv.seed, runs, mc, preset: argv.paper ? ('paper' as const) : null };
    const files = tightnessFiles(studies, run);
    writeFilesAtomic(argv['out-dir'], files);
    if (!argv.quiet) process.stderr.write(`wrote ${Object.keys(files).length} files to ${argv['out-dir']} (tightness.json, runs.csv, SVG plots)\n`);
  },
};
