/**
 * Tightness of the closed-form moments against Monte Carlo through the real model (the paper's
 * Table 1 and Figure 2).
 *
 * A study is one (model, split, noise setting) with R runs. Each run gives, per output i, the
 * analytic mean, exact variance and the paper's (Theorem 2) variance, and the Monte Carlo mean and
 * variance. Two kinds of runs:
 *   - data: run k analyses input k of a dataset under the user's noise (linearized at the image,
 *     as the paper does for LeNet on MNIST, Table 1);
 *   - synthetic: the input mean is 0 (the paper's synthetic study, linearized at x = 0; with
 *     meanSd > 0 each run draws mu ~ N(0, meanSd^2 I) and linearizes there), and run k draws a
 *     random covariance in a regime of maximum variance V:
 *       t_k ~ U(0.01, 1),  v_i ~ U(0, t_k V) per input element,
 *       Sigma = diag(sqrt v) R diag(sqrt v),  R = G G^T with G n x n i.i.d. normal, rows normalised,
 *     so every variance is at most V, the correlations are random and full rank, and the runs spread
 *     over two orders of magnitude of noise (a fit through the origin needs spread). The factor
 *     F = diag(sqrt v) G goes straight into the JVPs and the Monte Carlo (no eigendecomposition).
 * Per output the table holds mean and standard deviation over runs of MC/analytic for the mean, the
 * exact and the paper's variance, and of the mean error in output standard deviations,
 * |MC mean - analytic mean| / MC sd, which stays meaningful where a mean is near 0. The Figure-2
 * fit is the least-squares slope through the origin of MC against analytic over all (run, output)
 * points, with R^2 (centred, and the uncentred R^2 usual for fits through the origin).
 *
 * Data runs also get a propagate column (moments through every layer, src/propagate/) beside the
 * two-stage one, against the same Monte Carlo, unless the method is 'two-stage' or, under 'auto',
 * the model has an op without a moment rule (src/method.ts). Synthetic runs are two-stage only.
 */
import { Analyzer, seedFor } from '../analyze.js';
import type { Dataset } from '../data/dataset.js';
import type { LayoutChoice } from '../data/layout.js';
import { NetmomentsError } from '../errors.js';
import { Linearizer, type LayerFlips, type LinearizerOptions, type TensorDescription } from '../linearize/linearizer.js';
import type { LinearAlgebra } from '../moments/linalg.js';
import { Rng } from '../moments/montecarlo.js';
import { projectedMoments } from '../moments/surrogate.js';
import { factorFromRows, type NoiseSpec, type InputWindow } from '../noise.js';
import type { MethodChoice } from '../method.js';
import type { LoadedModel } from '../onnx/load.js';
import type { SplitPoint } from '../onnx/splitpoint.js';
import { fitThroughOrigin, meanStd, monteCarloFactor, type MeanStd, type OriginFit } from './common.js';

/** The paper's linearization "at l = 2": the second ReLU, split index 1. */
export const PAPER_RELU = 1;
/** The paper's synthetic regimes: maximum variances 1e-4, 1 and 200. */
export const PAPER_REGIMES = [1e-4, 1, 200];

export interface TightnessRun {
  run: number;
  /** Data runs: the dataset index of the input. */
  input?: number;
  /** Synthetic runs: t_k V, the largest variance this draw allows. */
  maxVariance?: number;
  /** Synthetic runs with random input means: |mu|. */
  inputMeanNorm?: number;
  analytic: { mean: number[]; variance: number[]; variancePaper: number[] };
  mc: { samples: number; mean: number[]; variance: number[]; meanStdErr: number[] };
  /** Expected state changes of the other nonlinear layers under the linearized noise. */
  expectedFlips: LayerFlips[];
  /** Moments propagated through every layer (data runs with a propagate column). */
  propagate?: { mean: number[]; variance: number[] };
}

/** MC/analytic ratios and the mean error in output sd over the runs; null where no run gave a finite value. */
export interface TightnessRow {
  output: number;
  meanRatio: MeanStd;
  varianceRatio: MeanStd;
  variancePaperRatio: MeanStd;
  meanErrorSd: MeanStd;
  /** The same ratios of the propagate column, when the study has one. */
  propagate?: { meanRatio: MeanStd; varianceRatio: MeanStd; meanErrorSd: MeanStd };
}

