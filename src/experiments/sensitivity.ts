/**
 * Localized noise (the paper's Figure 3): zero-mean isotropic noise of standard deviation sigma
 * inside a w x w window of the input's rows and columns (all channels; where they are is the image
 * layout rule of data/layout.ts, [C, H, W] or [H, W, C]), slid with a stride over the image. For each window position the closed-form moments of the output decide whether the noise
 * there fools the network:
 *   - from the analytic mean (the paper): argmax E[g] != the clean class;
 *   - from the flip probability (beyond the paper): P(argmax g != clean class) under
 *     N(E[g], Cov[g]) with the exact covariance, by the moments engine's quasi-Monte Carlo.
 *
 * One Jacobian per image: the noise is zero-mean, so every window of an image shares the
 * linearization point x; A (p x n), B and D are computed once with identity directions and each
 * window W only slices A's columns: S_W = sigma^2 A_W A_W^T (docs/ARCHITECTURE.md, section 4, cost model).
 *
 * Flip probabilities: when the Cantelli union bound (classprob.ts) on P(flip) is below `skipBelow`
 * (default 1e-4), the probability is reported as 0 without sampling (its true value is below the
 * bound); the QMC standard error otherwise is about 0.5/sqrt(points * shifts).
 */
import { NetmomentsError } from '../errors.js';
import { Linearizer, type LinearizerOptions, type TensorDescription } from '../linearize/linearizer.js';
import { cantelliMarginBound, classProbabilities } from '../moments/classprob.js';
import type { LinearAlgebra } from '../moments/linalg.js';
import { networkMoments } from '../moments/network.js';
import { checkSigma, windowIndices } from '../noise.js';
import { describeGeometry, requireImageGeometry, type ImageLayout, type LayoutChoice } from '../data/layout.js';
import type { LoadedModel } from '../onnx/load.js';
import type { SplitPoint } from '../onnx/splitpoint.js';
import { seedFor } from '../analyze.js';
import { argmax } from '../util/argmax.js';
import { RestrictedSurrogate, pointSurrogate } from './common.js';

export interface SensitivityOptions {
  relu?: number | string;
  output?: string;
  /** The Jacobian engine and onnxruntime provider of the linearization (as analyze's --jacobian, --provider). */
  jacobian?: LinearizerOptions['jacobian'];
  provider?: LinearizerOptions['provider'];
  threads?: number;
  onWarning?: (m: string) => void;
  windowSize: number;
  stride: number;
  sigma: number;
  /** Where the input's rows and columns are (data/layout.ts image layout; default 'auto'). */
  layout?: LayoutChoice;
  /** QMC points per shift (default 512) and shifts (default 8) for the flip probability. */
  probabilityPoints?: number;
  probabilityShifts?: number;
  /** Cantelli bound under which P(flip) is reported as 0 (default 1e-4). */
  skipBelow?: number;
  seed?: number;
  linalg?: LinearAlgebra;
  onProgress?: (done: number, total: number) => void;
}

export interface SensitivityImage {
  index: number;
  /** The dataset label, or null when the data has none. */
  label: number | null;
  cleanClass: number;
  /** Per window position (rows x cols): 1 when argmax E[g] != clean class, else 0. */
  foolingMean: Float64Array;
  /** Per window position: P(argmax g != clean class). */
  flipProbability: Float64Array;
  /** Per window position: E[g_clean] - max_{j != clean} E[g_j] (negative: fooled by the mean). */
  meanMargin: Float64Array;
  /** Windows whose flip probability needed sampling (the others had a Cantelli bound below skipBelow). */
  sampledWindows: number;
}

export interface SensitivityResult {
  split: SplitPoint;
  output: TensorDescription;
  inputShape: number[];
  /** The layout the windows' rows and columns were read in. */
  layout: ImageLayout;
  /** Window positions: top-left corners r * stride, c * stride for r < rows, c < cols. */
  rows: number;
  cols: number;
  images: SensitivityImage[];
}

/** Number of window positions along an axis of length L. */
export function windowPositions(L: number, w: number, stride: number): number {
  return L >= w ? Math.floor((L - w) / stride) + 1 : 0;
}

