/**
 * Monte Carlo ground truth: a seeded sampler from N(mu, Sigma) and float64 accumulation of the mean,
 * variance (with its standard error) and covariance of any batch function's outputs.
 *
 * Random numbers: xoshiro128** (src/util/rng.ts, seeded through a splitmix32-style mixer);
 * uniforms carry 53 bits; normals by Marsaglia's polar method (Marsaglia and Bray 1964), all in float64.
 *
 * Sampling: x = mu + L eps with L = sigma I, diag(sqrt v), F (low rank), or for a full Sigma the
 * eigen-factor V diag(sqrt(lambda)) over the eigenvalues above the tolerance (so singular but valid
 * covariances, e.g. noise confined to a window, work; eps then has only rank(Sigma) entries).
 */
import { NetmomentsError } from '../errors.js';
import { covarianceFactor, validateNoise, type NoiseCovariance } from '../noise.js';
import { argmax } from '../util/argmax.js';
import { Xoshiro128 } from '../util/rng.js';

export { covarianceFactor, type CovarianceFactor } from '../noise.js';

/**
 * The Monte Carlo flavour of the one generator (src/util/rng.ts): xoshiro128** with float64
 * uniforms and Marsaglia polar normals, under the names the samplers use.
 */
export class Rng extends Xoshiro128 {
  /** Next 32 random bits. */
  nextUint32(): number {
    return this.uint32();
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextDouble(): number {
    return this.double();
  }

  /** Standard normal (Marsaglia polar method; the second value of each pair is kept). */
  normal(): number {
    return this.polarNormal();
  }

  fillNormal(out: Float64Array): Float64Array {
    for (let i = 0; i < out.length; i++) out[i] = this.polarNormal();
    return out;
  }
}

/** Draws x ~ N(mu, Sigma). */
export class GaussianSampler {
  readonly n: number;
  /** Number of standard normals per sample. */
  readonly rank: number;
  private readonly mu: Float64Array;
  private readonly mode: 'scale' | 'factor';
  private readonly scale?: Float64Array; // per-coordinate std (isotropic / diagonal)
  private readonly factor?: Float64Array; // n x rank
  private readonly eps: Float64Array;

  constructor(mu: Float64Array, noise: NoiseCovariance, options: { psdTolerance?: number } = {}) {
    const n = mu.length;
    validateNoise(noise, n);
    for (let i = 0; i < n; i++) if (!Number.isFinite(mu[i])) throw new NetmomentsError(`mu holds a non-finite value at element ${i}`);
    this.n = n;
    this.mu = mu;
    switch (noise.kind) {
      case 'isotropic':
        this.mode = 'scale';
        this.scale = new Float64Array(n).fill(noise.sigma);
        this.rank = n;
        break;
      case 'diagonal':
        this.mode = 'scale';
        this.scale = noise.variance.map(Math.sqrt);
        this.rank = n;
        break;
      case 'lowrank':
        this.mode = 'factor';
        this.factor = noise.factor;
        this.rank = noise.rank;
        break;
      case 'full': {
        const f = covarianceFactor(noise.cov, n, options.psdTolerance ?? 1e-9);
        this.mode = 'factor';
        this.factor = f.factor;
        this.rank = f.rank;
        break;
      }
    }
    this.eps = new Float64Array(this.rank);
  }

  /** Fill out[k * n + i] for k < count with independent draws. */
  sample(rng: Rng, out: Float64Array | Float32Array, count: number): void {
    const n = this.n;
    const mu = this.mu;
    if (this.mode === 'scale') {
      const sc = this.scale as Float64Array;
      for (let k = 0; k < count; k++) {
        const o = k * n;
        for (let i = 0; i < n; i++) out[o + i] = mu[i] + sc[i] * rng.normal();
      }
      return;
    }
    const F = this.factor as Float64Array;
    const r = this.rank;
    const eps = this.eps;
    for (let k = 0; k < count; k++) {
      rng.fillNormal(eps);
      const o = k * n;
      for (let i = 0; i < n; i++) {
        let v = mu[i];
        const fo = i * r;
        for (let t = 0; t < r; t++) v += F[fo + t] * eps[t];
        out[o + i] = v;
      }
    }
  }
}

/**
 * Streaming float64 moments of d-dimensional observations: count, mean, central moments M2, M3,
 * M4 per output and optionally the co-moment matrix; batches are reduced two-pass and merged.
 * Formulas: pairwise update of Chan, Golub and LeVeque (1979) for the mean, M2 and the co-moments,
 * extended to M3, M4 by Pebay (2008, Sandia report SAND2008-6212, eq. 3.1):
 *   delta = mean_b - mean_a, N = na + nb
 *   M2 = M2a + M2b + delta^2 na nb / N
 *   M3 = M3a + M3b + delta^3 na nb (na - nb) / N^2 + 3 delta (na M2b - nb M2a) / N
 *   M4 = M4a + M4b + delta^4 na nb (na^2 - na nb + nb^2) / N^3 + 6 delta^2 (na^2 M2b + nb^2 M2a) / N^2
 *        + 4 delta (na M3b - nb M3a) / N
 *   C  = Ca + Cb + delta delta^T na nb / N.
 */
export class MomentAccumulator {
  readonly d: number;
  count = 0;
  readonly mean: Float64Array;
  readonly M2: Float64Array;
  readonly M3: Float64Array;
  readonly M4: Float64Array;
  readonly C?: Float64Array;