export interface TightnessStudy {
  name: string;
  model: string;
  split: SplitPoint;
  output: TensorDescription;
  mode: 'data' | 'synthetic';
  /** Data: the noise of every run; synthetic: the regime. */
  noise: { kind: string; sigma?: number; file?: string; window?: number[] | null; maxVariance?: number; inputMeanSd?: number; construction?: string };
  linearizationPoint: string;
  /** The propagate column: the factor rank and why the method was chosen; null when the study has none (and why not). */
  propagate?: { rank: number; reason: string } | { rank: null; reason: string };
  runs: number;
  mc: number;
  table: TightnessRow[];
  fit: { mean: OriginFit; variance: OriginFit; variancePaper: OriginFit };
  runDetails: TightnessRun[];
}

export interface TightnessCommon {
  runs: number;
  mc: number;
  seed?: number;
  linalg?: LinearAlgebra;
  onProgress?: (done: number, total: number) => void;
}

/** Summaries of a list of runs: the per-output table and the three fits. */
export function summarizeRuns(runs: TightnessRun[], d: number): { table: TightnessRow[]; fit: TightnessStudy['fit'] } {
  const table: TightnessRow[] = [];
  const ax: number[] = [],
    ay: number[] = [],
    vx: number[] = [],
    vy: number[] = [],
    px: number[] = [];
  for (let i = 0; i < d; i++) {
    const mr: number[] = [],
      vr: number[] = [],
      pr: number[] = [],
      me: number[] = [];
    for (const r of runs) {
      const am = r.analytic.mean[i],
        av = r.analytic.variance[i],
        ap = r.analytic.variancePaper[i];
      const mm = r.mc.mean[i],
        mv = r.mc.variance[i];
      mr.push(mm / am);
      vr.push(mv / av);
      pr.push(mv / ap);
      me.push(Math.abs(mm - am) / Math.sqrt(mv));
      ax.push(am);
      ay.push(mm);
      vx.push(av);
      vy.push(mv);
      px.push(ap);
    }
    const row: TightnessRow = { output: i, meanRatio: meanStd(mr), varianceRatio: meanStd(vr), variancePaperRatio: meanStd(pr), meanErrorSd: meanStd(me) };
    if (runs.length > 0 && runs.every((r) => r.propagate)) {
      const pm = runs.map((r) => r.mc.mean[i] / r.propagate!.mean[i]);
      const pv = runs.map((r) => r.mc.variance[i] / r.propagate!.variance[i]);
      const pe = runs.map((r) => Math.abs(r.mc.mean[i] - r.propagate!.mean[i]) / Math.sqrt(r.mc.variance[i]));
      row.propagate = { meanRatio: meanStd(pm), varianceRatio: meanStd(pv), meanErrorSd: meanStd(pe) };
    }
    table.push(row);
  }
  return { table, fit: { mean: fitThroughOrigin(ax, ay), variance: fitThroughOrigin(vx, vy), variancePaper: fitThroughOrigin(px, vy) } };
}

/**
 * Data runs (Table 1): run k analyses dataset input indices[k] under `noise`, linearized at the
 * image (the noise is zero-mean, so image and mean coincide), with `mc` samples through the model.
 */