/** Sliding-window sensitivity maps of the inputs `indices` of `data`. */
export async function sensitivityMaps(
  model: LoadedModel,
  data: { get(i: number): Float32Array; size: number; labels?: Int32Array },
  indices: number[],
  options: SensitivityOptions,
): Promise<SensitivityResult> {
  const w = options.windowSize;
  const stride = options.stride;
  if (!(Number.isInteger(w) && w >= 1)) throw new NetmomentsError(`--window-size must be a whole number >= 1, got ${w}`, { code: 'BAD_USAGE' });
  if (!(Number.isInteger(stride) && stride >= 1)) throw new NetmomentsError(`--stride must be a whole number >= 1, got ${stride}`, { code: 'BAD_USAGE' });
  checkSigma(options.sigma, '--sigma', true);
  const lin = await Linearizer.create(model, {
    relu: options.relu,
    output: options.output,
    jacobian: options.jacobian,
    provider: options.provider,
    threads: options.threads,
    onWarning: options.onWarning,
    flips: false,
  });
  try {
    const shape = lin.input.shape;
    const layout = options.layout ?? 'auto';
    const geometry = requireImageGeometry(shape, layout, 'a sliding window', model.file);
    const rows = windowPositions(geometry.height, w, stride);
    const cols = windowPositions(geometry.width, w, stride);
    if (rows === 0 || cols === 0) {
      throw new NetmomentsError(`a ${w}x${w} window does not fit in the input ${describeGeometry(shape, geometry)}`, { file: model.file, code: 'BAD_USAGE' });
    }
    const windows: Int32Array[] = [];
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) {
        windows.push(windowIndices(shape, { row: r * stride, col: c * stride, height: w, width: w }, model.file, layout));
      }
    const d = lin.d;
    const skip = options.skipBelow ?? 1e-4;
    const images: SensitivityImage[] = [];
    for (let k = 0; k < indices.length; k++) {
      const idx = indices[k];
      const x = data.get(idx);
      const surrogate = await pointSurrogate(lin, x);
      const clean = argmax(await lin.evaluate(x, 1));
      const P = rows * cols;
      const foolingMean = new Float64Array(P);
      const flip = new Float64Array(P);
      const margin = new Float64Array(P);
      let sampled = 0;
      for (let t = 0; t < P; t++) {
        const net = new RestrictedSurrogate(surrogate, windows[t]).network();
        const mom = await networkMoments(net, { kind: 'isotropic', sigma: options.sigma }, { covariance: true, paper: false, linalg: options.linalg });
        const mean = mom.mean;
        const pred = argmax(mean);
        foolingMean[t] = pred !== clean ? 1 : 0;
        let best = -Infinity;
        for (let j = 0; j < d; j++) if (j !== clean && mean[j] > best) best = mean[j];
        margin[t] = mean[clean] - best;
        const cov = mom.covariance!;
        if (cantelliMarginBound(mean, cov, d, clean).bound < skip) {
          flip[t] = 0;
          continue;
        }
        const cp = await classProbabilities(mean, cov, {
          points: options.probabilityPoints ?? 512,
          shifts: options.probabilityShifts ?? 8,
          seed: seedFor(options.seed ?? 0, idx * 65536 + t),
          trueClass: clean,
        });
        flip[t] = cp.misclassification!.probability;
        sampled++;
      }
      images.push({
        index: idx,
        label: data.labels ? data.labels[idx] : null,
        cleanClass: clean,
        foolingMean,
        flipProbability: flip,
        meanMargin: margin,
        sampledWindows: sampled,
      });
      options.onProgress?.(k + 1, indices.length);
    }
    return { split: lin.split, output: lin.output, inputShape: shape, layout: geometry.layout, rows, cols, images };
  } finally {
    await lin.release();
  }
}

export interface ClassMaps {
  class: number;
  images: number;
  /** Average of the per-image maps over the images of this class (NaN when none). */
  foolingMean: Float64Array;
  flipProbability: Float64Array;
}

/** Per-class averages, grouped by label (or by the clean class when the image has no label). */
export function classAverages(result: SensitivityResult, classes: number): ClassMaps[] {
  const P = result.rows * result.cols;
  const out: ClassMaps[] = Array.from({ length: classes }, (_, c) => ({
    class: c,
    images: 0,
    foolingMean: new Float64Array(P),
    flipProbability: new Float64Array(P),
  }));
  for (const im of result.images) {
    const c = im.label ?? im.cleanClass;
    if (!(c >= 0 && c < classes)) continue;
    const o = out[c];
    o.images++;
    for (let t = 0; t < P; t++) {
      o.foolingMean[t] += im.foolingMean[t];
      o.flipProbability[t] += im.flipProbability[t];
    }
  }
  for (const o of out)
    for (let t = 0; t < P; t++) {
      o.foolingMean[t] = o.images > 0 ? o.foolingMean[t] / o.images : Number.NaN;
      o.flipProbability[t] = o.images > 0 ? o.flipProbability[t] / o.images : Number.NaN;
    }
  return out;
}
