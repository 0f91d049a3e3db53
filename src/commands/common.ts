/**
 * What several commands share: the noise options (analyze, report, gate, sensitivity...), reading
 * inputs with the model's preprocessing, and writing a report to a file (atomically) or stdout.
 */
import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { NetmomentsError } from '../errors.js';
import { openDataset, type Dataset } from '../data/dataset.js';
import { parseNpy, npyToFloat64 } from '../data/npy.js';
import { LAYOUT_CHOICES, checkCovariance, checkInputVector, parseLayoutChoice, pngLayoutFor, type LayoutChoice } from '../data/layout.js';
import { preprocessingFromMetadata, type Preprocessing } from '../data/preprocess.js';
import type { LoadedModel } from '../onnx/load.js';
import { parseWindow, type InputWindow, type NoiseSpec } from '../noise.js';
import { writeFileAtomic } from '../report/write.js';
import type { AnalyzeOptions } from '../analyze.js';

export interface NoiseArgs {
  sigma?: number;
  'noise-var'?: string;
  'noise-cov'?: string;
  'noise-mean'?: string;
  window?: string;
}

export interface ModelRunArgs {
  relu?: string;
  output?: string;
  jacobian?: 'auto' | 'jvp' | 'fd';
  threads?: number;
  provider?: 'cpu' | 'cuda';
  scale?: number;
  offset?: number;
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
  return y
    .option('relu', { type: 'string', describe: 'ReLU to split at: 0-based index from `inspect`, or a node name (default: the last ReLU)', group: 'Model:' })
    .option('output', { type: 'string', describe: 'The tensor g: a model output or an intermediate tensor (default: the first output)', group: 'Model:' })
    .option('jacobian', {
      choices: ['auto', 'jvp', 'fd'] as const,
      default: 'auto' as const,
      describe: 'Jacobians by forward-mode JVP, finite differences, or JVP with FD fallback',
      group: 'Model:',
    })
    .option('threads', { type: 'number', describe: 'onnxruntime intra-op threads (default: onnxruntime decides)', group: 'Model:' })
    .option('provider', { choices: ['cpu', 'cuda'] as const, default: 'cpu' as const, describe: 'onnxruntime execution provider', group: 'Model:' })
    .option('scale', {
      type: 'number',
      describe: 'Preprocessing for image inputs (PNG, idx, uint8 .npy): model = pixel/255 * scale + offset (default: from the model metadata, else 1)',
      group: 'Model:',
    })
    .option('offset', { type: 'number', describe: 'Preprocessing offset (see --scale)', group: 'Model:' })
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

function readVector(path: string, n: number, what: string): Float64Array {
  const bytes = readBytes(path);
  const a = parseNpy(bytes, path);
  checkInputVector(a.shape, n, what, path);
  const v = npyToFloat64(a);
  // the model runs in float32: a value beyond its range (or NaN/Inf) cannot be fed
  for (let i = 0; i < v.length; i++) {
    if (!(Math.abs(v[i]) <= FLOAT32_MAX)) throw new NetmomentsError(`${what} holds ${v[i]} at element ${i}, not a finite float32 value`, { file: path });
  }
  return v;
}

const FLOAT32_MAX = 3.4028234663852886e38;

function readBytes(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new NetmomentsError(code === 'ENOENT' ? 'no such file' : `cannot read the file (${code})`, { file: path });
  }
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
    noise = { kind: 'diagonal', variance: readVector(noiseFile, n, 'the noise variance') };
  } else if (args['noise-cov']) {
    noiseFile = args['noise-cov'];
    const a = parseNpy(readBytes(noiseFile), noiseFile);
    checkCovariance(a.shape, n, noiseFile);
    noise = { kind: 'full', cov: npyToFloat64(a) };
    // the model runs in float32: a (co)variance beyond its range cannot be sampled or pushed through it
    noise.cov.forEach((v, i) => {
      if (!(Math.abs(v) <= FLOAT32_MAX))
        throw new NetmomentsError(`the noise covariance holds ${v} at element ${i}, not a finite float32 value`, { file: noiseFile });
    });
  } else {
    if (args.sigma === undefined) warn('no noise given: using isotropic noise with sigma 1 (model input units); set --sigma, --noise-var or --noise-cov');
    noise = { kind: 'isotropic', sigma: args.sigma ?? 1 };
    if (!Number.isFinite(noise.sigma) || noise.sigma < 0) {
      throw new NetmomentsError(`--sigma must be a finite number >= 0, got ${args.sigma}`, { code: 'BAD_USAGE' });
    }
  }
  const window: InputWindow | undefined = args.window ? parseWindow(args.window) : undefined;
  const noiseMean = args['noise-mean'] ? readVector(args['noise-mean'], n, 'the noise mean') : undefined;
  return { noise, noiseFile, window, layout: parseLayoutChoice(args.layout), noiseMean, noiseMeanFile: args['noise-mean'] };
}

/** Preprocessing for image-like sources: --scale/--offset, else the model's metadata, else identity. */
export function preprocessingFor(model: LoadedModel, args: ModelRunArgs, warn?: (m: string) => void): Preprocessing {
  const meta = preprocessingFromMetadata(model.graph.metadata, model.file);
  const p = { scale: args.scale ?? meta?.scale ?? 1, offset: args.offset ?? meta?.offset ?? 0 };
  if (meta && args.scale === undefined && args.offset === undefined && warn) {
    warn(
      `image inputs are scaled as the model's metadata says: pixel/255 * ${p.scale} ${p.offset < 0 ? '-' : '+'} ${Math.abs(p.offset)}${meta.source ? ` (${meta.source})` : ''}`,
    );
  }
  return p;
}

/** Is this data source raw pixels (PNG, idx, uint8 .npy), to which image preprocessing applies? */
function isPixelSource(path: string, ds: Dataset): boolean {
  if (ds.kind !== 'npy') return true;
  try {
    return parseNpy(readBytes(path), path).dtype === 'uint8';
  } catch {
    return false;
  }
}

/**
 * Open inputs for a model: float .npy files are model units; image sources get the preprocessing.
 * PNG pixels are laid out as the model's input is (--layout, else the image layout rule).
 */
export function openInputs(path: string, model: LoadedModel, inputShape: number[], args: ModelRunArgs, labels?: string, warn?: (m: string) => void): Dataset {
  const layout = pngLayoutFor(inputShape, parseLayoutChoice(args.layout));
  const probe = openDataset(path, { inputShape, labels, layout });
  if (!isPixelSource(path, probe)) return probe;
  return openDataset(path, { inputShape, labels, layout, preprocessing: preprocessingFor(model, args, warn) });
}

/** Write a report to `out` atomically, or to stdout. */
export function emit(text: string, out?: string): void {
  if (out) writeFileAtomic(out, text);
  else process.stdout.write(text);
}

/** One-line warnings to stderr (unless --quiet), each distinct message once per run. */
export function stderrWriter(quiet?: boolean): (m: string) => void {
  // several model parts and sessions can meet the same thing (an op without a tangent rule below
  // the cut is seen by the main and the flip-counting engine): say each message once
  const said = new Set<string>();
  return (m: string) => {
    if (quiet || said.has(m)) return;
    said.add(m);
    process.stderr.write(`netmoments: ${printableText(m)}\n`);
  };
}

/** Text that quotes names from a model, with control characters other than newlines shown as '?' (no terminal escapes). */
export function printableText(s: string): string {
  return s.replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, '?');
}
