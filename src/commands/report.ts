/**
 * `netmoments report MODEL --data D [--labels L] (noise) [--linearize input|kmeans:K|bank:DIR] --out-dir OUT`:
 * closed-form moments, class and flip probabilities over a whole dataset; writes samples.csv,
 * summary.json (netmoments.report/1) and summary.md. Checkpoints as it goes (--resume continues),
 * --shard I/N does a deterministic part for `netmoments merge`. The options are shared with `gate`.
 */
import type { Argv, CommandModule } from 'yargs';
import { NetmomentsError } from '../errors.js';
import { loadModel, type LoadedModel } from '../onnx/load.js';
import { Linearizer } from '../linearize/linearizer.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { parseLinearize, parseShard, runReport, CHECKPOINT_DIR, type ReportResult } from '../dataset/index.js';
import { describeRun } from '../report/summary.js';
import { progressBar, type Progress } from '../report/progress.js';
import { modelRunOptions, noiseFromArgs, noiseOptions, openInputs, stderrWriter, type ModelRunArgs, type NoiseArgs } from './common.js';

export interface DatasetRunArgs extends NoiseArgs, ModelRunArgs {
  model: string;
  data: string;
  labels?: string;
  linearize: string;
  seed: number;
  'kmeans-iterations': number;
  variance: 'exact' | 'none';
  'per-logit'?: boolean;
  mc: number;
  'mc-inputs': number;
  'probability-samples': number;
  chunk?: number;
  shard?: string;
  'out-dir'?: string;
  resume?: boolean;
  quiet?: boolean;
}

/** The options `report` and `gate` share. */
export function datasetRunOptions<T>(y: Argv<T>): Argv<T & DatasetRunArgs> {
  return modelRunOptions(noiseOptions(y))
    .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model file (piecewise-linear)' })
    .option('data', {
      type: 'string',
      demandOption: true,
      describe: 'Inputs: .npy batch (model units; uint8 is pixels), MNIST idx, a folder of PNGs',
      group: 'Data:',
    })
    .option('labels', { type: 'string', describe: 'Labels: .npy, idx1 or text (default: found beside idx/PNG data)', group: 'Data:' })
    .option('linearize', {
      type: 'string',
      default: 'input',
      describe:
        "Where to linearize: 'input' (every input), 'kmeans:K' (K k-means centres of the data, each input uses its nearest), 'bank:DIR' (a bank from `netmoments bank`)",
      group: 'Report:',
    })
    .option('seed', { type: 'number', default: 0, describe: 'Seed of k-means, the class-probability points and Monte Carlo', group: 'Report:' })
    .option('kmeans-iterations', { type: 'number', default: 100, describe: 'k-means iterations at most (kmeans:K)', group: 'Report:' })
    .option('variance', {
      choices: ['exact', 'none'] as const,
      default: 'exact' as const,
      describe: "'exact': mean, exact variance, class and flip probabilities; 'none': mean only",
      group: 'Report:',
    })
    .option('per-logit', { type: 'boolean', describe: 'Add the mean and variance of every logit to samples.csv', group: 'Report:' })
    .option('mc', {
      type: 'number',
      default: 0,
      describe: 'Monte Carlo samples through the real model for a sample of inputs (the report states its own tightness)',
      group: 'Report:',
    })
    .option('mc-inputs', { type: 'number', default: 10, describe: 'How many inputs (spread evenly over the data) get --mc samples', group: 'Report:' })
    .option('probability-samples', {
      type: 'number',
      default: 8192,
      describe: 'Quasi-Monte Carlo points of the class and flip probabilities (one shared set)',
      group: 'Report:',
    })
    .option('chunk', {
      type: 'number',
      describe: 'Inputs per chunk: the unit of batching, checkpoints and shards (default 1024 with a bank, 16 with --linearize input)',
      group: 'Report:',
    })
    .option('shard', { type: 'string', describe: 'I/N: only shard I (0-based) of N, a deterministic part; combine with `netmoments merge`', group: 'Report:' })
    .option('resume', { type: 'boolean', describe: 'Continue the interrupted run whose checkpoint is in --out-dir', group: 'Report:' }) as unknown as Argv<
    T & DatasetRunArgs
  >;
}

