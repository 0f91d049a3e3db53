/**
 * Gaussian noise construction (the paper's Eq. 3 and Eq. 4) and a universal variant.
 *
 * The attacker adds noise e ~ N(mu, sigma^2 I_S) to the image x on a set S of input elements
 * (all of them for Eq. 3; a random alpha fraction, fixed by the seed, for Eq. 4; mu and the noise
 * are both zero outside S). With E = E[g(x + e)] from the closed-form mean (Theorem 1) of the
 * two-stage surrogate linearized once at the clean image (as in the paper):
 *   Eq. 3, targeted to class j:  min_{mu, sigma^2}  max_{i != j} E_i - E_j
 *   Eq. 4, untargeted, class c:  min_{mu, sigma^2}  E_c - max_{i != c} E_i
 *   subject to |mu_k| <= beta and 0 < sigma^2 <= varMax.
 * The max is smoothed by a log-sum-exp at temperature t (default 0.1 logit units; the smoothed
 * value is within t log(d - 1) of the max), so that the objective is differentiable; its gradient
 * is the gradient of w^T E for the softmax weights w, which src/moments/gradients.ts gives in
 * closed form for mu and sigma^2 (meanGradient). The optimizer is the spectral projected gradient
 * method (optimize.ts) on the scaled box u = mu / beta in [-1, 1], v = sigma^2 / varMax in
 * [1e-6, 1]. `rounds` > 1 re-linearizes at x + mu after each round (not in the paper; default 1).
 *
 * Universal (one mu and sigma^2 for many images): minimize the average over images of the smoothed
 * correct-class margin clipped below at -kappa, (1/N) sum_i max(E_{c_i} - smax_{j != c_i} E_j, -kappa),
 * each image with its own surrogate linearized at its clean image, under the same box.
 *
 * Verification samples from the found N(x + mu, sigma^2 I_S), runs the real model and counts the
 * samples classified as the target (Eq. 3) or away from the true class (Eq. 4).
 */
import { seedFor } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import { Linearizer, type TensorDescription } from '../linearize/linearizer.js';
import { classProbabilities } from '../moments/classprob.js';
import { meanGradient } from '../moments/gradients.js';
import type { LinearAlgebra } from '../moments/linalg.js';
import { GaussianSampler, Rng } from '../moments/montecarlo.js';
import { networkMoments, type NoiseCovariance, type ShallowNetwork } from '../moments/network.js';
import { matVec } from '../moments/linalg.js';
import { reluMean } from '../moments/relu.js';
import type { LoadedModel } from '../onnx/load.js';
import type { SplitPoint } from '../onnx/splitpoint.js';
import { argmax } from '../util/argmax.js';
import { RestrictedSurrogate, allIndices, pointSurrogate, type PointSurrogate } from './common.js';
import { spgMinimize } from './optimize.js';

export type AttackMode = 'targeted' | 'untargeted';

/** The paper's MNIST box: beta 30 for Eq. 3, 550 for Eq. 4 (pixel units, the LeNet's input units). */
export const PAPER_BETA = { targeted: 30, untargeted: 550, universal: 30 } as const;
/** The paper's fraction of attacked pixels: all for Eq. 3, 4% for Eq. 4. */
export const PAPER_ALPHA = { targeted: 1, untargeted: 0.04, universal: 1 } as const;

export interface AttackBox {
  /** |mu_k| <= beta (model input units). */
  beta: number;
  /** 0 < sigma^2 <= varMax. */
  varMax: number;
}

export interface AttackSettings extends AttackBox {
  /** Fraction of input elements attacked (chosen at random with the seed); 1: all. */
  alpha: number;
  /** SPG iterations per round (default 300). */
  iters?: number;
  /** Linearizations: 1 (default, the paper) linearizes once at the clean image. */
  rounds?: number;
  /** Log-sum-exp temperature of the smoothed max (default 0.1). */
  temperature?: number;
  /** Verification samples per image through the real model (default 1000). */
  verify?: number;
  seed?: number;
  linalg?: LinearAlgebra;
  /** Also keep x + mu inside this input range (per-element bounds; not in the paper). */
  clipTo?: { lo: number; hi: number };
}

