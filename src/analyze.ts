/**
 * `analyze`: closed-form moments of a model's output under Gaussian input noise, per input.
 *
 * For each input x: mu = x + noise mean; linearize at xb (default mu) at ReLU K (two-stage
 * linearization, src/linearize/linearizer.ts); push the noise factor F (Sigma = F F^T, restricted to
 * the elements with nonzero variance) through the JVPs to get A F, B, D F; then the moments engine
 * gives the mean (Theorem 1), the exact variance and covariance (general-mean second moments) and
 * the paper's variance (Theorem 2) of the surrogate g(x) = B relu(A x + c1) + D x + c2
 * (src/moments/surrogate.ts surrogateMoments, given the factor the surrogate is projected on). The
 * noise is validated once (src/noise.ts validateNoise) and factored once (noiseFactor); isotropic
 * and diagonal noise stay sparse (support and standard deviations) all the way to the JVPs.
 */
import { createRequire } from 'node:module';
import { NetmomentsError } from './errors.js';
import { Linearizer, type LayerFlips, type LinearizerOptions, type TensorDescription } from './linearize/linearizer.js';
import type { LoadedModel } from './onnx/load.js';
import type { SplitPoint } from './onnx/splitpoint.js';
import type { NetworkMoments } from './moments/network.js';
import { surrogateMoments } from './moments/surrogate.js';
import type { LinearAlgebra } from './moments/linalg.js';
import { classProbabilities } from './moments/classprob.js';
import { monteCarloMoments } from './moments/montecarlo.js';
import { noiseFactor, validateNoise, windowIndices, type InputWindow, type Noise, type NoiseCovariance, type NoiseFactor, type NoiseSpec } from './noise.js';
import { checkMemory, estimateAnalyzeMemory, linearizerSizes, memoryLimit } from './resources.js';
import { imageGeometry, perInputShape, type ImageLayout, type LayoutChoice } from './data/layout.js';
import { argmax } from './util/argmax.js';
import { twoStageTrust, type Trust } from './trust.js';

export type VarianceMode = 'exact' | 'paper' | 'both' | 'none';

export interface AnalyzeOptions extends LinearizerOptions {
  /** Default: isotropic sigma 1. */
  noise?: NoiseSpec;
  /** Where `noise` came from (messages, report). */
  noiseFile?: string;
  /** Keep the noise only inside this window of the input's rows and columns (all channels). */
  window?: InputWindow;
  /** How the window's rows and columns are found in the input's shape (data/layout.ts image layout; default 'auto'). */
  layout?: LayoutChoice;
  /** Added to every input: mu = x + noiseMean. */
  noiseMean?: Float64Array;
  /** Linearization point: 'mean' (mu, default), 'input' (x) or an explicit point. */
  at?: 'mean' | 'input' | Float32Array;
  variance?: VarianceMode;
  /** Keep the d x d covariance in the results. */
  covariance?: boolean;
  /** Monte Carlo samples through the real model (0: none). */
  mc?: number;
  seed?: number;
  /** Quasi-Monte Carlo points per shift for the class probabilities (default 2048, 16 shifts; 0: skip them, leaving the probabilities null). */
  probabilitySamples?: number;
  linalg?: LinearAlgebra;
  /**
   * Most memory the run may plan to use: bytes, or a size such as '512M' or '4G' (src/resources.ts).
   * Default: 80% of the memory available when the run starts. The estimate is checked before any
   * session is created and again once the split's sizes are known; a run over the limit is a
   * RESOURCE error naming the estimate and what lowers it.
   */
  maxMemory?: number | string;
}

export interface MonteCarloSummary {
  samples: number;
  mean: number[];
  variance: number[];
  /** Fraction of the samples whose class differs from the clean prediction. */
  flipRate: number;
}

