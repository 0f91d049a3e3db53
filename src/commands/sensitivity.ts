/**
 * `netmoments sensitivity MODEL --data D [--labels L] --window-size 7 --stride 1 --sigma S --out-dir DIR`:
 * zero-mean noise in a sliding window (the paper's Figure 3), one Jacobian per image. Writes
 * DIR/sensitivity.json (netmoments.sensitivity/1), the raw per-image maps and the per-class averages
 * as .npy, and the per-class average maps as PNG heat maps with a colour scale.
 */
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { encodeNpy } from '../data/npy.js';
import { NetmomentsError } from '../errors.js';
import { Linearizer } from '../linearize/linearizer.js';
import { loadModel } from '../onnx/load.js';
import { heatmapPng } from '../report/heatmap.js';
import { progressBar } from '../report/progress.js';
import { writeFilesAtomic } from '../report/write.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { firstIndices, sig, toJson, wholeNumber } from '../experiments/cli.js';
import { classAverages, sensitivityMaps, type SensitivityImage } from '../experiments/sensitivity.js';
import { modelRunOptions, openInputs, stderrWriter, type ModelRunArgs } from './common.js';

interface SensitivityArgs extends ModelRunArgs {
  model: string;
  data: string;
  labels?: string;
  count?: number;
  start: number;
  'window-size': number;
  stride: number;
  sigma: number;
  'probability-points': number;
  seed: number;
  'out-dir': string;
  quiet?: boolean;
}

function stack(maps: Float64Array[]): Float32Array {
  const P = maps[0]?.length ?? 0;
  const out = new Float32Array(maps.length * P);
  maps.forEach((m, i) => out.set(m, i * P));
  return out;
}

function mean(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return v.length > 0 ? s / v.length : Number.NaN;
}

