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
 *
 * Or, with method 'propagate' (src/method.ts decides under 'auto'), no split: the mean and the
 * covariance F F^T + diag(r) of the statistically linearized network, carried through every layer
 * by each op's moment rule (src/propagate/), exact for that surrogate; the class and flip
 * probabilities come from the same QMC path on the propagated mean and covariance, the clean
 * output and Monte Carlo from the real model (src/linearize/evaluator.ts).
 */
import { createRequire } from 'node:module';
import { NetmomentsError } from './errors.js';
import {
  Linearizer,
  defaultGramWorkers,
  gramStrategy,
  gramTile,
  type GramStrategy,
  type LayerFlips,
  type LinearizerOptions,
  type TensorDescription,
} from './linearize/linearizer.js';
import type { LoadedModel } from './onnx/load.js';
import type { SplitPoint } from './onnx/splitpoint.js';
import type { NetworkMoments } from './moments/network.js';
import {
  chooseMethod,
  estimatePropagateMemory,
  planPropagation,
  propagateRank,
  propagatorNoise,
  PropagateEngine,
  type Method,
  type MethodChoice,
  type MethodDecision,
  type PropagationPlan,
} from './method.js';
import type { InputNoise, PropagatedMoments } from './propagate/index.js';
import { surrogateMoments } from './moments/surrogate.js';
import { gramMoments } from './linearize/bankMoments.js';
import { collectGarbageAfter } from './util/gc.js';
import { stage } from './util/timing.js';
import { jsLinearAlgebra, type LinearAlgebra } from './moments/linalg.js';
import { classProbabilities } from './moments/classprob.js';
import { monteCarloMoments } from './moments/montecarlo.js';
import { noiseFactor, validateNoise, windowIndices, type InputWindow, type Noise, type NoiseCovariance, type NoiseFactor, type NoiseSpec } from './noise.js';
import { checkMemory, estimateAnalyzeMemory, formatBytes, linearizerSizes, memoryLimit, type MemoryLimit } from './resources.js';
import { imageGeometry, perInputShape, type ImageLayout, type LayoutChoice } from './data/layout.js';
import { argmax } from './util/argmax.js';
import { assessTrust, twoStageTrust, type Trust } from './trust.js';

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
  /**
   * Without `mc`: Monte Carlo samples behind the trust verdict (0, the default: none). A small run
   * through the real model in batches of TRUST_CHECK_BATCH, compared on the top classes as `mc` is
   * (src/trust.ts), catches results that are far off, which nothing else in a propagate result
   * shows (docs/RESULTS.md, "Trust verdicts"); its numbers are the result's `trustCheck`.
   */
  trustCheck?: number;
  seed?: number;
  /** Quasi-Monte Carlo points per shift for the class probabilities (default 2048, 16 shifts; 0: skip them, leaving the probabilities null). */
  probabilitySamples?: number;
  /**
   * Sample the class probabilities on this many classes of largest mean (plus the clean class) and
   * bound the rest (src/moments/classprob.ts topClasses). Default: all classes up to
   * ALL_CLASSES_MAX, DEFAULT_TOP_CLASSES above; 0: all classes.
   */
  probabilityClasses?: number;
  linalg?: LinearAlgebra;
  /** Which engine: 'auto' (default: propagate where every op has a moment rule and it fits), 'two-stage' or 'propagate' (src/method.ts). */
  method?: MethodChoice;
  /** Why the caller fixed `method` (stderr and the report). */
  methodReason?: string;
  /** Propagate: columns of the noise factor (default: full rank when it fits the memory limit, else 256). */
  rank?: number;
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
  /** When the probabilities were sampled on the classes of largest mean alone: those classes and the bound on the mass outside them. */
  classProbabilitiesTopK?: { classes: number[]; restBound: number };
  flipProbability: number | null;
  marginBound: number | null;
  /** What was done: two-stage's linearization point, Jacobians and the layers it held fixed; for propagate point 'none' and no flips (nothing is held fixed). */
  linearization: { point: string; jacobian: string; expectedFlips: LayerFlips[]; uncertainUnits: number };
  /**
   * Propagate: how the output covariance was formed. 'reverse': exactly for the statistically
   * linearized net by reverse passes, for `exactUnits` output units (all of them, or the largest
   * means, the rest of the covariance from the noise factor rescaled to them); 'factor': the Gram
   * matrix of the output's factor rows (src/propagate/adjoint.ts).
   */
  outputCovariance?: { by: 'reverse' | 'factor'; exactUnits: number };
  mc?: MonteCarloSummary;
  /** The Monte Carlo check behind the trust verdict (AnalyzeOptions.trustCheck), when it ran. */
  trustCheck?: MonteCarloSummary;
  /** Whether the numbers can be trusted (src/trust.ts). */
  trust: Trust;
}

