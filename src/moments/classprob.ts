/**
 * Class probabilities of a Gaussian output y ~ N(mean, cov) in d dimensions:
 * P(argmax y = j) for every j (ties go to the first maximal index, as numpy's argmax) and
 * P(argmax y != c) for a given class c, by randomized quasi-Monte Carlo; and the one-sided
 * Chebyshev (Cantelli) bound on the margin, a guarantee that needs no sampling.
 *
 * RQMC (Cranley and Patterson 1976; Owen, "Monte Carlo theory, methods and examples", ch. 17):
 * K independent uniform shifts Delta_k of one Halton point set h_1..h_N (Halton 1960, prime bases),
 * u = frac(h_i + Delta_k), y = mean + L Phi^{-1}(u) with L a pivoted-Cholesky factor of cov (its
 * columns in decreasing pivot order, so the best Halton coordinates drive the largest variances).
 * Each shift gives an unbiased estimate; the reported value is their mean and the standard error is
 * their standard deviation / sqrt(K).
 *
 * Cantelli (one-sided Chebyshev) inequality: for M = y_c - y_j with mean mu_M > 0 and variance v_M,
 *   P(M <= 0) = P(M - mu_M <= -mu_M) <= v_M / (v_M + mu_M^2),
 * and P(argmax != c) <= sum_{j != c} P(y_c - y_j <= 0) (union bound), capped at 1.
 *
 * Many classes (options.topK): the QMC runs on the k classes T with the largest means (plus the
 * true class) alone, y_T ~ N(mean_T, cov_TT), which gives P(argmax over T = j). The mass outside T
 * is bounded, not sampled: with t the class of the largest mean, {argmax = j} is inside
 * {y_j >= y_t}, and y_j - y_t is Gaussian, so
 *   P(argmax not in T) <= sum_{j not in T} Phi((mean_j - mean_t) / sd(y_j - y_t)) =: rest
 * (union bound), and for j in T, P(argmax = j) lies in [P_T(j) - rest, P_T(j)]. The classes
 * outside T are reported with probability 0 and `rest` says how much that can be off in all.
 */
import { NetmomentsError } from '../errors.js';
import { type LinearAlgebra, jsLinearAlgebra } from './linalg.js';
import { Rng } from './montecarlo.js';
import { argmax } from '../util/argmax.js';
import { Phi, PhiInv } from './special.js';

export interface ClassProbabilityOptions {
  /** Halton points per shift (default 4096). */
  points?: number;
  /** Random shifts (default 16; at least 2 for an error estimate). */
  shifts?: number;
  /** Seed of the shifts (default 1). */
  seed?: number;
  /** The class whose misclassification probability and margin bound are reported. */
  trueClass?: number;
  /** Eigen/pivot tolerance relative to the largest variance (default 1e-12). */
  tolerance?: number;
  /** For L eps products when d is large (default plain TypeScript). */
  linalg?: LinearAlgebra;
  /** Sample only the topK classes of largest mean (plus trueClass) and bound the rest (file comment); default all classes. */
  topK?: number;
}

export interface ClassProbabilities {
  /** P(argmax = j), j < d. */
  probabilities: Float64Array;
  /** Standard error of each probability (0 when deterministic). */
  stdErr: Float64Array;
  /** Rank of the covariance used (0: deterministic argmax of the mean). */
  rank: number;
  /** Samples drawn (points x shifts). */
  samples: number;
  trueClass?: number;
  /** P(argmax != trueClass) and its standard error. */
  misclassification?: { probability: number; stdErr: number };
  /** Cantelli union bound on P(argmax != trueClass). */
  marginBound?: number;
  /** Per-class Cantelli bounds on P(y_c - y_j <= 0) (entry c is 0). */
  marginBounds?: Float64Array;
  /** With topK: the classes sampled (largest means first, then the true class if it was not among them). */
  classes?: Int32Array;
  /** With topK: the bound on the probability mass outside `classes` (file comment); each sampled probability can be high by at most this much. */
  restBound?: number;
}

/**
 * The classes T with the k largest means (ties by index) plus `extra`, and the bound on
 * P(argmax not in T) of the file comment: sum over j outside T of Phi((mean_j - mean_t)/sd(y_j - y_t)).
 */
export function topClasses(mean: Float64Array, cov: Float64Array, d: number, k: number, extra?: number): { classes: Int32Array; rest: number } {
  const order = Array.from({ length: d }, (_, i) => i).sort((a, b) => mean[b] - mean[a] || a - b);
  const chosen = order.slice(0, Math.min(k, d));
  if (extra !== undefined && !chosen.includes(extra)) chosen.push(extra);
  const inT = new Uint8Array(d);
  for (const j of chosen) inT[j] = 1;
  const t = order[0];
  let rest = 0;
  for (let j = 0; j < d; j++) {
    if (inT[j]) continue;
    const v = cov[j * d + j] + cov[t * d + t] - 2 * cov[j * d + t];
    const gap = mean[j] - mean[t];
    rest += v > 0 ? Phi(gap / Math.sqrt(v)) : gap >= 0 ? 1 : 0;
  }
  return { classes: Int32Array.from(chosen), rest: Math.min(1, rest) };
}