export interface AnalyzeResult {
  input: number;
  mean: number[];
  variance: number[] | null;
  variancePaper: number[] | null;
  covariance?: number[][];
  clean: number[];
  predicted: number;
  cleanPredicted: number;
  classProbabilities: number[] | null;
  classProbabilitiesError: number | null;
  flipProbability: number | null;
  marginBound: number | null;
  linearization: { point: string; jacobian: string; expectedFlips: LayerFlips[]; uncertainUnits: number };
  mc?: MonteCarloSummary;
  /** Whether the numbers can be trusted (src/trust.ts). */
  trust: Trust;
}

export interface AnalyzeReport {
  schema: 'netmoments.analyze/1';
  model: string;
  split: SplitPoint;
  output: { name: string; shape: number[]; size: number };
  noise: {
    kind: NoiseSpec['kind'];
    sigma?: number;
    file?: string;
    meanFile?: string | null;
    window: number[] | null;
    /** With a window: the layout its rows and columns were read in. */
    layout?: ImageLayout;
    support: number;
  };
  linearizationPoint: string;
  run: { version: string; modelSha256: string; seed: number; threads: number | null; jacobian: string; variance: VarianceMode };
  results: AnalyzeResult[];
}

/** The package version (package.json sits one folder above both src/ and dist/). */
export const VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

function finiteArray(v: ArrayLike<number>, what: string, file?: string): number[] {
  const out = Array.from(v);
  for (const x of out)
    if (!Number.isFinite(x))
      throw new NetmomentsError(`the ${what} came out non-finite; the model or the noise is out of the range float64 can represent`, {
        file,
        code: 'BAD_INPUT',
      });
  return out;
}

/** One model, one split, one noise: analyses inputs one by one, sessions created once. */
export class Analyzer {
  private constructor(
    readonly linearizer: Linearizer,
    readonly options: AnalyzeOptions,
    /** The validated noise (src/noise.ts). */
    readonly noise: Noise,
    /** Its factor F, Sigma = F F^T: the directions the linearization is projected on. */
    readonly factor: NoiseFactor,
  ) {}

  static async create(model: LoadedModel, options: AnalyzeOptions = {}): Promise<Analyzer> {
    const limit = memoryLimit(options.maxMemory);
    Analyzer.checkMemoryBeforeSplit(model, options, limit);
    const linearizer = await Linearizer.create(model, options).catch((e: unknown) => {
      // what goes wrong while the model is split and its tangent models are built is about the model
      throw e instanceof NetmomentsError && !e.file ? new NetmomentsError(e.message, { file: model.file, code: e.code, cause: e }) : e;
    });
    try {
      const n = linearizer.n;
      const spec = options.noise ?? { kind: 'isotropic', sigma: 1 };
      const win = options.window ? windowIndices(linearizer.input.shape, options.window, model.file, options.layout) : undefined;
      const noise = validateNoise(spec, n, win, options.noiseFile);
      checkMemory(
        estimateAnalyzeMemory({
          ...linearizerSizes(linearizer),
          r: noise.support.length,
          modelBytes: model.bytes.length,
          covarianceSupport: noise.sigma.kind === 'full' ? noise.support.length : 0,
          mc: options.mc,
          mcLowRank: noise.sigma.kind === 'full',
          probabilityPoints: options.variance === 'none' ? 0 : (options.probabilitySamples ?? 2048),
          paper: options.variance !== 'exact' && options.variance !== 'none',
          variance: options.variance !== 'none',
        }),
        limit,
        model.file,
      );
      if (options.noiseMean) {
        if (options.noiseMean.length !== n) throw new NetmomentsError(`the noise mean has ${options.noiseMean.length} elements, the model input has ${n}`);
        for (const v of options.noiseMean) if (!Number.isFinite(v)) throw new NetmomentsError('the noise mean holds a non-finite value');
      }
      if (options.at instanceof Float32Array && options.at.length !== n) {
        throw new NetmomentsError(`the linearization point has ${options.at.length} elements, the model input has ${n}`);
      }
      return new Analyzer(linearizer, options, noise, noiseFactor(noise, options.noiseFile));
    } catch (e) {
      await linearizer.release();
      throw e;
    }
  }