export interface AttackerOptions {
  relu?: number | string;
  output?: string;
  threads?: number;
  onWarning?: (m: string) => void;
  /** Eq. 3's target class, checked against the model's output size when the attacker is created. */
  target?: number;
}

/** The noise an attack found, N(mu, sigma2 I) on the attacked elements, and how the optimizer got there. */
export interface AttackSolution {
  /** Attacked input elements (sorted). */
  elements: Int32Array;
  /** The noise mean over all n input elements (0 outside `elements`). */
  mu: Float64Array;
  sigma2: number;
  /** The paper's objective at the solution (unsmoothed; per-input attacks: on the surrogate of the last round). */
  objective: number;
  /** The objective at mu = 0, sigma^2 = varMax / 2 (the start). */
  objectiveStart: number;
  iterations: number;
  evaluations: number;
}

export interface AttackResult extends AttackSolution {
  input: number;
  mode: AttackMode;
  /** Eq. 3: the target class j; Eq. 4: the true class c. */
  targetClass: number | null;
  trueClass: number;
  cleanClass: number;
  /** Closed-form moments of the surrogate at the solution. */
  analytic: { mean: number[]; predicted: number; classProbabilities: number[] };
  /** The real model at the noise mean x + mu (no noise). */
  realAtMean: { logits: number[]; predicted: number };
  /** Samples of N(x + mu, sigma^2 I_S) through the real model. */
  verification: { samples: number; classCounts: number[]; rate: number };
  /** Eq. 3: at least half of the verification samples are the target; Eq. 4: at least half are not the true class. */
  success: boolean;
  /** Fraction of x + mu outside [lo, hi] when a valid input range is known, else null. */
  outOfRange: number | null;
}

export interface UniversalSettings extends AttackSettings {
  /** Clip of the margin from below (default 1 logit unit). */
  kappa?: number;
}

export interface UniversalImage {
  input: number;
  trueClass: number;
  cleanClass: number;
  /** Analytic mean's class at the solution (surrogate linearized at the clean image). */
  predictedClass: number;
  /** The real model at x + mu. */
  realClass: number;
  /** Fraction of noise samples whose class differs from the clean class. */
  sampledFooling: number;
}

export interface UniversalResult extends AttackSolution {
  images: UniversalImage[];
  /** Fractions of images whose class differs from the clean class. */
  predictedFoolingRate: number;
  realFoolingRate: number;
  sampledFoolingRate: number;
}

/** Element subset of size round(alpha n) (at least 1), seeded; all elements when alpha >= 1. */
export function chooseElements(n: number, alpha: number, seed: number): Int32Array {
  if (!(Number.isFinite(alpha) && alpha > 0 && alpha <= 1))
    throw new NetmomentsError(`--alpha must be a fraction in (0, 1], got ${alpha}`, { code: 'BAD_USAGE' });
  if (alpha >= 1) return allIndices(n);
  const k = Math.max(1, Math.round(alpha * n));
  const idx = allIndices(n);
  const rng = new Rng(seed);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng.nextDouble() * (n - i));
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  return Int32Array.from(idx.subarray(0, k)).sort();
}

/**
 * The smoothed objective and its output weights. Targeted (class j): f = t LSE_{i != j}((E_i - E_j)/t),
 * w = softmax weights on i != j and -1 on j. Untargeted (class c): f = -t LSE_{i != c}((E_i - E_c)/t),
 * w = -softmax on i != c and +1 on c. `exact` is the unsmoothed value.
 */