export async function tightnessOnData(
  model: LoadedModel,
  data: Pick<Dataset, 'get' | 'size'>,
  options: TightnessCommon & {
    relu?: number | string;
    output?: string;
    noise: NoiseSpec;
    noiseFile?: string;
    window?: InputWindow;
    /** How the window's rows and columns are read (data/layout.ts; default 'auto'). */
    layout?: LayoutChoice;
    indices?: number[];
    /** The Jacobian engine and onnxruntime provider (as analyze's --jacobian, --provider). */
    jacobian?: LinearizerOptions['jacobian'];
    provider?: LinearizerOptions['provider'];
    threads?: number;
    onWarning?: (m: string) => void;
    name?: string;
    /** The propagate column: 'auto' (default: when every op has a moment rule), 'propagate', or 'two-stage' (none). */
    method?: MethodChoice;
    rank?: number;
  },
): Promise<TightnessStudy> {
  const runs = options.runs;
  const indices = options.indices ?? Array.from({ length: runs }, (_, k) => k);
  if (indices.length !== runs) throw new Error('tightnessOnData: indices and runs differ');
  for (const i of indices) {
    if (!(Number.isInteger(i) && i >= 0 && i < data.size))
      throw new NetmomentsError(`input ${i} is out of range: the data holds ${data.size} inputs`, { code: 'BAD_USAGE' });
  }
  const analyzer = await Analyzer.create(model, {
    relu: options.relu,
    output: options.output,
    jacobian: options.jacobian,
    provider: options.provider,
    threads: options.threads,
    onWarning: options.onWarning,
    noise: options.noise,
    noiseFile: options.noiseFile,
    window: options.window,
    layout: options.layout,
    at: 'input',
    method: 'two-stage',
    methodReason: "the paper's Table 1 column; propagate has its own",
    variance: 'both',
    mc: options.mc,
    seed: options.seed ?? 0,
    probabilitySamples: 256,
    linalg: options.linalg,
  });
  let prop: Analyzer | undefined;
  let propagateNote: TightnessStudy['propagate'] = { rank: null, reason: 'asked for two-stage only (--method two-stage)' };
  try {
    if (options.method !== 'two-stage') {
      prop = await Analyzer.create(model, {
        output: options.output,
        provider: options.provider,
        threads: options.threads,
        onWarning: options.onWarning,
        noise: options.noise,
        noiseFile: options.noiseFile,
        window: options.window,
        layout: options.layout,
        method: options.method ?? 'auto',
        rank: options.rank,
        variance: 'exact',
        probabilitySamples: 0,
        flips: false,
      });
      if (prop.method !== 'propagate') {
        propagateNote = { rank: null, reason: prop.decision.reason };
        await prop.release();
        prop = undefined;
      } else propagateNote = { rank: prop.decision.rank!, reason: prop.decision.reason };
    }
    const d = analyzer.output.size;
    const details: TightnessRun[] = [];
    for (let k = 0; k < runs; k++) {
      const res = await analyzer.analyzeInput(data.get(indices[k]), indices[k]);
      const pm = prop ? await prop.propagatedMoments(Float64Array.from(data.get(indices[k]))) : undefined;
      if (!res.mc || !res.variance || !res.variancePaper) throw new Error('internal: analyzeInput returned no Monte Carlo or variance');
      details.push({
        run: k,
        input: indices[k],
        analytic: { mean: res.mean, variance: res.variance, variancePaper: res.variancePaper },
        mc: {
          samples: res.mc.samples,
          mean: res.mc.mean,
          variance: res.mc.variance,
          meanStdErr: res.mc.variance.map((v) => Math.sqrt(v / res.mc!.samples)),
        },
        expectedFlips: res.linearization.expectedFlips,
        ...(pm ? { propagate: { mean: Array.from(pm.mean), variance: Array.from(pm.variance) } } : {}),
      });
      options.onProgress?.(k + 1, runs);
    }
    const { table, fit } = summarizeRuns(details, d);
    const spec = options.noise;
    return {
      name: options.name ?? `${baseName(model.file)}-relu${analyzer.split!.index}-data`,
      model: model.file,
      split: analyzer.split!,
      output: analyzer.output,
      mode: 'data',
      noise: {
        kind: spec.kind,
        ...(spec.kind === 'isotropic' ? { sigma: spec.sigma } : { file: options.noiseFile }),
        window: options.window ? [options.window.row, options.window.col, options.window.height, options.window.width] : null,
      },
      linearizationPoint: 'input',
      propagate: propagateNote,
      runs,
      mc: options.mc,
      table,
      fit,
      runDetails: details,
    };
  } finally {
    await analyzer.release();
    await prop?.release();
  }
}

/** F^T (n x n rows, one direction per row) of run k's random covariance in the regime (file comment). */
export function regimeFactor(n: number, maxVariance: number, rng: Rng): { Ft: Float64Array; scale: number } {
  const scale = maxVariance * (0.01 + 0.99 * rng.nextDouble());
  const sd = new Float64Array(n);
  for (let i = 0; i < n; i++) sd[i] = Math.sqrt(scale * rng.nextDouble());
  // G n x n normal rows normalised; F = diag(sd) G; F^T[k, i] = F[i, k]
  const Ft = new Float64Array(n * n);
  const row = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    rng.fillNormal(row);
    let nrm = 0;
    for (let k = 0; k < n; k++) nrm += row[k] * row[k];
    const f = sd[i] / Math.sqrt(nrm);
    for (let k = 0; k < n; k++) Ft[k * n + i] = row[k] * f;
  }
  return { Ft, scale };
}