/**
 * Pivoted Cholesky factor of a symmetric PSD matrix: cov ~ L L^T with L d x rank (row-major),
 * columns in pivot order, stopping when the largest remaining diagonal is <= tol * max diagonal.
 * Throws NetmomentsError when a remaining diagonal is clearly negative (not PSD).
 * Source: Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 10.3.
 */
export function pivotedCholesky(cov: Float64Array, d: number, relTol = 1e-12): { L: Float64Array; rank: number; pivots: Int32Array } {
  if (cov.length !== d * d) throw new NetmomentsError(`the covariance has ${cov.length} values, ${d}x${d} expected`);
  const diag = new Float64Array(d);
  let maxDiag = 0;
  for (let i = 0; i < d; i++) {
    const v = cov[i * d + i];
    if (!Number.isFinite(v)) throw new NetmomentsError(`the covariance holds a non-finite diagonal value at ${i}`);
    diag[i] = v;
    maxDiag = Math.max(maxDiag, v);
  }
  const tol = relTol * maxDiag;
  const cols: Float64Array[] = [];
  const pivots: number[] = [];
  const used = new Uint8Array(d);
  for (let k = 0; k < d; k++) {
    let best = -1;
    let bestVal = -Infinity;
    for (let i = 0; i < d; i++)
      if (!used[i] && diag[i] > bestVal) {
        bestVal = diag[i];
        best = i;
      }
    if (best < 0 || bestVal <= tol) {
      for (let i = 0; i < d; i++) {
        if (!used[i] && diag[i] < -1e-6 * Math.max(maxDiag, 1e-300)) {
          throw new NetmomentsError(`the covariance is not positive semi-definite (residual variance ${diag[i].toPrecision(4)} at output ${i})`);
        }
      }
      break;
    }
    used[best] = 1;
    pivots.push(best);
    const col = new Float64Array(d);
    const piv = Math.sqrt(bestVal);
    col[best] = piv;
    for (let i = 0; i < d; i++) {
      if (used[i]) continue;
      let v = cov[i * d + best];
      for (let t = 0; t < cols.length; t++) v -= cols[t][i] * cols[t][best];
      col[i] = v / piv;
      diag[i] -= col[i] * col[i];
    }
    cols.push(col);
  }
  const rank = cols.length;
  const L = new Float64Array(d * rank);
  for (let t = 0; t < rank; t++) for (let i = 0; i < d; i++) L[i * rank + t] = cols[t][i];
  return { L, rank, pivots: Int32Array.from(pivots) };
}

/** The first k primes (the Halton bases). */
export function firstPrimes(k: number): Int32Array {
  const out = new Int32Array(k);
  let c = 0;
  for (let x = 2; c < k; x++) {
    let prime = true;
    for (let t = 0; t < c && out[t] * out[t] <= x; t++)
      if (x % out[t] === 0) {
        prime = false;
        break;
      }
    if (prime) out[c++] = x;
  }
  return out;
}

/** Radical inverse of i in base b (van der Corput), the Halton coordinate. */
function radicalInverse(i: number, b: number): number {
  let f = 1 / b;
  let r = 0;
  while (i > 0) {
    r += f * (i % b);
    i = Math.floor(i / b);
    f /= b;
  }
  return r;
}

const U_MIN = 1 / 9007199254740992;

/**
 * One standard normal coordinate of a shifted Halton point: Phi^{-1}(frac(h_i + shift)) with h_i
 * the radical inverse of i in `base` (i >= 1), kept inside [2^-53, 1 - 2^-53] so Phi^{-1} is finite.
 */
export function shiftedHaltonNormal(i: number, base: number, shift: number): number {
  let u = radicalInverse(i, base) + shift;
  if (u >= 1) u -= 1;
  if (u < U_MIN) u = U_MIN;
  else if (u > 1 - U_MIN) u = 1 - U_MIN;
  return PhiInv(u);
}

/**
 * The RQMC estimate from K independent shifts: `perShift` holds each shift's estimate of d
 * quantities (K x d); the estimate is their mean and its standard error their standard deviation
 * / sqrt(K) (NaN for K = 1).
 */
export function shiftAverages(perShift: Float64Array, K: number, d: number): { mean: Float64Array; stdErr: Float64Array } {
  const mean = new Float64Array(d);
  const stdErr = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += perShift[k * d + j];
    m /= K;
    let v = 0;
    for (let k = 0; k < K; k++) v += (perShift[k * d + j] - m) ** 2;
    mean[j] = m;
    stdErr[j] = K > 1 ? Math.sqrt(v / (K - 1) / K) : Number.NaN;
  }
  return { mean, stdErr };
}