export interface AnalyzeReport {
  schema: 'netmoments.analyze/1';
  model: string;
  /** Which engine computed the moments, why, and (propagate) the rank of the noise factor carried. */
  method: Method;
  methodReason: string;
  rank?: number;
  /** The two-stage split; null for propagate. */
  split: SplitPoint | null;
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

/** A propagate or two-stage engine's per-input moments, as the result is built from them. */
interface InputMoments {
  mean: Float64Array;
  variance?: Float64Array;
  variancePaper?: Float64Array;
  covariance?: Float64Array;
}

/** One model, one engine (a two-stage split or moment propagation), one noise: analyses inputs one by one, sessions created once. */
export class Analyzer {
  private constructor(
    private readonly engine:
      | { method: 'two-stage'; linearizer: Linearizer; gram: boolean; strategy?: GramStrategy; workers: number }
      | { method: 'propagate'; propagate: PropagateEngine; noise: InputNoise },
    /** The engine and why it was chosen (src/method.ts). */
    readonly decision: MethodDecision,
    readonly model: LoadedModel,
    readonly options: AnalyzeOptions,
    /** The validated noise (src/noise.ts). */
    readonly noise: Noise,
    /** Its factor F, Sigma = F F^T: the directions the linearization is projected on. */
    readonly factor: NoiseFactor,
  ) {}