export function smoothedObjective(E: ArrayLike<number>, mode: AttackMode, cls: number, t: number): { f: number; exact: number; weights: Float64Array } {
  const d = E.length;
  let mx = -Infinity;
  for (let i = 0; i < d; i++) if (i !== cls) mx = Math.max(mx, E[i] - E[cls]);
  let sum = 0;
  const w = new Float64Array(d);
  for (let i = 0; i < d; i++)
    if (i !== cls) {
      w[i] = Math.exp((E[i] - E[cls] - mx) / t);
      sum += w[i];
    }
  const lse = mx + t * Math.log(sum);
  for (let i = 0; i < d; i++) if (i !== cls) w[i] /= sum;
  if (mode === 'targeted') {
    w[cls] = -1;
    return { f: lse, exact: mx, weights: w };
  }
  for (let i = 0; i < d; i++) if (i !== cls) w[i] = -w[i];
  w[cls] = 1;
  return { f: -lse, exact: -mx, weights: w };
}

/**
 * The smoothed objective on one surrogate, in the box-scaled variables z = [mu_S / beta, sigma^2 / varMax].
 * The mean for line searches is Theorem 1 evaluated directly with the row norms of A_S precomputed
 * (s_v = sigma |A_S,v| for isotropic noise on S), the same formula as networkMeanOnly without
 * rebuilding the noise factors on every call; gradients come from meanGradient (gradients.ts).
 */
export class AttackProblem {
  private readonly rowNorm: Float64Array;

  constructor(
    readonly R: RestrictedSurrogate,
    /** mu_S of the linearization point (the offset delta is beta u - base). */
    readonly base: Float64Array,
    readonly beta: number,
    readonly varMax: number,
    readonly mode: AttackMode,
    readonly cls: number,
    readonly t: number,
    readonly linalg?: LinearAlgebra,
  ) {
    const { p } = R.s;
    const q = R.q;
    this.rowNorm = new Float64Array(p);
    for (let u = 0; u < p; u++) {
      let acc = 0;
      for (let k = 0; k < q; k++) acc += R.As[u * q + k] ** 2;
      this.rowNorm[u] = Math.sqrt(acc);
    }
  }

  network(z: Float64Array): ShallowNetwork {
    const q = this.R.q;
    const delta = new Float64Array(q);
    for (let k = 0; k < q; k++) delta[k] = this.beta * z[k] - this.base[k];
    return this.R.network(delta);
  }

  noise(z: Float64Array): NoiseCovariance {
    return { kind: 'isotropic', sigma: Math.sqrt(this.varMax * z[this.R.q]) };
  }

  /** E[g] of the surrogate at z (Theorem 1). */
  mean(z: Float64Array): Float64Array {
    const net = this.network(z);
    const sigma = Math.sqrt(this.varMax * z[this.R.q]);
    const { p, d } = this.R.s;
    const er = new Float64Array(p);
    for (let u = 0; u < p; u++) er[u] = reluMean(net.m[u], sigma * this.rowNorm[u]);
    const E = matVec(net.B.data, d, p, er);
    for (let i = 0; i < d; i++) E[i] += net.c2[i];
    if (net.D && net.mu) {
      const dm = matVec(net.D.data, d, this.R.q, net.mu);
      for (let i = 0; i < d; i++) E[i] += dm[i];
    }
    return E;
  }

  value(z: Float64Array): number {
    return smoothedObjective(this.mean(z), this.mode, this.cls, this.t).f;
  }

  /** The unsmoothed objective of Eq. 3 / Eq. 4. */
  exact(z: Float64Array): number {
    return smoothedObjective(this.mean(z), this.mode, this.cls, this.t).exact;
  }

  async valueAndGradient(z: Float64Array): Promise<{ f: number; g: Float64Array }> {
    const q = this.R.q;
    const o = smoothedObjective(this.mean(z), this.mode, this.cls, this.t);
    const gr = await meanGradient(this.network(z), this.noise(z), o.weights, { linalg: this.linalg });
    const g = new Float64Array(q + 1);
    for (let k = 0; k < q; k++) g[k] = this.beta * gr.dMu[k];
    g[q] = this.varMax * (gr.dSigma2 ?? 0);
    return { f: o.f, g };
  }
}