  /**
   * The memory check that can run before any onnxruntime session: the input size n and the noise
   * (its support, a full covariance's eigendecomposition) are known from the model's declared input.
   */
  private static checkMemoryBeforeSplit(model: LoadedModel, options: AnalyzeOptions, limit: ReturnType<typeof memoryLimit>): void {
    const inputs = model.graph.dataInputs;
    if (inputs.length !== 1 || !inputs[0].shape) return; // Linearizer.create says what is wrong
    const lead = inputs[0].shape[0];
    if (typeof lead === 'number' && lead !== 1) {
      // the tangent models need a batch axis of 1 or a symbolic one; say so before the shape probe
      // runs the model at this batch (65535 copies of LeNet's input need some 10 GiB of activations)
      throw new NetmomentsError(
        `the model input '${inputs[0].name}' has a fixed batch dimension ${lead}; netmoments analyses models whose axis 0 is a batch of 1 or symbolic, and this axis 0 is not a batch it can reduce to 1 (an op acts across it, or the outputs do not lead with it): re-export the model with batch 1 or a dynamic batch axis`,
        {
          file: model.file,
          code: 'UNSUPPORTED',
        },
      );
    }
    const shape = perInputShape(inputs[0].shape, model.file, inputs[0].name);
    const n = shape.reduce((a, b) => a * b, 1);
    const spec = options.noise ?? { kind: 'isotropic', sigma: 1 };
    let r = n;
    let q = 0;
    // (no index arrays for an absurd n: the estimate with r = n refuses it)
    const win = options.window && n <= 2 ** 28 ? windowIndices(shape, options.window, model.file, options.layout) : undefined;
    if (spec.kind === 'isotropic') r = spec.sigma === 0 ? 0 : (win?.length ?? n);
    else {
      const noise = validateNoise(spec, n, win, options.noiseFile);
      r = noise.support.length;
      q = noise.sigma.kind === 'full' ? r : 0;
    }
    checkMemory(estimateAnalyzeMemory({ n, r, modelBytes: model.bytes.length, covarianceSupport: q }), limit, model.file);
  }

  get split(): SplitPoint {
    return this.linearizer.split;
  }
  get output(): TensorDescription {
    return this.linearizer.output;
  }

  /** Analyse one input x (n float32 values, model units); `index` names it in the result and seeds its Monte Carlo. */
  async analyzeInput(x: Float32Array, index: number): Promise<AnalyzeResult & { moments: NetworkMoments }> {
    try {
      return await this.analyzeOne(x, index);
    } catch (e) {
      throw inputFailure(e, `input ${index}`, this.linearizer.model.file);
    }
  }

