/**
 * `netmoments sensitivity MODEL --data D [--labels L] --window-size 7 --stride 1 --sigma S --out-dir DIR`:
 * zero-mean noise in a sliding window (the paper's Figure 3; experiments/sensitivity.ts), one
 * Jacobian per image. Writes DIR/sensitivity.json (netmoments.sensitivity/1), the raw per-image maps
 * and the per-class averages as .npy, and the per-class average maps as PNG heat maps with a colour
 * scale (report/sensitivity.ts).
 */
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import { wholeNumber } from '../experiments/cli.js';
import { sensitivityMaps } from '../experiments/sensitivity.js';
import { sensitivityFiles, sensitivitySummary } from '../report/sensitivity.js';
import { writeFilesAtomic } from '../util/files.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { displayPreprocessing } from '../data/inputs.js';
import {
  checkRunArgs,
  dataOptions,
  preprocessingArgs,
  loadModelInput,
  selectInputs,
  sessionOptions,
  stderrWriter,
  withProgress,
  type SelectionArgs,
} from './common.js';

interface SensitivityArgs extends SelectionArgs {
  model: string;
  data: string;
  'window-size': number;
  stride: number;
  sigma: number;
  'probability-points': number;
  seed: number;
  'out-dir': string;
  quiet?: boolean;
}

export const sensitivityCommand: CommandModule<object, SensitivityArgs> = {
  command: 'sensitivity <model>',
  describe: 'Sliding-window noise: where does zero-mean noise fool the model? Per-class fooling maps (PNG heat maps and .npy)',
  builder: (y) =>
    dataOptions(y, 'Labels file (.npy, idx1 or text): maps are grouped by label (default: by the clean class)')
      .option('window-size', {
        type: 'number',
        default: 7,
        describe: "Window side w (the noise covers w x w of the input's rows and columns, all channels; see --layout)",
      })
      .option('stride', { type: 'number', default: 1, describe: 'Window stride' })
      .option('sigma', { type: 'number', demandOption: true, describe: 'Noise standard deviation inside the window (model input units)' })
      .option('probability-points', { type: 'number', default: 512, describe: 'Quasi-Monte Carlo points per shift (8 shifts) for the flip probability' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the quasi-Monte Carlo shifts' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for sensitivity.json, the .npy maps and the PNG heat maps' })
      .example(
        '$0 sensitivity fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --labels fixtures/mnist/labels-10.npy --stride 3 --sigma 100 --out-dir out/fig3',
        'Figure 3 on the bundled LeNet',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    const w = wholeNumber('window-size', argv['window-size'], 1);
    const stride = wholeNumber('stride', argv.stride, 1);
    const points = wholeNumber('probability-points', argv['probability-points'], 1);
    if (!(Number.isFinite(argv.sigma) && argv.sigma > 0)) throw new NetmomentsError(`--sigma must be a number > 0, got ${argv.sigma}`, { code: 'BAD_USAGE' });
    const count = checkRunArgs(argv);
    const { model, inputShape } = loadModelInput(argv.model, warn, argv);
    const { ds, indices } = selectInputs(argv.data, model, inputShape, argv, count, warn);
    const { sigma, seed, layout } = argv;
    const info = {
      model,
      data: argv.data,
      labelled: !!ds.labels,
      sigma,
      windowSize: w,
      stride,
      seed,
      probabilityPoints: points,
      version: VERSION,
      display: displayPreprocessing({ metadata: model.graph.metadata, modelFile: model.file, ...preprocessingArgs(argv) }),
    };
    const result = await withProgress(argv.quiet, 'sensitivity', indices.length, (update) =>
      sensitivityMaps(model, ds, indices, {
        ...sessionOptions(argv, warn),
        windowSize: w,
        stride,
        layout,
        sigma,
        probabilityPoints: points,
        seed,
        linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
        onProgress: update,
      }),
    );
    const { files, report } = sensitivityFiles(
      result,
      info,
      indices.map((i) => ds.get(i)),
    );
    writeFilesAtomic(argv['out-dir'], files);
    if (!argv.quiet) process.stderr.write(sensitivitySummary(report, argv['out-dir']));
  },
};
