/**
 * `netmoments analyze MODEL --input FILE [options]`: the main job. Closed-form mean, exact and
 * paper variance, covariance, class and flip probabilities of the model's output under Gaussian
 * input noise, per input; optional Monte Carlo through the real model beside them. Writes
 * netmoments.analyze/1 JSON (schemas/analyze.schema.json), CSV or the human summary (on a terminal
 * without --out or --format); beside a report the summary goes to stderr.
 */
import type { CommandModule } from 'yargs';
import { analyze, type VarianceMode } from '../analyze.js';
import { parseLinearizationPoint } from '../data/vectors.js';
import { NetmomentsError } from '../errors.js';
import { sampleCount, wholeNumber } from '../experiments/cli.js';
import { analyzeCsv, analyzeStdoutFormat, analyzeSummary } from '../report/analyze.js';
import { allocateFloat32, memoryLimit } from '../resources.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { readFileOrFail } from '../util/files.js';
import {
  checkExists,
  checkRunArgs,
  emit,
  loadModelInput,
  methodFromArgs,
  methodLine,
  noiseFromArgs,
  noiseRunOptions,
  openInputs,
  printableText,
  sessionOptions,
  stderrWriter,
  withProgress,
  type NoiseRunArgs,
} from './common.js';

interface AnalyzeArgs extends NoiseRunArgs {
  model: string;
  input?: string;
  at: string;
  variance: VarianceMode;
  covariance?: boolean;
  mc: number;
  'trust-check': number;
  seed: number;
  format?: 'json' | 'csv' | 'text';
  out?: string;
  quiet?: boolean;
}

export const analyzeCommand: CommandModule<object, AnalyzeArgs> = {
  command: 'analyze <model>',
  describe: 'Mean, variance and covariance of the model output under Gaussian input noise, in closed form',
  builder: (y) =>
    noiseRunOptions(y)
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model file (piecewise-linear: Conv, Gemm, Relu, MaxPool, ...)' })
      .option('input', {
        type: 'string',
        describe:
          'Input x: .npy (model units; one input or a batch [N, ...]), .png/.jpg or MNIST idx (pixels, preprocessed; resized to the model: bilinear up, area average down); default the zero input',
      })
      .option('at', { type: 'string', default: 'mean', describe: "Linearization point: 'mean' (mu = x + noise mean), 'input' (x), or a .npy file" })
      .option('variance', { choices: ['exact', 'paper', 'both', 'none'] as const, default: 'both' as const, describe: 'Which variance to report' })
      .option('covariance', { type: 'boolean', describe: 'Include the full d x d output covariance' })
      .option('mc', { type: 'number', default: 0, describe: 'Also run N Monte Carlo samples through the real model (the paper used 75000)' })
      .option('trust-check', {
        type: 'number',
        default: 256,
        describe:
          'Without --mc: run N Monte Carlo samples through the real model behind the trust verdict, which fails where the numbers are far off (a top class mean more than 2 sd away, an sd off by 1.5x). 0: none',
      })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of Monte Carlo and class probabilities (input i uses (seed, i))' })
      .option('probability-classes', {
        type: 'number',
        describe: 'Class probabilities on the K classes of largest mean, the rest bounded (default: all up to 100 classes, 10 above; 0: all)',
      })
      .option('format', {
        choices: ['json', 'csv', 'text'] as const,
        describe: 'Report format; text is the human summary (default: the summary on a terminal without --out, else JSON)',
      })
      .option('out', { type: 'string', describe: 'Write the report to this file (atomically) instead of stdout' })
      .example(
        '$0 analyze fixtures/lenet.onnx --input fixtures/mnist/digit-0.png --sigma 8 --mc 2000',
        'one MNIST digit, pixel noise sd 8, with Monte Carlo beside',
      )
      .example(
        '$0 analyze fixtures/lenet.onnx --input fixtures/mnist/digit-0.npy --relu 1 --window 10,10,7,7 --sigma 20 --format csv --out r.csv',
        'noise only in a 7x7 patch, split at ReLU 1',
      )
      .example(
        '$0 analyze fixtures/batchnorm-avgpool.onnx --input fixtures/mnist/digit-0.jpg --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --sigma 0.1',
        'a JPEG resized to the 3x12x12 input, normalized per channel; sigma in normalized units (0.1 = 5.8 red levels)',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    // every check that needs no model first: a bad option fails before the model loads
    const mc = wholeNumber('mc', argv.mc, 0);
    const trustCheck = sampleCount('trust-check', argv['trust-check']);
    checkRunArgs(argv);
    const method = methodFromArgs(argv);
    if (argv.at !== 'mean' && method.method === 'propagate')
      throw new NetmomentsError('--at sets a linearization point, which --method propagate does not use; drop one of them', { code: 'BAD_USAGE' });
    if (argv.at !== 'mean' && argv.at !== 'input') checkExists(argv.at, "no such file (--at takes 'mean', 'input' or a .npy file)");
    // The input's shape comes from a linearizer-independent probe: the model's declared input.
    const { model, inputShape, n } = loadModelInput(argv.model, warn, argv);
    let inputs: Float32Array;
    let count: number;
    if (argv.input) {
      const ds = openInputs(argv.input, model, inputShape, argv, undefined, warn);
      count = ds.size;
      if (count === 0) throw new NetmomentsError('holds no inputs', { file: argv.input });
      inputs = ds.getBatch(Array.from({ length: count }, (_, i) => i));
    } else {
      warn(`no --input: analysing the zero input (as in the paper's synthetic study)`);
      inputs = allocateFloat32(n, `the zero input (${n} values)`, argv.model, memoryLimit(argv['max-memory']));
      count = 1;
    }
    // a linearization point is two-stage's: under auto, --at other than 'mean' picks two-stage
    const pointGiven = argv.at !== 'mean' && method.method === 'auto';
    let at: 'mean' | 'input' | Float32Array = 'mean';
    if (argv.at === 'input' || argv.at === 'mean') at = argv.at;
    // checked to exist before the model loaded
    else at = parseLinearizationPoint(readFileOrFail(argv.at), argv.at, n);
    const noise = noiseFromArgs(argv, n, warn);
    const report = await withProgress(argv.quiet || count < 2, 'analyze', count, (update) =>
      analyze(
        model,
        inputs,
        count,
        {
          ...sessionOptions(argv, warn),
          jacobian: argv.jacobian,
          provider: argv.provider,
          ...method,
          ...(pointGiven ? { method: 'two-stage' as const, methodReason: '--at sets a linearization point' } : {}),
          ...noise,
          at,
          variance: argv.variance,
          covariance: argv.covariance,
          mc,
          trustCheck,
          seed: argv.seed,
          probabilityClasses: argv['probability-classes'] as number | undefined,
          linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
          maxMemory: argv['max-memory'],
        },
        update,
      ),
    );
    warn(methodLine(report));
    if (noise.noiseMeanFile) report.noise.meanFile = noise.noiseMeanFile;
    if (typeof at !== 'string' && report.method === 'two-stage') report.linearizationPoint = argv.at;
    const format = analyzeStdoutFormat(argv.format, argv.out, process.stdout.isTTY === true);
    const text = format === 'csv' ? analyzeCsv(report) : format === 'text' ? printableText(analyzeSummary(report)) : `${JSON.stringify(report, null, 2)}\n`;
    emit(text, argv.out);
    // beside a report in a file or a pipe, the summary goes to stderr
    if (!argv.quiet && format !== 'text' && (argv.out || !process.stdout.isTTY)) process.stderr.write(printableText(analyzeSummary(report, argv.out)));
  },
};