  static async create(model: LoadedModel, options: AnalyzeOptions = {}): Promise<Analyzer> {
    stage('analyzer start (the memory limit is taken here)')();
    const rss0 = process.memoryUsage.rss();
    const limit = memoryLimit(options.maxMemory);
    Analyzer.checkMemoryBeforeSplit(model, options, limit);
    const inputShape = Linearizer.inputShapeOf(model);
    const n = inputShape.reduce((a, b) => a * b, 1);
    const spec = options.noise ?? { kind: 'isotropic', sigma: 1 };
    const win = options.window ? windowIndices(inputShape, options.window, model.file, options.layout) : undefined;
    const noise = validateNoise(spec, n, win, options.noiseFile);
    if (options.noiseMean) {
      if (options.noiseMean.length !== n) throw new NetmomentsError(`the noise mean has ${options.noiseMean.length} elements, the model input has ${n}`);
      for (const v of options.noiseMean) if (!Number.isFinite(v)) throw new NetmomentsError('the noise mean holds a non-finite value');
    }
    if (options.at instanceof Float32Array && options.at.length !== n) {
      throw new NetmomentsError(`the linearization point has ${options.at.length} elements, the model input has ${n}`);
    }
    const factor = noiseFactor(noise, options.noiseFile);
    const inModel = <T>(p: Promise<T>): Promise<T> =>
      p.catch((e: unknown) => {
        // what goes wrong while the model is split (or planned) and its tangent models are built is about the model
        throw e instanceof NetmomentsError && !e.file ? new NetmomentsError(e.message, { file: model.file, code: e.code, cause: e }) : e;
      });
    let { decision, plan } = await inModel(chooseMethod(model, { ...options, pointGiven: options.at instanceof Float32Array }, Math.max(1, factor.r), limit));
    if (decision.method === 'propagate') {
      try {
        const propagate = await inModel(PropagateEngine.create(model, plan!, { rank: decision.rank!, threads: options.threads, provider: options.provider }));
        return new Analyzer({ method: 'propagate', propagate, noise: propagatorNoise(noise, factor) }, decision, model, options, noise, factor);
      } catch (e) {
        // auto never makes a model fail that two-stage analyses: a propagation that cannot be built falls back
        const auto = (options.method ?? 'auto') === 'auto';
        if (!auto || !(e instanceof NetmomentsError) || e.code === 'RESOURCE' || /CUDA/.test(e.message)) throw e;
        decision = {
          method: 'two-stage',
          reason: `propagate could not be built for this model: ${e.message.length > 200 ? `${e.message.slice(0, 200)}...` : e.message}`,
        };
        plan = undefined;
      }
    }
    const doneSetup = stage('split and sessions (Linearizer.create)');
    const linearizer = await inModel(Linearizer.create(model, options)).catch((e: unknown) => {
      // neither engine: two-stage's reason, and propagate's with what to do
      if (!(e instanceof NetmomentsError) || !plan || plan.missing.length === 0 || model.graph.relus().length > 0) throw e;
      throw new NetmomentsError(
        `${e.message}; and --method propagate has no moment rule for ${plan.missing.join(', ')}: analyse a tensor before it with --output NAME (netmoments inspect lists the ops)`,
        { file: model.file, code: e.code, cause: e },
      );
    });
    doneSetup();
    let gram = false;
    let strategy: GramStrategy | undefined;
    try {
      // A F replaced by S = (A F)(A F)^T where A F would be gigabytes (src/linearize/linearizer.ts gramPlanned)
      gram = await linearizer.gramPlanned(factor);
      // what the split and its sessions took already, measured (the limit was taken before them),
      // once the serialized models they were made from (the weights once more each) are collected
      collectGarbageAfter(model.bytes.length);
      const sessionsBytes = Math.max(0, process.memoryUsage.rss() - rss0);
      const deferredSessionsBytes = linearizer.deferredSessionsBytes();
      const estimateFor = async (strategy: GramStrategy | undefined, workers: number) =>
        estimateAnalyzeMemory({
          ...linearizerSizes(linearizer),
          gram,
          gramChunk: strategy ? await linearizer.gramRows(strategy) : undefined,
          gramBlockBytes: strategy ? await linearizer.gramBlockBytes(strategy) : undefined,
          gramRows: strategy === 'gemm' ? gramTile(linearizer.n, linearizer.p) : undefined,
          gramWorkers: workers,
          gramWorkerBytes: strategy && workers > 0 ? await linearizer.gramWorkerBytes(strategy) : undefined,
          r: noise.support.length,
          modelBytes: model.bytes.length,
          sessionsBytes,
          deferredSessionsBytes,
          covarianceSupport: noise.sigma.kind === 'full' ? noise.support.length : 0,
          // the trust check runs where --mc does not, in its small batches
          mc: options.mc || options.trustCheck,
          mcBatch: options.mc ? undefined : TRUST_CHECK_BATCH,
          mcLowRank: noise.sigma.kind === 'full',
          probabilityPoints: options.variance === 'none' ? 0 : (options.probabilitySamples ?? 2048),
          paper: options.variance !== 'exact' && options.variance !== 'none',
          variance: options.variance !== 'none',
        });
      // the Gram form keeps A's rows for a GEMM where they fit the limit, else pushes them forward
      // again; worker threads run its reverse passes where they fit too (fewer before 'forward')
      // the workers asked for, or the most of the default that fit the limit
      const fitWorkers = async (strategy: GramStrategy | undefined) => {
        let workers = gram ? (options.workers ?? defaultGramWorkers()) : 0;
        let estimate = await estimateFor(strategy, workers);
        while (workers > 0 && estimate.total > limit.bytes && options.workers === undefined) estimate = await estimateFor(strategy, --workers);
        return { workers, estimate };
      };
      if (gram) strategy = gramStrategy(linearizer.p, linearizer.n, options.linalg);
      let { workers, estimate } = await fitWorkers(strategy);
      if (strategy === 'gemm' && estimate.total > limit.bytes) {
        strategy = 'forward';
        ({ workers, estimate } = await fitWorkers(strategy));
      }
      stage('memory estimate')(
        `${formatBytes(estimate.total)} on top of the memory in use at the start (${estimate.parts.map((x) => `${x.what} ${formatBytes(x.bytes)}`).join(', ')})`,
      );
      checkMemory(estimate, limit, model.file);
      return new Analyzer({ method: 'two-stage', linearizer, gram, strategy, workers }, decision, model, options, noise, factor);
    } catch (e) {
      try {
        if (e instanceof NetmomentsError && e.code === 'RESOURCE')
          throw await twoStageRefusal(e, model, options, linearizer, noise.support.length, plan, limit, decision.reason, gram);
      } finally {
        await linearizer.release();
      }
      throw e;
    }
  }
  /**
   * This analyzer under other noise `spec` (the same window, noise mean and options otherwise),
   * sharing its engine: the split, the onnxruntime sessions and the tangent models do not depend
   * on the noise; only the factor F the linearization is projected on (two-stage) and the input
   * noise (propagate) do, and they are made here. Undefined when the new noise has another support
   * size than this one's (sigma 0 has none), which can change the method and rank chosen: create a
   * new Analyzer then. The engine is shared: release one of them, once.
   */
  withNoise(spec: NoiseSpec, noiseFile?: string): Analyzer | undefined {
    const o = this.options;
    const inputShape = Linearizer.inputShapeOf(this.model);
    const win = o.window ? windowIndices(inputShape, o.window, this.model.file, o.layout) : undefined;
    const noise = validateNoise(spec, this.factor.n, win, noiseFile);
    if (noise.support.length !== this.noise.support.length) return undefined;
    const factor = noiseFactor(noise, noiseFile);
    const engine = this.engine.method === 'two-stage' ? this.engine : { ...this.engine, noise: propagatorNoise(noise, factor) };
    return new Analyzer(engine, this.decision, this.model, { ...o, noise: spec, noiseFile }, noise, factor);
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

  get method(): Method {
    return this.decision.method;
  }
  /** The two-stage Linearizer (bank building, the surrogate's matrices); an internal error under propagate, which has none. */
  get linearizer(): Linearizer {
    if (this.engine.method !== 'two-stage') throw new Error('internal: a propagate Analyzer has no Linearizer (ask for method two-stage)');
    return this.engine.linearizer;
  }
  /** The two-stage split; null for propagate. */
  get split(): SplitPoint | null {
    return this.engine.method === 'two-stage' ? this.engine.linearizer.split : null;
  }
  get input(): TensorDescription {
    return this.engine.method === 'two-stage' ? this.engine.linearizer.input : this.engine.propagate.input;
  }
  get output(): TensorDescription {
    return this.engine.method === 'two-stage' ? this.engine.linearizer.output : this.engine.propagate.output;
  }
  get n(): number {
    return this.input.size;
  }
  get d(): number {
    return this.output.size;
  }
  /** Propagate: the non-affine steps the propagation goes through (the trust verdict's depth); undefined for two-stage. */
  get propagateSteps(): number | undefined {
    return this.engine.method === 'propagate' ? this.engine.propagate.nonAffineSteps : undefined;
  }
  /** How Jacobians were computed (two-stage), or 'none' (propagate). */
  get jacobianMode(): string {
    return this.engine.method === 'two-stage' ? this.engine.linearizer.jacobianMode : 'none';
  }
  /** The real model's output g on `count` inputs ([count, n] float32), float64 [count, d]. */
  evaluate(xs: Float32Array, count: number): Promise<Float64Array> {
    return this.engine.method === 'two-stage' ? this.engine.linearizer.evaluate(xs, count) : this.engine.propagate.evaluate(xs, count);
  }
  /** Propagate: the moments at input mean mu under the analyzer's noise. */
  propagatedMoments(mu: Float64Array): Promise<PropagatedMoments> {
    if (this.engine.method !== 'propagate') throw new Error('internal: propagatedMoments of a two-stage Analyzer');
    return this.engine.propagate.moments(mu, this.engine.noise);
  }

  /** Analyse one input x (n float32 values, model units); `index` names it in the result and seeds its Monte Carlo. */
  async analyzeInput(x: Float32Array, index: number): Promise<AnalyzeResult & { moments: NetworkMoments | PropagatedMoments }> {
    try {
      return await this.analyzeOne(x, index);
    } catch (e) {
      throw inputFailure(e, `input ${index}`, this.model.file);
    }
  }

  private async analyzeOne(x: Float32Array, index: number): Promise<AnalyzeResult & { moments: NetworkMoments | PropagatedMoments }> {
    const { n, d } = this;
    const o = this.options;
    const file = this.model.file;
    if (x.length !== n) throw new NetmomentsError(`input ${index} has ${x.length} elements, the model input has ${n}`);
    for (let i = 0; i < n; i++) if (!Number.isFinite(x[i])) throw new NetmomentsError(`input ${index} holds a non-finite value at element ${i}`);
    const mu = Float64Array.from(x);
    if (o.noiseMean) for (let i = 0; i < n; i++) mu[i] += o.noiseMean[i];
    const mode = o.variance ?? 'both';
    const wantExact = mode === 'exact' || mode === 'both';
    const wantPaper = mode === 'paper' || mode === 'both';
    let moments: InputMoments;
    let full: NetworkMoments | PropagatedMoments;
    let linearization: AnalyzeResult['linearization'];
    let lin: Awaited<ReturnType<Linearizer['linearize']>> | undefined;
    let outputCovariance: AnalyzeResult['outputCovariance'];
    if (this.engine.method === 'two-stage') {
      const xb = o.at instanceof Float32Array ? o.at : o.at === 'input' ? x : Float32Array.from(mu);
      for (let i = 0; i < n; i++) {
        if (!Number.isFinite(xb[i]))
          throw new NetmomentsError(
            `the linearization point of input ${index} holds a value beyond the float32 range at element ${i} (input plus noise mean)`,
            {
              file,
            },
          );
      }
      const delta = new Float64Array(n);
      for (let i = 0; i < n; i++) delta[i] = mu[i] - xb[i];
      const doneLin = stage('linearization');
      lin = await this.engine.linearizer.linearize(xb, this.factor, delta, {
        gram: this.engine.gram,
        linalg: o.linalg,
        gramStrategy: this.engine.strategy,
        gramWorkers: this.engine.workers,
      });
      doneLin();
      const doneMoments = stage('moments of the surrogate');
      const nm = lin.S
        ? await gramMoments(o.linalg ?? jsLinearAlgebra, { ...lin, S: lin.S }, varianceOptions(mode))
        : await surrogateMoments(lin, this.factor, { offset: { A: lin.Adelta, D: lin.Ddelta }, ...varianceOptions(mode), linalg: o.linalg });
      doneMoments(`${nm.units.uncertain} uncertain units, ${nm.pairTerms} pair terms`);
      moments = full = nm;
      linearization = {
        point: o.at instanceof Float32Array ? 'file' : (o.at ?? 'mean'),
        jacobian: this.jacobianMode,
        expectedFlips: lin.flips,
        uncertainUnits: nm.units.uncertain,
      };
    } else {
      // the mean and covariance F F^T + diag(r) of the statistically linearized network (no split, nothing held fixed)
      const pm = await this.propagatedMoments(mu);
      full = pm;
      moments = mode === 'none' ? { mean: pm.mean } : pm;
      linearization = { point: 'none', jacobian: 'none', expectedFlips: [], uncertainUnits: 0 };
      outputCovariance = { by: pm.reverseUnits > 0 ? 'reverse' : 'factor', exactUnits: pm.reverseUnits };
    }
    const mean = finiteArray(moments.mean, 'mean', file);
    const clean = Array.from(await this.evaluate(x, 1));
    const cleanPredicted = argmax(clean);
    let probs: number[] | null = null;
    let probsErr: number | null = null;
    let flip: number | null = null;
    let bound: number | null = null;
    let topK: AnalyzeResult['classProbabilitiesTopK'];
    if (moments.covariance && o.probabilitySamples !== 0) {
      const cp = await classProbabilities(moments.mean, moments.covariance, {
        points: o.probabilitySamples ?? 2048,
        seed: seedFor(o.seed ?? 0, index),
        trueClass: cleanPredicted,
        topK: probabilityClasses(o.probabilityClasses, d),
      });
      probs = finiteArray(cp.probabilities, 'class probabilities', file);
      if (cp.classes) topK = { classes: Array.from(cp.classes), restBound: cp.restBound! };
      probsErr = cp.stdErr.reduce((a, v) => Math.max(a, v), 0);
      flip = cp.misclassification?.probability ?? null;
      bound = cp.marginBound ?? null;
    }
    const result: AnalyzeResult & { moments: NetworkMoments | PropagatedMoments } = {
      input: index,
      mean,
      variance: wantExact && moments.variance ? finiteArray(moments.variance, 'variance', file) : null,
      variancePaper: wantPaper && moments.variancePaper ? finiteArray(moments.variancePaper, 'paper variance', file) : null,
      clean,
      predicted: argmax(mean),
      cleanPredicted,
      classProbabilities: probs,
      classProbabilitiesError: probsErr,
      ...(topK ? { classProbabilitiesTopK: topK } : {}),
      flipProbability: flip,
      marginBound: bound,
      linearization,
      ...(outputCovariance ? { outputCovariance } : {}),
      trust: { verdict: 'ok', reasons: [] }, // judged below, once Monte Carlo has run
      moments: full,
    };
    if (o.covariance && moments.covariance) {
      const cov = moments.covariance;
      result.covariance = Array.from({ length: d }, (_, i) => finiteArray(cov.subarray(i * d, (i + 1) * d), 'covariance', file));
    }
    const monteCarlo = async (samples: number, batchSize: number): Promise<MonteCarloSummary> => {
      const mc = await monteCarloMoments((xs, count) => this.evaluate(xs, count), d, mu, this.fullNoise(), {
        samples,
        batchSize,
        seed: seedFor(o.seed ?? 0, index),
        flipClass: cleanPredicted,
      });
      return { samples: mc.samples, mean: Array.from(mc.mean), variance: Array.from(mc.variance), flipRate: mc.flips! / mc.samples };
    };
    if (o.mc && o.mc > 0) result.mc = await monteCarlo(o.mc, 1000);
    else if (o.trustCheck && o.trustCheck > 0) result.trustCheck = await monteCarlo(o.trustCheck, TRUST_CHECK_BATCH);
    const checkedBy = result.mc ?? result.trustCheck;
    // the surrogate is checked where the noise is centred: mu, the input itself unless a noise mean shifts it
    if (this.engine.method === 'two-stage' && lin) {
      const modelAtMu = o.noiseMean ? await this.evaluate(Float32Array.from(mu), 1) : clean;
      // the Monte Carlo that checks it: --mc's, or else the trust check's
      result.trust = twoStageTrust({ ...result, mc: checkedBy }, lin, modelAtMu, this.engine.linearizer.smoothOps);
    } else {
      // propagate holds nothing fixed and has no surrogate at a point: Monte Carlo is its check,
      // and without it the depth it went through
      result.trust = assessTrust({
        mean: result.mean,
        variance: result.variance,
        flip: result.flipProbability,
        mc: checkedBy && { ...checkedBy, flip: checkedBy.flipRate },
        propagateSteps: this.propagateSteps,
      });
    }
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
    if (this.engine.method === 'two-stage') await this.engine.linearizer.release();
    else await this.engine.propagate.release();
  }
}

/** Seconds as a short duration: 42 s, 13 min, 2.5 h. */
function formatSeconds(s: number): string {
  return s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toPrecision(2)} h`;
}

/** Inputs per batch of the forward pass a refusal times (fewer where 2^24 elements would not fit). */
const REFUSAL_TIMING_BATCH = 8;

/**
 * Samples per batch of the trust verdict's Monte Carlo check (AnalyzeOptions.trustCheck): small,
 * so that the check adds little to the run's peak (32 ResNet-18 samples' activations are about
 * 100 MB; --mc's batches of 1,000 are gigabytes at that size).
 */
export const TRUST_CHECK_BATCH = 32;

/**
 * A two-stage run refused for memory, said with what it would cost in time and what fits: r noise
 * directions for A F and p (ReLU-surrogate) columns for B, each a tangent pass, timed from one
 * forward pass of the model per input of a batch (a tangent pass of a batch of directions costs about two
 * forward passes per direction: a rough figure, stated as one); and whether --method propagate fits.
 */
async function twoStageRefusal(
  e: NetmomentsError,
  model: LoadedModel,
  options: AnalyzeOptions,
  linearizer: Linearizer,
  r: number,
  plan: PropagationPlan | undefined,
  limit: MemoryLimit,
  /** Why two-stage was chosen (src/method.ts), said when auto chose it. */
  reason: string,
  /** Whether the linearization would be formed in its Gram form (Linearizer.gramPlanned). */
  gram = false,
): Promise<NetmomentsError> {
  // timed per input of a batch (tangent passes run batched: at batch 1 AlexNet's per-input time is
  // several times its batched one, and the estimate came out at 50 min for 2 CPU min of work)
  const batch = Math.max(1, Math.min(REFUSAL_TIMING_BATCH, Math.floor(2 ** 24 / linearizer.n)));
  const zeros = new Float32Array(batch * linearizer.n);
  await linearizer.evaluate(zeros, batch); // warm-up
  const t0 = performance.now();
  await linearizer.evaluate(zeros, batch);
  const forward = (performance.now() - t0) / 1000 / batch;
  const { passes, text } = linearizer.jacobianPasses(r, gram);
  let fits = 'noise on fewer input elements (--window) or a narrower split (a later --relu)';
  try {
    const pl = plan ?? (await planPropagation(model, options));
    if (pl.missing.length === 0) {
      const rank = propagateRank(pl, Math.max(1, r), limit, options.rank);
      const est = estimatePropagateMemory(pl, rank, Math.max(1, r));
      if (est.total <= limit.bytes) fits = `--method propagate (moments through every layer, noise factor rank ${rank}: about ${formatBytes(est.total)})`;
    }
  } catch {
    // no propagation plan: the window and the split are what is left
  }
  return new NetmomentsError(
    `two-stage at split point ${linearizer.split.index} ('${linearizer.split.node}', p = ${linearizer.p})` +
      `${(options.method ?? 'auto') === 'auto' ? ` (auto chose two-stage: ${reason})` : ''} is refused before it starts: ${e.message}; ` +
      `it would also take about ${passes} tangent passes (${text}), roughly ${formatSeconds(2 * passes * forward)} ` +
      `at ${(forward * 1000).toFixed(forward < 0.01 ? 1 : 0)} ms per forward pass (per input of a batch of ${batch}); what fits: ${fits}`,
    { file: model.file, code: 'RESOURCE', cause: e },
  );
}

/** Outputs up to this many get class probabilities on every class by default. */
export const ALL_CLASSES_MAX = 100;
/** Classes of largest mean the probabilities are sampled on above ALL_CLASSES_MAX outputs. */
export const DEFAULT_TOP_CLASSES = 10;

/** The topK of classProbabilities for d outputs: the option (0: all), else all up to ALL_CLASSES_MAX and DEFAULT_TOP_CLASSES above. */
export function probabilityClasses(option: number | undefined, d: number): number | undefined {
  if (option !== undefined) {
    if (!(Number.isInteger(option) && option >= 0))
      throw new NetmomentsError(`--probability-classes must be a whole number >= 0, got ${option}`, { code: 'BAD_USAGE' });
    return option === 0 || option >= d ? undefined : option;
  }
  return d > ALL_CLASSES_MAX ? DEFAULT_TOP_CLASSES : undefined;
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
    const n = analyzer.n;
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
      method: analyzer.method,
      methodReason: analyzer.decision.reason,
      ...(analyzer.decision.rank !== undefined ? { rank: analyzer.decision.rank } : {}),
      split: analyzer.split,
      output: { name: analyzer.output.name, shape: analyzer.output.shape, size: analyzer.output.size },
      noise: {
        kind: spec.kind,
        ...(spec.kind === 'isotropic' ? { sigma: spec.sigma } : { file: options.noiseFile }),
        meanFile: null,
        window: options.window ? [options.window.row, options.window.col, options.window.height, options.window.width] : null,
        ...(options.window ? { layout: imageGeometry(analyzer.input.shape, options.layout)!.layout } : {}),
        support: analyzer.noise.support.length,
      },
      linearizationPoint: analyzer.method === 'propagate' ? 'none' : options.at instanceof Float32Array ? 'file' : (options.at ?? 'mean'),
      run: {
        version: VERSION,
        modelSha256: model.sha256,
        seed: options.seed ?? 0,
        threads: options.threads ?? null,
        jacobian: analyzer.jacobianMode,
        variance: options.variance ?? 'both',
      },
      results,
    };
  } finally {
    await analyzer.release();
  }
}