  constructor(d: number, covariance = false) {
    this.d = d;
    this.mean = new Float64Array(d);
    this.M2 = new Float64Array(d);
    this.M3 = new Float64Array(d);
    this.M4 = new Float64Array(d);
    if (covariance) this.C = new Float64Array(d * d);
  }

  /** Add `count` observations stored row-major in y (count x d). */
  addBatch(y: Float64Array | Float32Array, count: number): void {
    if (count <= 0) return;
    const d = this.d;
    const b = new MomentAccumulator(d, !!this.C);
    b.count = count;
    for (let k = 0; k < count; k++) for (let i = 0; i < d; i++) b.mean[i] += y[k * d + i];
    for (let i = 0; i < d; i++) b.mean[i] /= count;
    for (let k = 0; k < count; k++) {
      const o = k * d;
      for (let i = 0; i < d; i++) {
        const e = y[o + i] - b.mean[i];
        const e2 = e * e;
        b.M2[i] += e2;
        b.M3[i] += e2 * e;
        b.M4[i] += e2 * e2;
      }
    }
    if (b.C) {
      const e = new Float64Array(d);
      for (let k = 0; k < count; k++) {
        const o = k * d;
        for (let i = 0; i < d; i++) e[i] = y[o + i] - b.mean[i];
        for (let i = 0; i < d; i++) {
          const ei = e[i];
          const co = i * d;
          for (let j = i; j < d; j++) b.C[co + j] += ei * e[j];
        }
      }
      for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) b.C[i * d + j] = b.C[j * d + i];
    }
    this.merge(b);
  }

  /** Merge another accumulator into this one. */
  merge(b: MomentAccumulator): void {
    if (b.count === 0) return;
    const d = this.d;
    if (this.count === 0) {
      this.count = b.count;
      this.mean.set(b.mean);
      this.M2.set(b.M2);
      this.M3.set(b.M3);
      this.M4.set(b.M4);
      if (this.C && b.C) this.C.set(b.C);
      return;
    }
    const na = this.count;
    const nb = b.count;
    const N = na + nb;
    const delta = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      const dl = b.mean[i] - this.mean[i];
      delta[i] = dl;
      const dl2 = dl * dl;
      const M2a = this.M2[i],
        M3a = this.M3[i];
      this.M4[i] +=
        b.M4[i] +
        (dl2 * dl2 * na * nb * (na * na - na * nb + nb * nb)) / (N * N * N) +
        (6 * dl2 * (na * na * b.M2[i] + nb * nb * M2a)) / (N * N) +
        (4 * dl * (na * b.M3[i] - nb * M3a)) / N;
      this.M3[i] += b.M3[i] + (dl2 * dl * na * nb * (na - nb)) / (N * N) + (3 * dl * (na * b.M2[i] - nb * M2a)) / N;
      this.M2[i] += b.M2[i] + (dl2 * na * nb) / N;
      this.mean[i] += (dl * nb) / N;
    }
    if (this.C && b.C) {
      const f = (na * nb) / N;
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) this.C[i * d + j] += b.C[i * d + j] + delta[i] * delta[j] * f;
    }
    this.count = N;
  }

  result(): MonteCarloResult {
    const d = this.d;
    const N = this.count;
    const variance = new Float64Array(d);
    const meanStdErr = new Float64Array(d);
    const varianceStdErr = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      variance[i] = N > 1 ? this.M2[i] / (N - 1) : 0;
      meanStdErr[i] = N > 1 ? Math.sqrt(variance[i] / N) : 0;
      // Var(sample variance) ~ (mu4 - mu2^2) / N (large-N form).
      const m2 = this.M2[i] / N;
      const m4 = this.M4[i] / N;
      varianceStdErr[i] = N > 1 ? Math.sqrt(Math.max(0, m4 - m2 * m2) / N) : 0;
    }
    const out: MonteCarloResult = { samples: N, mean: Float64Array.from(this.mean), variance, meanStdErr, varianceStdErr };
    if (this.C) out.covariance = this.C.map((c) => (N > 1 ? c / (N - 1) : 0));
    return out;
  }
}