  private async analyzeOne(x: Float32Array, index: number): Promise<AnalyzeResult & { moments: NetworkMoments }> {
    const { n, p, d } = this.linearizer;
    const o = this.options;
    const file = this.linearizer.model.file;
    if (x.length !== n) throw new NetmomentsError(`input ${index} has ${x.length} elements, the model input has ${n}`);
    for (let i = 0; i < n; i++) if (!Number.isFinite(x[i])) throw new NetmomentsError(`input ${index} holds a non-finite value at element ${i}`);
    const mu = Float64Array.from(x);
    if (o.noiseMean) for (let i = 0; i < n; i++) mu[i] += o.noiseMean[i];
    const xb = o.at instanceof Float32Array ? o.at : o.at === 'input' ? x : Float32Array.from(mu);
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(xb[i]))
        throw new NetmomentsError(`the linearization point of input ${index} holds a value beyond the float32 range at element ${i} (input plus noise mean)`, {
          file,
        });
    }
    const delta = new Float64Array(n);
    for (let i = 0; i < n; i++) delta[i] = mu[i] - xb[i];

    const lin = await this.linearizer.linearize(xb, this.factor, delta);
    const mode = o.variance ?? 'both';
    const wantExact = mode === 'exact' || mode === 'both';
    const wantPaper = mode === 'paper' || mode === 'both';
    const moments = await surrogateMoments(lin, this.factor, { offset: { A: lin.Adelta, D: lin.Ddelta }, ...varianceOptions(mode), linalg: o.linalg });
    const mean = finiteArray(moments.mean, 'mean', file);
    const clean = Array.from(await this.linearizer.evaluate(x, 1));
    const cleanPredicted = argmax(clean);
    let probs: number[] | null = null;
    let probsErr: number | null = null;
    let flip: number | null = null;
    let bound: number | null = null;
    if (moments.covariance && o.probabilitySamples !== 0) {
      const cp = await classProbabilities(moments.mean, moments.covariance, {
        points: o.probabilitySamples ?? 2048,
        seed: seedFor(o.seed ?? 0, index),
        trueClass: cleanPredicted,
      });
      probs = finiteArray(cp.probabilities, 'class probabilities', file);
      probsErr = cp.stdErr.reduce((a, v) => Math.max(a, v), 0);
      flip = cp.misclassification?.probability ?? null;
      bound = cp.marginBound ?? null;
    }
    const result: AnalyzeResult & { moments: NetworkMoments } = {
      input: index,
      mean,
      variance: wantExact && moments.variance ? finiteArray(moments.variance, 'variance', file) : null,
      variancePaper: wantPaper && moments.variancePaper ? finiteArray(moments.variancePaper, 'paper variance', file) : null,
      clean,
      predicted: argmax(mean),
      cleanPredicted,
      classProbabilities: probs,
      classProbabilitiesError: probsErr,
      flipProbability: flip,
      marginBound: bound,
      linearization: {
        point: o.at instanceof Float32Array ? 'file' : (o.at ?? 'mean'),
        jacobian: this.linearizer.jacobianMode,
        expectedFlips: lin.flips,
        uncertainUnits: moments.units.uncertain,
      },
      trust: { verdict: 'ok', reasons: [] }, // judged below, once Monte Carlo has run
      moments,
    };
    if (o.covariance && moments.covariance) {
      const cov = moments.covariance;
      result.covariance = Array.from({ length: d }, (_, i) => finiteArray(cov.subarray(i * d, (i + 1) * d), 'covariance', file));
    }
    if (o.mc && o.mc > 0) {
      const mc = await monteCarloMoments((xs, count) => this.linearizer.evaluate(xs, count), d, mu, this.fullNoise(), {
        samples: o.mc,
        batchSize: 1000,
        seed: seedFor(o.seed ?? 0, index),
        flipClass: cleanPredicted,
      });
      result.mc = { samples: mc.samples, mean: Array.from(mc.mean), variance: Array.from(mc.variance), flipRate: mc.flips! / mc.samples };
    }
    // the surrogate is checked where the noise is centred: mu, the input itself unless a noise mean shifts it
    const modelAtMu = o.noiseMean ? await this.linearizer.evaluate(Float32Array.from(mu), 1) : clean;
    result.trust = twoStageTrust(result, lin, modelAtMu, this.linearizer.smoothOps);
    return result;
  }

  /** Sigma over all n input elements, for sampling: F F^T with the factor already built. */
  fullNoise(): NoiseCovariance {
    const f = this.factor;
    const n = f.n;
    if (this.noise.sigma.kind === 'isotropic' && this.noise.support.length === n) return { kind: 'isotropic', sigma: this.noise.sigma.sigma };
    if (f.kind === 'axes') {
      const variance = new Float64Array(n);
      f.support.forEach((i, k) => (variance[i] = f.sd[k] ** 2));
      return { kind: 'diagonal', variance };
    }
    // the sampler wants F (n x r) over all n rows
    const r = f.r;
    const factor = new Float64Array(n * r);
    f.support.forEach((i, t) => factor.set(f.factor.subarray(t * r, (t + 1) * r), i * r));
    return { kind: 'lowrank', factor, rank: r };
  }

  async release(): Promise<void> {
    await this.linearizer.release();
  }
}