const V_MIN = 1e-6;

/**
 * Bounds of the scaled variables [u = mu_S / beta, v = sigma^2 / varMax]: u in [-1, 1], v in
 * [V_MIN, 1]; with clipTo, also x_k + beta u_k in [lo, hi] for every image x (0 always feasible).
 */
export function scaledBox(
  q: number,
  beta: number,
  clipTo: { lo: number; hi: number } | undefined,
  xs: Float32Array[],
  S: Int32Array,
): { lo: Float64Array; hi: Float64Array } {
  const lo = new Float64Array(q + 1).fill(-1);
  const hi = new Float64Array(q + 1).fill(1);
  lo[q] = V_MIN;
  if (clipTo) {
    for (const x of xs) {
      for (let k = 0; k < q; k++) {
        const v = x[S[k]];
        lo[k] = Math.max(lo[k], Math.min(0, (clipTo.lo - v) / beta));
        hi[k] = Math.min(hi[k], Math.max(0, (clipTo.hi - v) / beta));
      }
    }
  }
  return { lo, hi };
}

function checkBox(s: AttackBox): void {
  if (!(Number.isFinite(s.beta) && s.beta > 0)) throw new NetmomentsError(`--beta must be a number > 0, got ${s.beta}`, { code: 'BAD_USAGE' });
  if (!(Number.isFinite(s.varMax) && s.varMax > 0)) throw new NetmomentsError(`--var-max must be a number > 0, got ${s.varMax}`, { code: 'BAD_USAGE' });
}

/** One model, one split: sessions created once, attacks run input by input. */
export class Attacker {
  private constructor(readonly lin: Linearizer) {}

  static async create(model: LoadedModel, options: AttackerOptions = {}): Promise<Attacker> {
    const { target, ...linearizerOptions } = options;
    const attacker = new Attacker(await Linearizer.create(model, { ...linearizerOptions, flips: false }));
    const d = attacker.output.size;
    if (target !== undefined && !(Number.isInteger(target) && target >= 0 && target < d)) {
      await attacker.release();
      throw new NetmomentsError(`--target must be a class index in [0, ${d}), got ${target}`, { code: 'BAD_USAGE' });
    }
    return attacker;
  }

  get split(): SplitPoint {
    return this.lin.split;
  }
  get output(): TensorDescription {
    return this.lin.output;
  }
  get n(): number {
    return this.lin.n;
  }

  async release(): Promise<void> {
    await this.lin.release();
  }

  private restricted(s: PointSurrogate, elements: Int32Array): RestrictedSurrogate {
    return elements.length === s.n ? new RestrictedSurrogate(s, elements, { As: s.A, Ds: s.D }) : new RestrictedSurrogate(s, elements);
  }

