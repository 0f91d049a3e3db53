/**
 * The options several commands share: noise (analyze, report, gate, tightness...), model run, input
 * selection (--labels, --count, --start), turned into checked values. What the commands share at
 * run time (inputs, progress, writing the report) is in run.ts, and --method in methodOptions.ts.
 */
import type { Argv } from 'yargs';
import type { AnalyzeOptions } from '../analyze.js';
import { LAYOUT_CHOICES, parseLayoutChoice, type LayoutChoice } from '../data/layout.js';
import { readCovariance, readInputVector } from '../data/vectors.js';
import { NetmomentsError } from '../errors.js';
import { methodOptions, type MethodArgs } from './methodOptions.js';
import { inputFeedOptions, type InputFeedArgs } from './inputFeeds.js';
import { preprocessOptions, type PreprocessArgs } from './preprocessOptions.js';
import { checkSigma, parseWindow, type NoiseSpec } from '../noise.js';

export { methodFromArgs, methodLine, methodOptions, type MethodArgs } from './methodOptions.js';
export { preprocessingArgs } from './preprocessOptions.js';
export { checkExists, checkNoiseArgs, checkRunArgs } from './checks.js';
export { emit, loadModelInput, openInputs, preprocessingFor, printableText, selectInputs, sessionOptions, stderrWriter, withProgress } from './run.js';

export interface NoiseArgs {
  sigma?: number;
  'noise-var'?: string;
  'noise-cov'?: string;
  'noise-mean'?: string;
  window?: string;
}

export interface ModelRunArgs extends PreprocessArgs, InputFeedArgs {
  relu?: string;
  output?: string;
  jacobian?: 'auto' | 'forward' | 'reverse' | 'jvp' | 'fd';
  threads?: number;
  workers?: number;
  provider?: 'cpu' | 'cuda';
  'max-memory'?: string;
  layout?: LayoutChoice;
}

/** --help text of --layout (the rule itself lives in data/layout.ts). */
export const LAYOUT_HELP =
  "Image layout of the model's input (without the batch axis), for windows, pictures and PNG pixels: chw = [C, H, W], hwc = [H, W, C]; " +
  'auto: [H, W, C] when the last axis is 1, 3 or 4 and the first is not (e.g. [28, 28, 1]), else [C, H, W]; [H, W] is one channel, a rank-1 input is not an image';

export function noiseOptions<T>(y: Argv<T>): Argv<T & NoiseArgs> {
  return y
    .option('sigma', { type: 'number', describe: 'Isotropic noise: Sigma = sigma^2 I, sigma in model input units (default 1)', group: 'Noise:' })
    .option('noise-var', { type: 'string', describe: 'Diagonal noise: .npy of n per-element variances', group: 'Noise:' })
    .option('noise-cov', { type: 'string', describe: 'Full noise covariance: .npy of n x n (symmetric PSD)', group: 'Noise:' })
    .option('noise-mean', { type: 'string', describe: '.npy of n values added to every input (mu = x + noise mean; default 0)', group: 'Noise:' })
    .option('window', {
      type: 'string',
      describe:
        'R,C,H,W: keep the noise only inside rows R..R+H-1 and columns C..C+W-1 of the input image, all channels (rows and columns as --layout reads the input)',
      group: 'Noise:',
    })
    .conflicts('sigma', ['noise-var', 'noise-cov'])
    .conflicts('noise-var', 'noise-cov') as unknown as Argv<T & NoiseArgs>;
}

