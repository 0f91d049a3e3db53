/**
 * The options `report` and `gate` share: model, data, labels, noise, linearization and the
 * report's run settings.
 */
import type { Argv } from 'yargs';
import { methodOptions, modelRunOptions, noiseOptions, type MethodArgs, type ModelRunArgs, type NoiseArgs } from './common.js';

export interface DatasetRunArgs extends NoiseArgs, ModelRunArgs, MethodArgs {
  model: string;
  data: string;
  labels?: string;
  linearize: string;
  seed: number;
  'kmeans-iterations': number;
  'bank-fallback': boolean;
  variance: 'exact' | 'none';
  'per-logit'?: boolean;
  mc: number;
  'mc-inputs': number;
  'trust-check': number;
  'probability-samples': number;
  chunk?: number;
  shard?: string;
  'out-dir'?: string;
  resume?: boolean;
  quiet?: boolean;
}

/** The options `report` and `gate` share. */
export function datasetRunOptions<T>(y: Argv<T>): Argv<T & DatasetRunArgs> {
  return methodOptions(modelRunOptions(noiseOptions(y)))
    .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model file (piecewise-linear)' })
    .option('data', {
      type: 'string',
      demandOption: true,
      describe:
        'Inputs: .npy batch (float: model units; uint8: pixels; other integers: model units, said), MNIST idx, a PNG/JPEG, a folder of them (labels.txt beside), or class folders root/CLASS/*.png|jpg (labels from the folder names); images resized to the model (bilinear up, area average down)',
      group: 'Data:',
    })
    .option('labels', {
      type: 'string',
      describe: 'Labels: .npy, idx1 or text (default: found beside idx/image data; class folders name their own)',
      group: 'Data:',
    })
    .option('linearize', {
      type: 'string',
      default: 'input',
      describe:
        "Where to linearize: 'input' (every input), 'kmeans:K' (K k-means centres of the data, each input uses its nearest), 'bank:DIR' (a bank from `netmoments bank`)",
      group: 'Report:',
    })
    .option('seed', { type: 'number', default: 0, describe: 'Seed of k-means, the class-probability points and Monte Carlo', group: 'Report:' })
    .option('bank-fallback', {
      type: 'boolean',
      default: true,
      describe:
        "With a bank: each input takes the nearest centre of its own class and is linearized at itself where that centre's surrogate is off at the input; --no-bank-fallback: the nearest centre, whatever it gives (the paper's Table 3)",
      group: 'Report:',
    })
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
    .option('trust-check', {
      type: 'number',
      default: 256,
      describe:
        'Without --mc: N Monte Carlo samples through the real model for the --mc-inputs inputs, behind their trust verdicts (a result far off fails; no Monte Carlo columns). 0: none',
      group: 'Report:',
    })
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