  /** Eq. 3 (mode 'targeted', cls = target) or Eq. 4 (mode 'untargeted', cls = true class, default the clean class). */
  async attack(
    x: Float32Array,
    index: number,
    mode: AttackMode,
    settings: AttackSettings,
    cls?: number,
    range?: { lo: number; hi: number },
  ): Promise<AttackResult> {
    checkBox(settings);
    const { n, d } = this.lin;
    const seed = settings.seed ?? 0;
    const t = settings.temperature ?? 0.1;
    const rounds = settings.rounds ?? 1;
    const clean = await this.lin.evaluate(x, 1);
    const cleanClass = argmax(clean);
    if (mode === 'targeted' && cls === undefined) throw new NetmomentsError('a targeted attack needs --target', { code: 'BAD_USAGE' });
    const c = cls ?? cleanClass;
    if (!(Number.isInteger(c) && c >= 0 && c < d)) throw new NetmomentsError(`the class must be an integer in [0, ${d}), got ${c}`, { code: 'BAD_USAGE' });
    const S = chooseElements(n, settings.alpha, seedFor(seed, index));
    const q = S.length;
    const { beta, varMax } = settings;
    const z = new Float64Array(q + 1);
    z[q] = 0.5;
    const { lo, hi } = scaledBox(q, beta, settings.clipTo, [x], S);
    let iterations = 0;
    let evaluations = 0;
    const la = settings.linalg;
    const linearizeAt = async (zz: Float64Array) => {
      const point = Float32Array.from(x);
      for (let k = 0; k < q; k++) point[S[k]] += beta * zz[k];
      const base = Float64Array.from({ length: q }, (_, k) => point[S[k]] - x[S[k]]);
      return new AttackProblem(this.restricted(await pointSurrogate(this.lin, point), S), base, beta, varMax, mode, c, t, la);
    };
    let problem = await linearizeAt(z);
    const objectiveStart = problem.exact(z);
    // rounds > 1: every round starts from a surrogate linearized at x + mu itself; the returned mu
    // is the one whose own-point objective is best (round 1 alone is the paper's method).
    let best = { z: Float64Array.from(z), problem, objective: objectiveStart };
    for (let round = 0; round < rounds; round++) {
      if (round > 0) {
        problem = await linearizeAt(z);
        const o = problem.exact(z);
        if (o < best.objective) best = { z: Float64Array.from(z), problem, objective: o };
      }
      const res = await spgMinimize(
        (zz) => problem.valueAndGradient(zz),
        async (zz) => problem.value(zz),
        z,
        lo,
        hi,
        { maxIter: settings.iters ?? 300 },
      );
      z.set(res.x);
      iterations += res.iterations;
      evaluations += res.evaluations;
    }
    if (rounds === 1) best = { z: Float64Array.from(z), problem, objective: problem.exact(z) };
    else {
      const last = await linearizeAt(z);
      const o = last.exact(z);
      if (o <= best.objective) best = { z: Float64Array.from(z), problem: last, objective: o };
    }
    z.set(best.z);
    const sigma2 = varMax * z[q];
    const mu = new Float64Array(n);
    for (let k = 0; k < q; k++) mu[S[k]] = beta * z[k];
    const mom = await networkMoments(best.problem.network(z), best.problem.noise(z), { covariance: true, paper: false, linalg: la });
    const objective = smoothedObjective(mom.mean, mode, c, t).exact;
    const cp = await classProbabilities(mom.mean, mom.covariance!, { points: 1024, shifts: 8, seed: seedFor(seed, index) });
    const xm = Float32Array.from(x, (v, i) => v + mu[i]);
    const atMean = await this.lin.evaluate(xm, 1);
    const counts = await this.sampleClasses(x, mu, S, sigma2, settings.verify ?? 1000, seedFor(seed ^ 0x2545f491, index));
    const total = counts.reduce((a, b) => a + b, 0);
    const rate = total > 0 ? (mode === 'targeted' ? counts[c] / total : 1 - counts[c] / total) : Number.NaN;
    let outOfRange: number | null = null;
    if (range) {
      let k = 0;
      for (let i = 0; i < n; i++) if (xm[i] < range.lo || xm[i] > range.hi) k++;
      outOfRange = k / n;
    }
    return {
      input: index,
      mode,
      targetClass: mode === 'targeted' ? c : null,
      trueClass: mode === 'targeted' ? cleanClass : c,
      cleanClass,
      elements: S,
      mu,
      sigma2,
      objective,
      objectiveStart,
      iterations,
      evaluations,
      analytic: { mean: Array.from(mom.mean), predicted: argmax(mom.mean), classProbabilities: Array.from(cp.probabilities) },
      realAtMean: { logits: Array.from(atMean), predicted: argmax(atMean) },
      verification: { samples: total, classCounts: counts, rate },
      success: total > 0 && rate >= 0.5,
      outOfRange,
    };
  }