/** The moments options of a variance mode (the covariance whenever a variance). */
function varianceOptions(mode: VarianceMode): { variance: boolean; covariance: boolean; paper: boolean } {
  return { variance: mode !== 'none', covariance: mode !== 'none', paper: mode === 'paper' || mode === 'both' };
}

/**
 * The error to throw for a problem met while running the model on one input (values that overflow
 * float32, a non-finite Jacobian, memory the estimate did not foresee): one line that says which
 * input (`input`, e.g. "input 3" or "input 3 of data.npy") and names the model. Errors that already
 * name a file, and errors that are not the tool's own, pass through unchanged.
 */
export function inputFailure(e: unknown, input: string, modelFile: string): unknown {
  if (e instanceof RangeError && /allocation failed|Invalid typed array length|Invalid array length/i.test(e.message)) {
    // the estimate let the run start, but the process could not get the memory (a limit the estimate does not see)
    return new NetmomentsError(`${input}: out of memory (${e.message}); lower what the run needs (see --max-memory) or give the process more memory`, {
      file: modelFile,
      code: 'RESOURCE',
      cause: e,
    });
  }
  if (!(e instanceof NetmomentsError) || e.file) return e;
  const hint = /non-finite/.test(e.message) ? ' (the model overflows float32 here: its weights or the input are out of range)' : '';
  return new NetmomentsError(`${input}: ${e.message}${hint}`, { file: modelFile, code: e.code, cause: e });
}

/** A per-input seed from (seed, index): distinct streams, the same for the same pair. */
export function seedFor(seed: number, index: number): number {
  return ((seed >>> 0) * 2654435761 + index * 40503 + 1) >>> 0;
}

/** Analyse `count` inputs ([count, n] float32 in model units) and build the report. */
export async function analyze(
  model: LoadedModel,
  inputs: Float32Array,
  count: number,
  options: AnalyzeOptions = {},
  onProgress?: (done: number, total: number) => void,
): Promise<AnalyzeReport> {
  const analyzer = await Analyzer.create(model, options);
  try {
    const n = analyzer.linearizer.n;
    if (inputs.length !== count * n) throw new NetmomentsError(`${inputs.length} input values for ${count} inputs of ${n} elements`);
    const results: AnalyzeResult[] = [];
    for (let i = 0; i < count; i++) {
      const { moments: _m, ...res } = await analyzer.analyzeInput(inputs.subarray(i * n, (i + 1) * n), i);
      results.push(res);
      onProgress?.(i + 1, count);
    }
    const spec = options.noise ?? { kind: 'isotropic', sigma: 1 };
    return {
      schema: 'netmoments.analyze/1',
      model: model.file,
      split: analyzer.split,
      output: { name: analyzer.output.name, shape: analyzer.output.shape, size: analyzer.output.size },
      noise: {
        kind: spec.kind,
        ...(spec.kind === 'isotropic' ? { sigma: spec.sigma } : { file: options.noiseFile }),
        meanFile: null,
        window: options.window ? [options.window.row, options.window.col, options.window.height, options.window.width] : null,
        ...(options.window ? { layout: imageGeometry(analyzer.linearizer.input.shape, options.layout)!.layout } : {}),
        support: analyzer.noise.support.length,
      },
      linearizationPoint: options.at instanceof Float32Array ? 'file' : (options.at ?? 'mean'),
      run: {
        version: VERSION,
        modelSha256: model.sha256,
        seed: options.seed ?? 0,
        threads: options.threads ?? null,
        jacobian: analyzer.linearizer.jacobianMode,
        variance: options.variance ?? 'both',
      },
      results,
    };
  } finally {
    await analyzer.release();
  }
}