/** Run the report engine from parsed options, with progress bars and a SIGINT message. */
export async function runDatasetReport(
  argv: DatasetRunArgs,
  outDir: string | undefined,
  label: string,
  check?: (ds: { labels?: Int32Array }) => void,
): Promise<{ result: ReportResult; model: LoadedModel }> {
  const warn = stderrWriter(argv.quiet);
  const int = (v: number | undefined, name: string, min: number) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= min))
      throw new NetmomentsError(`--${name} must be a whole number >= ${min}, got ${v}`, { code: 'BAD_USAGE' });
  };
  int(argv.mc, 'mc', 0);
  int(argv['mc-inputs'], 'mc-inputs', 1);
  int(argv.chunk, 'chunk', 1);
  int(argv['kmeans-iterations'], 'kmeans-iterations', 1);
  int(argv.threads, 'threads', 1);
  int(argv['probability-samples'], 'probability-samples', 128);
  const linearize = parseLinearize(argv.linearize);
  const shard = argv.shard !== undefined ? parseShard(argv.shard) : undefined;
  if (argv.resume && !outDir) throw new NetmomentsError('--resume needs --out-dir (where the checkpoint is)', { code: 'BAD_USAGE' });
  const model = loadModel(argv.model);
  const inputShape = Linearizer.inputShapeOf(model);
  const n = inputShape.reduce((a, b) => a * b, 1);
  const ds = openInputs(argv.data, model, inputShape, argv, argv.labels, warn);
  check?.(ds);
  const noise = noiseFromArgs(argv, n, warn);

  let bar: Progress | undefined;
  let state = { phase: 'setup', total: 0, done: 0 };
  const onSigint = () => {
    bar?.stop();
    let where = '';
    if (outDir && state.phase === 'inputs') {
      where = `; ${state.done} of ${state.total} inputs are checkpointed in ${outDir}/${CHECKPOINT_DIR}: run the same command with --resume to continue`;
    } else if (outDir) {
      where = `${state.phase === 'bank' ? ' while linearizing at the k-means centres' : ' before any input was done'}; ${outDir} holds its earlier contents (run the same command with --resume to start or continue)`;
    }
    process.stderr.write(`\nnetmoments: interrupted${where}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  let result: ReportResult;
  try {
    result = await runReport(model, ds, {
      relu: argv.relu,
      output: argv.output,
      jacobian: argv.jacobian,
      threads: argv.threads,
      provider: argv.provider,
      onWarning: warn,
      ...noise,
      noiseMeanFile: noise.noiseMeanFile,
      seed: argv.seed,
      linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
      maxMemory: argv['max-memory'],
      linearize,
      kmeans: { seed: argv.seed, maxIterations: argv['kmeans-iterations'] },
      variance: argv.variance,
      perLogit: argv['per-logit'],
      mc: argv.mc,
      mcInputs: argv['mc-inputs'],
      probabilitySamples: argv['probability-samples'],
      chunk: argv.chunk,
      shard,
      outDir,
      resume: argv.resume,
      dataFile: argv.data,
      labelsFile: argv.labels,
      onPhase: (phase, total, done) => {
        bar?.stop();
        state = { phase, total, done };
        bar = argv.quiet ? undefined : progressBar(phase === 'bank' ? `${label}: linearizing at k-means centres` : `${label}: inputs`, total);
        bar?.update(done);
      },
      onProgress: (done) => {
        state.done = done;
        bar?.update(done);
      },
    });
  } finally {
    bar?.stop();
    process.removeListener('SIGINT', onSigint);
  }
  return { result, model };
}

/** One stderr line on what the run did and how fast. */
export function runLine(r: ReportResult, outDir?: string): string {
  const s = r.summary;
  const rate = r.computed > 0 && r.seconds > 0 ? `, ${(r.computed / r.seconds).toFixed(1)} inputs/s` : '';
  const from = r.resumed > 0 ? ` (${r.resumed} from the checkpoint)` : '';
  const where = outDir ? ` -> ${outDir}` : '';
  const acc = s.accuracy
    ? `clean accuracy ${(100 * s.accuracy.clean).toFixed(2)}%, ` +
      (s.accuracy.underNoise !== null ? `accuracy under noise ${(100 * s.accuracy.underNoise).toFixed(2)}%, ` : '')
    : '';
  const flip = s.flipRate !== null ? `flip rate ${(100 * s.flipRate).toFixed(3)}%` : 'mean only';
  const { noise, linearization } = describeRun(s);
  return `${s.inputs} inputs, ${r.computed} computed in ${r.seconds.toFixed(2)} s (CPU ${r.cpuSeconds.toFixed(2)} s)${rate}${from}${where}\n  ${noise}; ${linearization}\n  ${acc}${flip}\n`;
}

interface ReportArgs extends DatasetRunArgs {
  'out-dir': string;
}

export const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report <model>',
  describe: 'Moments, class and flip probabilities over a dataset: samples.csv, summary.json, summary.md',
  builder: (y) =>
    datasetRunOptions(y)
      .option('out-dir', {
        type: 'string',
        demandOption: true,
        describe: 'Folder for samples.csv, summary.json, summary.md (and the checkpoint while running)',
        group: 'Report:',
      })
      .example(
        '$0 report fixtures/lenet.onnx --data fixtures/mnist/digits-100.npy --labels fixtures/mnist/labels-100.npy --sigma 8 --linearize kmeans:10 --out-dir rep/',
        '',
      )
      .example(
        '$0 report model.onnx --data val.npy --labels val-labels.npy --sigma 8 --linearize bank:bank/ --shard 2/8 --out-dir shard-2/',
        'one of 8 shards',
      ) as never,
  handler: async (argv) => {
    const { result } = await runDatasetReport(argv, argv['out-dir'], 'report');
    if (!argv.quiet) process.stderr.write(`netmoments: report: ${runLine(result, argv['out-dir'])}`);
  },
};