/**
 * Synthetic runs (Figure 2): input mean 0, linearized at 0, run k's covariance drawn in the regime
 * of maximum variance `maxVariance` (file comment). A Linearizer may be passed to reuse its
 * sessions across regimes.
 */
export async function tightnessSynthetic(
  model: LoadedModel,
  options: TightnessCommon & {
    relu?: number | string;
    output?: string;
    maxVariance: number;
    /** Input mean of each run ~ N(0, meanSd^2 I), linearized there (default 0: the zero input, as in the paper). */
    meanSd?: number;
    threads?: number;
    onWarning?: (m: string) => void;
    linearizer?: Linearizer;
    name?: string;
  },
): Promise<TightnessStudy> {
  if (!(Number.isFinite(options.maxVariance) && options.maxVariance > 0)) {
    throw new NetmomentsError(`the maximum variance must be a number > 0, got ${options.maxVariance}`, { code: 'BAD_USAGE' });
  }
  const own = !options.linearizer;
  const lin =
    options.linearizer ??
    (await Linearizer.create(model, { relu: options.relu, output: options.output, threads: options.threads, onWarning: options.onWarning }));
  try {
    const { n, d } = lin;
    const meanSd = options.meanSd ?? 0;
    if (!(Number.isFinite(meanSd) && meanSd >= 0)) throw new NetmomentsError(`the input mean sd must be a number >= 0, got ${meanSd}`, { code: 'BAD_USAGE' });
    const details: TightnessRun[] = [];
    const seed = options.seed ?? 0;
    for (let k = 0; k < options.runs; k++) {
      const rng = new Rng(seedFor(seed, k) ^ 0x5bd1e995);
      const { Ft, scale } = regimeFactor(n, options.maxVariance, rng);
      const point = new Float32Array(n);
      if (meanSd > 0) for (let i = 0; i < n; i++) point[i] = meanSd * rng.normal();
      const mu = Float64Array.from(point);
      // the linearization projected on the factor: its columns are the noise's coordinates
      const L = await lin.linearize(point, factorFromRows(Ft, n, n));
      const mom = await projectedMoments(L, { variance: true, covariance: false, paper: true, linalg: options.linalg });
      const mc = await monteCarloFactor((xs, c) => lin.evaluate(xs, c), d, mu, Ft, n, {
        samples: options.mc,
        seed: seedFor(seed, k),
        linalg: options.linalg,
      });
      details.push({
        run: k,
        maxVariance: scale,
        ...(meanSd > 0 ? { inputMeanNorm: Math.hypot(...mu) } : {}),
        analytic: { mean: Array.from(mom.mean), variance: Array.from(mom.variance!), variancePaper: Array.from(mom.variancePaper!) },
        mc: { samples: mc.samples, mean: Array.from(mc.mean), variance: Array.from(mc.variance), meanStdErr: Array.from(mc.meanStdErr) },
        expectedFlips: L.flips,
      });
      options.onProgress?.(k + 1, options.runs);
    }
    const { table, fit } = summarizeRuns(details, d);
    return {
      name: options.name ?? `${baseName(model.file)}-relu${lin.split.index}-var${options.maxVariance}${meanSd > 0 ? `-mean${meanSd}` : ''}`,
      model: model.file,
      split: lin.split,
      output: lin.output,
      mode: 'synthetic',
      noise: {
        kind: 'full',
        maxVariance: options.maxVariance,
        inputMeanSd: meanSd,
        construction: 't ~ U(0.01, 1); v_i ~ U(0, t V); Sigma = diag(sqrt v) G G^T diag(sqrt v), G i.i.d. normal with unit rows',
      },
      linearizationPoint: meanSd > 0 ? 'mean' : 'zero',
      runs: options.runs,
      mc: options.mc,
      table,
      fit,
      runDetails: details,
    };
  } finally {
    if (own) await lin.release();
  }
}

/** "fixtures/fc-2.onnx" -> "fc-2". */
export function baseName(file: string): string {
  const b = file.split(/[\\/]/).pop() ?? file;
  return b.replace(/\.onnx$/i, '').replace(/[^A-Za-z0-9._-]+/g, '_');
}