  /** Eq. 3 or Eq. 4 on several inputs in turn (`classes[k]`: the target or true class of `inputs[k]`, named `indices[k]`). */
  async attackMany(
    inputs: Float32Array[],
    indices: number[],
    mode: AttackMode,
    settings: AttackSettings,
    classes: (number | undefined)[],
    range?: { lo: number; hi: number },
    onProgress?: (done: number, total: number) => void,
  ): Promise<AttackResult[]> {
    const out: AttackResult[] = [];
    for (let k = 0; k < inputs.length; k++) {
      out.push(await this.attack(inputs[k], indices[k], mode, settings, classes[k], range));
      onProgress?.(k + 1, inputs.length);
    }
    return out;
  }

  /** Classes of `samples` draws of N(x + mu, sigma2 I_S) through the real model. */
  async sampleClasses(x: Float32Array, mu: Float64Array, S: Int32Array, sigma2: number, samples: number, seed: number): Promise<number[]> {
    const { n, d } = this.lin;
    const counts = new Array<number>(d).fill(0);
    if (samples <= 0) return counts;
    const mean = Float64Array.from(x, (v, i) => v + mu[i]);
    const variance = new Float64Array(n);
    for (const k of S) variance[k] = sigma2;
    const sampler = new GaussianSampler(mean, { kind: 'diagonal', variance });
    const rng = new Rng(seed);
    const B = 500;
    for (let done = 0; done < samples;) {
      const b = Math.min(B, samples - done);
      const xs = new Float32Array(b * n);
      sampler.sample(rng, xs, b);
      const y = await this.lin.evaluate(xs, b);
      for (let k = 0; k < b; k++) counts[argmax(y, k * d, d)]++;
      done += b;
    }
    return counts;
  }