export interface MonteCarloResult {
  samples: number;
  mean: Float64Array;
  /** Unbiased sample variance. */
  variance: Float64Array;
  /** Standard error of the mean: sqrt(variance / N). */
  meanStdErr: Float64Array;
  /** Standard error of the sample variance: sqrt((m4 - m2^2) / N). */
  varianceStdErr: Float64Array;
  /** Unbiased sample covariance (d x d), when asked. */
  covariance?: Float64Array;
  /** Samples whose argmax differs from MonteCarloOptions.flipClass, when one was given. */
  flips?: number;
  /** Samples per argmax class (first maximal output), when MonteCarloOptions.classCounts was set. */
  classCounts?: Float64Array;
}

export interface MonteCarloOptions {
  samples: number;
  /** Samples per call of the batch function (default 1024). */
  batchSize?: number;
  /** Default 1. */
  seed?: number;
  /** Also accumulate the d x d covariance (default false). */
  covariance?: boolean;
  /** Relative eigenvalue tolerance of the PSD check for a full covariance (default 1e-9). */
  psdTolerance?: number;
  /** Called after every batch. */
  onBatch?: (done: number, total: number) => void;
  /** Count the samples whose argmax (first maximal output) differs from this class (the result's `flips`). */
  flipClass?: number;
  /** Count the samples of each argmax class (the result's `classCounts`; randomized smoothing's counts). */
  classCounts?: boolean;
}

/** A model run on a batch: x is batch x n (float32), the result batch x d (float64). */
export type BatchFunction = (x: Float32Array, batch: number) => Promise<Float64Array | Float32Array>;
/** The same with float64 inputs. */
export type BatchFunction64 = (x: Float64Array, batch: number) => Promise<Float64Array | Float32Array>;

async function run(
  fn: (x: Float64Array | Float32Array, batch: number) => Promise<Float64Array | Float32Array>,
  f32: boolean,
  d: number,
  mu: Float64Array,
  noise: NoiseCovariance,
  options: MonteCarloOptions,
): Promise<MonteCarloResult> {
  const total = options.samples;
  if (!(Number.isInteger(total) && total >= 2))
    throw new NetmomentsError(`the number of Monte Carlo samples must be an integer >= 2, got ${total}`, { code: 'BAD_USAGE' });
  const bs = options.batchSize ?? 1024;
  if (!(Number.isInteger(bs) && bs >= 1)) throw new NetmomentsError(`the Monte Carlo batch size must be a positive integer, got ${bs}`, { code: 'BAD_USAGE' });
  const sampler = new GaussianSampler(mu, noise, { psdTolerance: options.psdTolerance });
  const rng = new Rng(options.seed ?? 1);
  const acc = new MomentAccumulator(d, options.covariance ?? false);
  const n = mu.length;
  let flips = 0;
  const counts = options.classCounts ? new Float64Array(d) : undefined;
  for (let done = 0; done < total;) {
    const b = Math.min(bs, total - done);
    const x = f32 ? new Float32Array(b * n) : new Float64Array(b * n);
    sampler.sample(rng, x, b);
    const y = await fn(x, b);
    if (y.length !== b * d) {
      throw new NetmomentsError(`the model returned ${y.length} values for a batch of ${b}, ${b * d} (${d} outputs each) were expected`);
    }
    acc.addBatch(y, b);
    if (options.flipClass !== undefined) for (let k = 0; k < b; k++) if (argmax(y, k * d, d) !== options.flipClass) flips++;
    if (counts) for (let k = 0; k < b; k++) counts[argmax(y, k * d, d)]++;
    done += b;
    options.onBatch?.(done, total);
  }
  const result = acc.result();
  if (options.flipClass !== undefined) result.flips = flips;
  if (counts) result.classCounts = counts;
  return result;
}

/**
 * Monte Carlo moments of fn(x), x ~ N(mu, Sigma), with float32 samples (what an ONNX model
 * consumes; the samples are drawn in float64 and rounded once) and float64 accumulation.
 */
export function monteCarloMoments(
  fn: BatchFunction,
  d: number,
  mu: Float64Array,
  noise: NoiseCovariance,
  options: MonteCarloOptions,
): Promise<MonteCarloResult> {
  return run(fn as (x: Float64Array | Float32Array, b: number) => Promise<Float64Array | Float32Array>, true, d, mu, noise, options);
}

/** monteCarloMoments with float64 samples (for float64 reference computations). */
export function monteCarloMoments64(
  fn: BatchFunction64,
  d: number,
  mu: Float64Array,
  noise: NoiseCovariance,
  options: MonteCarloOptions,
): Promise<MonteCarloResult> {
  return run(fn as (x: Float64Array | Float32Array, b: number) => Promise<Float64Array | Float32Array>, false, d, mu, noise, options);
}