export function modelRunOptions<T>(y: Argv<T>): Argv<T & ModelRunArgs> {
  return inputFeedOptions(preprocessOptions(y))
    .option('relu', { type: 'string', describe: 'ReLU to split at: 0-based index from `inspect`, or a node name (default: the last ReLU)', group: 'Model:' })
    .option('output', { type: 'string', describe: 'The tensor g: a model output or an intermediate tensor (default: the first output)', group: 'Model:' })
    .option('jacobian', {
      choices: ['auto', 'forward', 'reverse', 'jvp', 'fd'] as const,
      default: 'auto' as const,
      describe:
        'Jacobians: auto (forward- or reverse-mode by cost, finite differences where an op has no tangent rule), forward (JVPs; jvp is its old name), reverse (VJPs where every op has an adjoint rule, else forward), fd (central finite differences)',
      group: 'Model:',
    })
    .option('threads', { type: 'number', describe: 'onnxruntime intra-op threads (default: onnxruntime decides)', group: 'Model:' })
    .option('workers', {
      type: 'number',
      describe:
        "Worker threads, each with its own onnxruntime session, for the reverse passes of two-stage on large inputs (e.g. VGG at fc7 with noise on the whole image): each holds the bottom part's weights once more. Default: one per core beyond the first, at most 3, fewer if the memory limit needs; 0: none",
      group: 'Model:',
    })
    .option('provider', { choices: ['cpu', 'cuda'] as const, default: 'cpu' as const, describe: 'onnxruntime execution provider', group: 'Model:' })
    .option('max-memory', {
      type: 'string',
      describe: 'Refuse a run whose estimated memory exceeds this size, e.g. 512M or 4G (default: 80% of the memory available)',
      group: 'Model:',
    })
    .option('layout', {
      choices: LAYOUT_CHOICES,
      default: 'auto' as LayoutChoice,
      describe: LAYOUT_HELP,
      group: 'Model:',
    }) as unknown as Argv<T & ModelRunArgs>;
}

/** The noise options, the model-run options and the method: what commands that analyse a model under noise (analyze, tightness) take. */
export type NoiseRunArgs = NoiseArgs & ModelRunArgs & MethodArgs;

export function noiseRunOptions<T>(y: Argv<T>): Argv<T & NoiseRunArgs> {
  return methodOptions(modelRunOptions(noiseOptions(y)));
}

/** The noise spec, window and noise mean from the options, for inputs of n elements. */
export function noiseFromArgs(
  args: NoiseArgs & { layout?: LayoutChoice },
  n: number,
  warn: (m: string) => void,
): Pick<AnalyzeOptions, 'noise' | 'noiseFile' | 'window' | 'noiseMean' | 'layout'> & { noiseMeanFile?: string } {
  let noise: NoiseSpec;
  let noiseFile: string | undefined;
  if (args['noise-var']) {
    noiseFile = args['noise-var'];
    noise = { kind: 'diagonal', variance: readInputVector(noiseFile, n, 'the noise variance') };
  } else if (args['noise-cov']) {
    noiseFile = args['noise-cov'];
    noise = { kind: 'full', cov: readCovariance(noiseFile, n) };
  } else {
    if (args.sigma === undefined) warn('no noise given: using isotropic noise with sigma 1 (model input units); set --sigma, --noise-var or --noise-cov');
    noise = { kind: 'isotropic', sigma: args.sigma ?? 1 };
    checkSigma(noise.sigma);
  }
  const window = args.window ? parseWindow(args.window) : undefined;
  const noiseMean = args['noise-mean'] ? readInputVector(args['noise-mean'], n, 'the noise mean') : undefined;
  return { noise, noiseFile, window, layout: parseLayoutChoice(args.layout), noiseMean, noiseMeanFile: args['noise-mean'] };
}

/** --labels, --count and --start: which inputs of the data a command that runs the model uses. */
export interface SelectionArgs extends ModelRunArgs {
  labels?: string;
  count?: number;
  start: number;
}

export function selectionOptions<T>(y: Argv<T>, labelsHelp: string): Argv<T & SelectionArgs> {
  return y
    .option('labels', { type: 'string', describe: labelsHelp })
    .option('count', { type: 'number', describe: 'Use N inputs from --start (default: all from there)' })
    .option('start', { type: 'number', default: 0, describe: 'Index of the first input used (0-based)' }) as unknown as Argv<T & SelectionArgs>;
}

/** The model-run options, the model and --data (required) and the input selection: the options every command over a dataset starts with. */
export function dataOptions<T>(y: Argv<T>, labelsHelp: string): Argv<T & SelectionArgs & { model: string; data: string }> {
  const withData = modelRunOptions(y)
    .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model' })
    .option('data', { type: 'string', demandOption: true, describe: 'Inputs (.npy in model units, idx, PNG/JPEG, a folder of them or of class folders)' });
  return selectionOptions(withData, labelsHelp) as unknown as Argv<T & SelectionArgs & { model: string; data: string }>;
}