  /**
   * One noise mean and variance for all `inputs` (file comment). `classes[i]` is image i's true
   * class (its label, or the clean class); `indices[i]` names it in the result.
   */
  async universal(
    inputs: Float32Array[],
    indices: number[],
    classes: (number | null)[],
    settings: UniversalSettings,
    onProgress?: (stage: string, done: number, total: number) => void,
  ): Promise<UniversalResult> {
    checkBox(settings);
    const { n, d } = this.lin;
    const N = inputs.length;
    if (N === 0) throw new NetmomentsError('the universal attack needs at least one input', { code: 'BAD_USAGE' });
    const seed = settings.seed ?? 0;
    const t = settings.temperature ?? 0.1;
    const kappa = settings.kappa ?? 1;
    const la = settings.linalg;
    const S = chooseElements(n, settings.alpha, seedFor(seed, 0x7fffffff));
    const q = S.length;
    const { beta, varMax } = settings;
    const Rs: RestrictedSurrogate[] = [];
    const clean: number[] = [];
    const cls: number[] = [];
    for (let i = 0; i < N; i++) {
      const s = await pointSurrogate(this.lin, inputs[i]);
      Rs.push(this.restricted(s, S));
      clean.push(argmax(s.gb));
      const c = classes[i] ?? clean[i];
      if (!(Number.isInteger(c) && c >= 0 && c < d)) throw new NetmomentsError(`the class of input ${indices[i]} must be an integer in [0, ${d}), got ${c}`);
      cls.push(c);
      onProgress?.('linearize', i + 1, N);
    }
    const problems = Rs.map((R, i) => new AttackProblem(R, new Float64Array(q), beta, varMax, 'untargeted', cls[i], t, la));
    const evalAll = async (zz: Float64Array, withGrad: boolean) => {
      let f = 0;
      let exact = 0;
      const g = withGrad ? new Float64Array(q + 1) : undefined;
      for (let i = 0; i < N; i++) {
        const o = smoothedObjective(problems[i].mean(zz), 'untargeted', cls[i], t);
        exact += Math.max(o.exact, -kappa);
        if (o.f <= -kappa) {
          f += -kappa;
          continue;
        }
        f += o.f;
        if (g) {
          const gr = await meanGradient(problems[i].network(zz), problems[i].noise(zz), o.weights, { linalg: la });
          for (let k = 0; k < q; k++) g[k] += beta * gr.dMu[k];
          g[q] += varMax * (gr.dSigma2 ?? 0);
        }
      }
      if (g) for (let k = 0; k <= q; k++) g[k] /= N;
      return { f: f / N, exact: exact / N, g };
    };
    const z = new Float64Array(q + 1);
    z[q] = 0.5;
    const { lo, hi } = scaledBox(q, beta, settings.clipTo, inputs, S);
    const objectiveStart = (await evalAll(z, false)).exact;
    let it = 0;
    const res = await spgMinimize(
      async (zz) => {
        const r = await evalAll(zz, true);
        onProgress?.('optimize', ++it, settings.iters ?? 300);
        return { f: r.f, g: r.g! };
      },
      async (zz) => (await evalAll(zz, false)).f,
      z,
      lo,
      hi,
      { maxIter: settings.iters ?? 300 },
    );
    z.set(res.x);
    const objective = (await evalAll(z, false)).exact;
    const sigma2 = varMax * z[q];
    const mu = new Float64Array(n);
    for (let k = 0; k < q; k++) mu[S[k]] = beta * z[k];
    const images: UniversalImage[] = [];
    const verify = settings.verify ?? 100;
    for (let i = 0; i < N; i++) {
      const E = problems[i].mean(z);
      const xm = Float32Array.from(inputs[i], (v, k) => v + mu[k]);
      const real = argmax(await this.lin.evaluate(xm, 1));
      const counts = await this.sampleClasses(inputs[i], mu, S, sigma2, verify, seedFor(seed ^ 0x2545f491, indices[i]));
      const total = counts.reduce((a, b) => a + b, 0);
      images.push({
        input: indices[i],
        trueClass: cls[i],
        cleanClass: clean[i],
        predictedClass: argmax(E),
        realClass: real,
        sampledFooling: total > 0 ? 1 - counts[clean[i]] / total : Number.NaN,
      });
      onProgress?.('verify', i + 1, N);
    }
    const rate = (f: (im: UniversalImage) => number) => images.reduce((a, im) => a + f(im), 0) / N;
    return {
      elements: S,
      mu,
      sigma2,
      objective,
      objectiveStart,
      iterations: res.iterations,
      evaluations: res.evaluations,
      images,
      predictedFoolingRate: rate((im) => (im.predictedClass !== im.cleanClass ? 1 : 0)),
      realFoolingRate: rate((im) => (im.realClass !== im.cleanClass ? 1 : 0)),
      sampledFoolingRate: verify > 0 ? rate((im) => im.sampledFooling) : Number.NaN,
    };
  }
}

/** Noise an attack found: N(mu, sigma2 I) on the elements (mu is 0 elsewhere). */
export type FoundNoise = Pick<AttackSolution, 'mu' | 'elements' | 'sigma2'>;

/**
 * One draw of found noise, e = mu + sigma eps on the attacked elements S (mu elsewhere, where it is
 * 0), eps ~ N(0, I), seeded by (seed, input): the noise the pictures of an attack show.
 */
export function noiseDraw(found: FoundNoise, seed: number, input: number): Float64Array {
  const e = Float64Array.from(found.mu);
  const rng = new Rng(seedFor(seed, input));
  const s = Math.sqrt(found.sigma2);
  for (const k of found.elements) e[k] += s * rng.normal();
  return e;
}

/** Convenience: run Eq. 3 / Eq. 4 on several inputs with one Attacker. */
export async function attackInputs(
  model: LoadedModel,
  inputs: Float32Array[],
  indices: number[],
  mode: AttackMode,
  settings: AttackSettings,
  classes: (number | undefined)[],
  options: AttackerOptions & { range?: { lo: number; hi: number }; onProgress?: (done: number, total: number) => void } = {},
): Promise<AttackResult[]> {
  const attacker = await Attacker.create(model, options);
  try {
    return await attacker.attackMany(inputs, indices, mode, settings, classes, options.range, options.onProgress);
  } finally {
    await attacker.release();
  }
}