export const sensitivityCommand: CommandModule<object, SensitivityArgs> = {
  command: 'sensitivity <model>',
  describe: 'Sliding-window noise: where does zero-mean noise fool the model? Per-class fooling maps (PNG heat maps and .npy)',
  builder: (y) =>
    modelRunOptions(y)
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model' })
      .option('data', { type: 'string', demandOption: true, describe: 'Inputs (.npy in model units, idx, PNG or a folder of PNGs)' })
      .option('labels', { type: 'string', describe: 'Labels file (.npy, idx1 or text): maps are grouped by label (default: by the clean class)' })
      .option('count', { type: 'number', describe: 'Use N inputs from --start (default: all from there)' })
      .option('start', { type: 'number', default: 0, describe: 'Index of the first input used (0-based)' })
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
        '$0 sensitivity fixtures/lenet.onnx --data fixtures/mnist/digits-100.npy --labels fixtures/mnist/labels-100.npy --sigma 100 --out-dir out/fig3',
        'Figure 3 on the bundled LeNet',
      ) as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    const w = wholeNumber('window-size', argv['window-size'], 1);
    const stride = wholeNumber('stride', argv.stride, 1);
    const points = wholeNumber('probability-points', argv['probability-points'], 1);
    if (!(Number.isFinite(argv.sigma) && argv.sigma > 0)) throw new NetmomentsError(`--sigma must be a number > 0, got ${argv.sigma}`, { code: 'BAD_USAGE' });
    if (argv.threads !== undefined) wholeNumber('threads', argv.threads, 1);
    const count = argv.count === undefined ? undefined : wholeNumber('count', argv.count, 1);
    const model = loadModel(argv.model);
    const inputShape = Linearizer.inputShapeOf(model);
    const ds = openInputs(argv.data, model, inputShape, argv, argv.labels, warn);
    const indices = firstIndices(ds.size, count, argv.data, wholeNumber('start', argv.start, 0));
    if (indices.length === 0) throw new NetmomentsError('holds no inputs', { file: argv.data });
    const bar = argv.quiet ? undefined : progressBar('sensitivity', indices.length);
    let result;
    try {
      result = await sensitivityMaps(model, ds, indices, {
        relu: argv.relu,
        output: argv.output,
        threads: argv.threads,
        onWarning: warn,
        windowSize: w,
        stride,
        layout: argv.layout,
        sigma: argv.sigma,
        probabilityPoints: points,
        seed: argv.seed,
        linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
        onProgress: (k) => bar?.update(k),
      });
    } finally {
      bar?.stop();
    }
    const { rows, cols } = result;
    const d = result.output.size;
    const classes = classAverages(result, d);
    const N = result.images.length;
    const shape = [N, rows, cols];
    const grouped = ds.labels ? 'label' : 'clean class';
    const panels = (pick: (c: (typeof classes)[number]) => Float64Array) =>
      classes.map((c) => ({ title: `${c.class} (n=${c.images})`, values: pick(c), rows, cols }));
    const files: Record<string, Uint8Array | string> = {
      'fooling-mean.npy': encodeNpy(stack(result.images.map((im) => im.foolingMean)), shape),
      'flip-probability.npy': encodeNpy(stack(result.images.map((im) => im.flipProbability)), shape),
      'mean-margin.npy': encodeNpy(stack(result.images.map((im) => im.meanMargin)), shape),
      'class-fooling-mean.npy': encodeNpy(stack(classes.map((c) => c.foolingMean)), [d, rows, cols]),
      'class-flip-probability.npy': encodeNpy(stack(classes.map((c) => c.flipProbability)), [d, rows, cols]),
      'fooling-mean.png': heatmapPng(
        panels((c) => c.foolingMean),
        {
          vmin: 0,
          title: `fooled by the mean, per ${grouped}: ${w}x${w} window, sigma ${argv.sigma}`,
          colorbarLabel: 'rate',
          cell: Math.max(2, Math.round(160 / Math.max(rows, cols))),
        },
      ),
      'flip-probability.png': heatmapPng(
        panels((c) => c.flipProbability),
        {
          vmin: 0,
          title: `P(flip), average per ${grouped}: ${w}x${w} window, sigma ${argv.sigma}`,
          colorbarLabel: 'P(flip)',
          cell: Math.max(2, Math.round(160 / Math.max(rows, cols))),
        },
      ),
    };
    const imageSummary = (im: SensitivityImage) => {
      let best = 0;
      for (let t = 1; t < im.flipProbability.length; t++) if (im.flipProbability[t] > im.flipProbability[best]) best = t;
      return {
        input: im.index,
        label: im.label,
        cleanClass: im.cleanClass,
        foolingRateMean: mean(im.foolingMean),
        meanFlipProbability: mean(im.flipProbability),
        mostSensitiveWindow: {
          row: Math.floor(best / cols) * stride,
          col: (best % cols) * stride,
          flipProbability: im.flipProbability[best],
          meanMargin: im.meanMargin[best],
        },
        sampledWindows: im.sampledWindows,
      };
    };
    const report = {
      schema: 'netmoments.sensitivity/1',
      model: model.file,
      data: argv.data,
      split: result.split,
      output: result.output,
      noise: { kind: 'isotropic', sigma: argv.sigma, windowSize: w, stride, channels: 'all', layout: result.layout },
      positions: { rows, cols, inputShape: result.inputShape, note: 'cell (r, c) is the window with top-left corner (r * stride, c * stride)' },
      run: { version: VERSION, modelSha256: model.sha256, seed: argv.seed, probabilityPoints: points, probabilityShifts: 8, skipBelow: 1e-4 },
      groupedBy: ds.labels ? 'label' : 'cleanClass',
      overall: {
        images: N,
        foolingRateMean: mean(result.images.map((im) => mean(im.foolingMean))),
        meanFlipProbability: mean(result.images.map((im) => mean(im.flipProbability))),
      },
      classes: classes.map((c) => ({
        class: c.class,
        images: c.images,
        foolingRateMean: c.images ? mean(c.foolingMean) : null,
        meanFlipProbability: c.images ? mean(c.flipProbability) : null,
      })),
      images: result.images.map(imageSummary),
      files: Object.keys(files),
    };
    files['sensitivity.json'] = toJson(report);
    writeFilesAtomic(argv['out-dir'], files);
    if (!argv.quiet) {
      process.stderr.write(
        `sensitivity of ${model.file} (ReLU ${result.split.index}): ${N} images x ${rows * cols} windows of ${w}x${w}, sigma ${argv.sigma}: ` +
          `fooled by the mean in ${sig(100 * report.overall.foolingRateMean)}% of (image, window) pairs, average P(flip) ${sig(report.overall.meanFlipProbability)}; wrote ${argv['out-dir']}\n`,
      );
    }
  },
};