/** Cantelli bounds on P(y_c <= y_j) for every j and their union (capped at 1). */
export function cantelliMarginBound(mean: Float64Array, cov: Float64Array, d: number, c: number): { bound: number; perClass: Float64Array } {
  if (!(Number.isInteger(c) && c >= 0 && c < d)) throw new NetmomentsError(`the true class must be an integer in [0, ${d}), got ${c}`, { code: 'BAD_USAGE' });
  const per = new Float64Array(d);
  let sum = 0;
  for (let j = 0; j < d; j++) {
    if (j === c) continue;
    const mu = mean[c] - mean[j];
    const v = Math.max(0, cov[c * d + c] + cov[j * d + j] - 2 * cov[c * d + j]);
    per[j] = mu > 0 ? v / (v + mu * mu) : 1;
    sum += per[j];
  }
  return { bound: Math.min(1, sum), perClass: per };
}

/** P(argmax = j) by randomized QMC (see the file comment), plus the margin bound for trueClass. */
export async function classProbabilities(mean: Float64Array, cov: Float64Array, options: ClassProbabilityOptions = {}): Promise<ClassProbabilities> {
  const d = mean.length;
  if (d === 0) throw new NetmomentsError('class probabilities need at least one output');
  if (cov.length !== d * d) throw new NetmomentsError(`the covariance has ${cov.length} values, ${d}x${d} expected`);
  for (let i = 0; i < d; i++) if (!Number.isFinite(mean[i])) throw new NetmomentsError(`the mean holds a non-finite value at ${i}`);
  const N = options.points ?? 4096;
  const K = options.shifts ?? 16;
  if (!(Number.isInteger(N) && N >= 1 && Number.isInteger(K) && K >= 1)) {
    throw new NetmomentsError(`points and shifts must be positive integers, got ${N} and ${K}`, { code: 'BAD_USAGE' });
  }
  const la = options.linalg ?? jsLinearAlgebra;
  const c = options.trueClass;
  const out: ClassProbabilities = { probabilities: new Float64Array(d), stdErr: new Float64Array(d), rank: 0, samples: 0 };
  if (c !== undefined) {
    const mb = cantelliMarginBound(mean, cov, d, c);
    out.trueClass = c;
    out.marginBound = mb.bound;
    out.marginBounds = mb.perClass;
  }
  if (options.topK !== undefined && options.topK < d) {
    if (!(Number.isInteger(options.topK) && options.topK >= 1))
      throw new NetmomentsError(`topK must be a whole number >= 1, got ${options.topK}`, { code: 'BAD_USAGE' });
    const { classes, rest } = topClasses(mean, cov, d, options.topK, c);
    const k = classes.length;
    const subMean = Float64Array.from(classes, (j) => mean[j]);
    const subCov = new Float64Array(k * k);
    for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) subCov[a * k + b] = cov[classes[a] * d + classes[b]];
    const sub = await classProbabilities(subMean, subCov, { ...options, topK: undefined, trueClass: undefined });
    classes.forEach((j, a) => {
      out.probabilities[j] = sub.probabilities[a];
      out.stdErr[j] = sub.stdErr[a];
    });
    out.rank = sub.rank;
    out.samples = sub.samples;
    out.classes = classes;
    out.restBound = rest;
    if (c !== undefined) out.misclassification = { probability: 1 - out.probabilities[c], stdErr: out.stdErr[c] };
    return out;
  }
  const { L, rank } = pivotedCholesky(cov, d, options.tolerance ?? 1e-12);
  out.rank = rank;
  if (rank === 0) {
    out.probabilities[argmax(mean, 0, d)] = 1;
  } else {
    const bases = firstPrimes(rank);
    const rng = new Rng(options.seed ?? 1);
    const perShift = new Float64Array(K * d);
    const BATCH = 512;
    const shift = new Float64Array(rank);
    for (let k = 0; k < K; k++) {
      for (let t = 0; t < rank; t++) shift[t] = rng.nextDouble();
      for (let i0 = 0; i0 < N; i0 += BATCH) {
        const b = Math.min(BATCH, N - i0);
        const E = new Float64Array(b * rank);
        for (let i = 0; i < b; i++) for (let t = 0; t < rank; t++) E[i * rank + t] = shiftedHaltonNormal(i0 + i + 1, bases[t], shift[t]);
        const Y = await la.gemm(E, b, rank, L, d, rank, { transB: true }); // b x d
        for (let i = 0; i < b; i++) {
          const o = i * d;
          for (let j = 0; j < d; j++) Y[o + j] += mean[j];
          perShift[k * d + argmax(Y, o, d)] += 1;
        }
      }
      for (let j = 0; j < d; j++) perShift[k * d + j] /= N;
    }
    const avg = shiftAverages(perShift, K, d);
    out.probabilities = avg.mean;
    out.stdErr = avg.stdErr;
    out.samples = N * K;
  }
  if (c !== undefined) out.misclassification = { probability: 1 - out.probabilities[c], stdErr: out.stdErr[c] };
  return out;
}
