/**
 * `netmoments certify MODEL --input F | --data D --sigma S [--mc N] [--alpha 0.001]`: the
 * randomized-smoothing certified L2 radius per input (Cohen et al. 2019; experiments/certify.ts):
 * the analytic estimate beside, with --mc, the sound Monte Carlo certificate. A table on stderr,
 * netmoments.certify/1 JSON to --out (or stdout), and with --data a CSV beside the JSON.
 */
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import { certify } from '../experiments/certify.js';
import { numberIn, wholeNumber } from '../experiments/cli.js';
import { certifyCsv, certifyJson, certifyTable } from '../report/certify.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { writeFileAtomic } from '../util/files.js';
import {
  checkRunArgs,
  emit,
  loadModelInput,
  methodFromArgs,
  methodLine,
  methodOptions,
  modelRunOptions,
  printableText,
  selectInputs,
  selectionOptions,
  sessionOptions,
  stderrWriter,
  withProgress,
  type MethodArgs,
  type SelectionArgs,
} from './common.js';

interface CertifyArgs extends SelectionArgs, MethodArgs {
  model: string;
  input?: string;
  data?: string;
  sigma: number;
  mc: number;
  n0: number;
  alpha: number;
  seed: number;
  window?: string;
  out?: string;
  quiet?: boolean;
}

export const certifyCommand: CommandModule<object, CertifyArgs> = {
  command: 'certify <model>',
  describe: 'Certified L2 radius per input by randomized smoothing: the analytic estimate and, with --mc, the Monte Carlo certificate',
  builder: (y) =>
    selectionOptions(methodOptions(modelRunOptions(y)), 'Labels file: the report says which radii belong to the right class')
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX classifier' })
      .option('input', { type: 'string', describe: 'Input(s): .npy (model units; one or a batch), .png or MNIST idx' })
      .option('data', { type: 'string', describe: 'A dataset (.npy batch, idx, a folder of PNGs); a CSV is written beside --out' })
      .conflicts('input', 'data')
      .option('sigma', {
        type: 'number',
        demandOption: true,
        describe: 'Noise sd of the smoothed classifier, in model input units, on every input element',
      })
      .option('mc', { type: 'number', default: 0, describe: "Also run Cohen et al.'s CERTIFY with N Monte Carlo samples per input (e.g. 100000)" })
      .option('n0', { type: 'number', default: 100, describe: 'Samples that pick the class of the Monte Carlo certificate' })
      .option('alpha', { type: 'number', default: 0.001, describe: 'The Monte Carlo certificate holds with probability 1 - alpha' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the class probabilities and the Monte Carlo samples' })
      .option('window', { type: 'string', hidden: true, describe: 'Refused: a certificate needs noise on every input element' })
      .option('out', { type: 'string', describe: 'Write the JSON report here (atomically) instead of stdout' })
      .example('$0 certify fixtures/lenet.onnx --input fixtures/mnist/digit-0.png --sigma 64 --mc 10000', 'one digit: estimate and certificate')
      .example(
        '$0 certify fixtures/lenet.onnx --data fixtures/mnist/digits-100.npy --labels fixtures/mnist/labels-100.npy --count 10 --sigma 64 --out cert.json',
        'ten digits, analytic estimates only; cert.json and cert.csv',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    if (argv.window !== undefined)
      throw new NetmomentsError(
        'certify does not take --window: the certified radius of randomized smoothing holds only for noise on every input element (a window would certify nothing outside it)',
        { code: 'BAD_USAGE' },
      );
    const source = argv.input ?? argv.data;
    if (!source) throw new NetmomentsError('certify needs --input FILE or --data FILE', { code: 'BAD_USAGE' });
    numberIn('sigma', argv.sigma, 0, Infinity, { lo: true, hi: true });
    const mc = argv.mc === 0 ? 0 : wholeNumber('mc', argv.mc, 2);
    const n0 = wholeNumber('n0', argv.n0, 2);
    const alpha = numberIn('alpha', argv.alpha, 0, 1, { lo: true, hi: true });
    const count = checkRunArgs(argv);
    const { model, inputShape } = loadModelInput(argv.model, warn, argv);
    const { ds, indices } = selectInputs(source, model, inputShape, argv, count, warn);
    const labels = ds.labels ? indices.map((i) => ds.labels![i]) : null;
    const rep = await withProgress(argv.quiet || indices.length < 2, 'certify', indices.length, (update) =>
      certify(model, ds.getBatch(indices), indices.length, labels, {
        ...sessionOptions(argv, warn),
        ...methodFromArgs(argv),
        sigma: argv.sigma,
        mc,
        n0,
        alpha,
        seed: argv.seed,
        linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
        maxMemory: argv['max-memory'],
        onProgress: update,
      }),
    );
    warn(methodLine(rep));
    const info = { model: { file: model.file, sha256: model.sha256 }, data: source, indices, seed: argv.seed, version: VERSION };
    emit(certifyJson(rep, info), argv.out);
    if (argv.data && argv.out) {
      const csvFile = argv.out.replace(/\.json$/i, '') + '.csv';
      writeFileAtomic(csvFile, certifyCsv(rep, indices));
      warn(`wrote ${argv.out} and ${csvFile}`);
    }
    if (!argv.quiet) process.stderr.write(printableText(certifyTable(rep, indices)));
  },
};
