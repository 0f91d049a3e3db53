/**
 * Moments of a continuous piecewise-linear function of one Gaussian: f(x) = a_j x + b_j on
 * [t_j, t_{j+1}) with t_0 = -inf and t_J = +inf, x ~ N(m, s^2). Covers ReLU, LeakyRelu, PRelu,
 * Clip/ReLU6 (two kinks), Abs, HardTanh.
 *
 * With z = (t - m) / s, P = Phi(z2) - Phi(z1) and the truncated moments of N(m, s^2)
 *   E[x 1{t1 <= x < t2}]   = m P + s (phi(z1) - phi(z2))
 *   E[x^2 1{t1 <= x < t2}] = (m^2 + s^2) P + 2 m s (phi(z1) - phi(z2)) + s^2 (z1 phi(z1) - z2 phi(z2))
 * (e.g. Johnson, Kotz and Balakrishnan, Continuous Univariate Distributions I, ch. 13), summed
 * over the pieces: E f = sum_j a_j E[x 1_j] + b_j P_j, E f^2 = sum_j a_j^2 E[x^2 1_j] + 2 a_j b_j
 * E[x 1_j] + b_j^2 P_j, and the expected slope E f'(x) = sum_j a_j P_j, which by Stein's lemma is
 * cov(x, f(x)) / s^2 (the factor's scale in statistical linearization). For f = ReLU these are
 * the paper's Theorem 1 and its second moment.
 *
 * The expected curvature E f''(x) = sum_j (a_j - a_{j-1}) phi(z_j) / s over the kinks t_j (f'' is a
 * sum of Dirac deltas of weight a_j - a_{j-1} there) is, by Stein's lemma applied twice,
 * E[f(x) He_2(z)] / s^2 with He_2(z) = z^2 - 1, z = (x - m) / s: the coefficient of the second
 * Hermite term of f, which makes cov(f(x), f(y)) of jointly Gaussian x, y hold the term
 * E f''(x) E f''(y) cov(x, y)^2 / 2 (Mehler's expansion). Likewise E f'''(x) =
 * sum_j (a_j - a_{j-1}) z_j phi(z_j) / s^2 (the derivative of E f'' in m) = E[f(x) He_3(z)] / s^3,
 * He_3(z) = z^3 - 3z, for the term E f'''(x) E f'''(y) cov(x, y)^3 / 6.
 */
import { Phi, phi } from './special.js';

export interface PiecewiseLinear {
  /** Kinks t_1 < ... < t_{J-1} (finite, increasing). */
  kinks: readonly number[];
  /** Slopes a_0 .. a_{J-1} (one more than kinks). */
  slopes: readonly number[];
  /** Intercepts b_0 .. b_{J-1}. */
  intercepts: readonly number[];
}

export interface GaussianImage {
  mean: number;
  variance: number;
  /** E f'(x) = cov(x, f(x)) / var(x). */
  slope: number;
  /** E f''(x) = E[f(x) He_2(z)] / s^2, z = (x - m) / s (0 at s = 0). */
  curvature: number;
  /** E f'''(x) = E[f(x) He_3(z)] / s^3 (0 at s = 0). */
  third: number;
}

/** Probability that z1 <= Z < z2 for a standard normal Z, without cancellation in either tail. */
function intervalProbability(z1: number, z2: number): number {
  if (z1 > 0) return Phi(-z1) - Phi(-z2);
  return Phi(z2) - Phi(z1);
}

const zphi = (z: number) => (Number.isFinite(z) ? z * phi(z) : 0);
const phiAt = (z: number) => (Number.isFinite(z) ? phi(z) : 0);

/** Mean, variance and expected slope of f(x), x ~ N(m, s^2) (s >= 0; s = 0 gives f(m), 0, f'(m)). */
export function piecewiseLinearMoments(f: PiecewiseLinear, m: number, s: number): GaussianImage {
  const J = f.slopes.length;
  if (!(s > 0)) {
    let j = 0;
    while (j < J - 1 && m >= f.kinks[j]) j++;
    return { mean: f.slopes[j] * m + f.intercepts[j], variance: 0, slope: f.slopes[j], curvature: 0, third: 0 };
  }
  let e1 = 0;
  let e2 = 0;
  let slope = 0;
  for (let j = 0; j < J; j++) {
    const z1 = j === 0 ? -Infinity : (f.kinks[j - 1] - m) / s;
    const z2 = j === J - 1 ? Infinity : (f.kinks[j] - m) / s;
    const P = intervalProbability(z1, z2);
    if (P === 0) continue;
    const dphi = phiAt(z1) - phiAt(z2);
    // centred truncated moments (x - m): E[(x-m) 1] = s dphi, E[(x-m)^2 1] = s^2 (P + z1 phi(z1) - z2 phi(z2))
    const c1 = s * dphi;
    const c2 = s * s * (P + zphi(z1) - zphi(z2));
    const a = f.slopes[j];
    // f on this piece as a (x - m) + (a m + b)
    const v = a * m + f.intercepts[j];
    e1 += a * c1 + v * P;
    e2 += a * a * c2 + 2 * a * v * c1 + v * v * P;
    slope += a * P;
  }
  let curvature = 0;
  let third = 0;
  for (let j = 1; j < J; j++) {
    const z = (f.kinks[j - 1] - m) / s;
    const jump = (f.slopes[j] - f.slopes[j - 1]) * phi(z);
    curvature += jump / s;
    third += (jump * z) / (s * s);
  }
  return { mean: e1, variance: Math.max(0, e2 - e1 * e1), slope, curvature, third };
}

export const RELU: PiecewiseLinear = { kinks: [0], slopes: [0, 1], intercepts: [0, 0] };
export const ABS: PiecewiseLinear = { kinks: [0], slopes: [-1, 1], intercepts: [0, 0] };

export function leakyRelu(alpha: number): PiecewiseLinear {
  return { kinks: [0], slopes: [alpha, 1], intercepts: [0, 0] };
}

/** Clip(x, lo, hi); an infinite bound drops that kink. */
export function clip(lo: number, hi: number): PiecewiseLinear {
  const kinks: number[] = [];
  const slopes: number[] = [];
  const intercepts: number[] = [];
  if (Number.isFinite(lo)) {
    kinks.push(lo);
    slopes.push(0);
    intercepts.push(lo);
  }
  slopes.push(1);
  intercepts.push(0);
  if (Number.isFinite(hi)) {
    kinks.push(hi);
    slopes.push(0);
    intercepts.push(hi);
  }
  return { kinks, slopes, intercepts };
}

/**
 * ONNX HardSigmoid, max(0, min(1, alpha x + beta)): 0 and 1 outside the kinks where alpha x + beta
 * crosses 0 and 1 (in increasing x order), alpha x + beta between; constant for alpha = 0.
 */
export function hardSigmoid(alpha: number, beta: number): PiecewiseLinear {
  if (alpha === 0) return { kinks: [], slopes: [0], intercepts: [Math.min(1, Math.max(0, beta))] };
  const at0 = -beta / alpha;
  const at1 = (1 - beta) / alpha;
  return alpha > 0
    ? { kinks: [at0, at1], slopes: [0, alpha, 0], intercepts: [0, beta, 1] }
    : { kinks: [at1, at0], slopes: [0, alpha, 0], intercepts: [1, beta, 0] };
}

/** The value of a piecewise-linear function at x (at a kink, the piece to its right). */
export function evaluatePiecewiseLinear(f: PiecewiseLinear, x: number): number {
  const j = pieceAt(f, x);
  return f.slopes[j] * x + f.intercepts[j];
}

/** The index of the piece of f holding x (at a kink, the piece to its right). */
function pieceAt(f: PiecewiseLinear, x: number): number {
  let j = 0;
  while (j < f.kinks.length && x >= f.kinks[j]) j++;
  return j;
}

/**
 * outer(inner(x)) as one piecewise-linear function: its kinks are inner's and the points where
 * inner crosses one of outer's kinks (on each piece of inner with a nonzero slope a_j:
 * x = (t - b_j) / a_j when inside the piece). On each interval between them inner is a x + b and
 * outer c y + d, so the composite is (c a) x + (c b + d), read at a point inside the interval.
 * Kinks across which nothing changes are dropped.
 */
export function composePiecewiseLinear(outer: PiecewiseLinear, inner: PiecewiseLinear): PiecewiseLinear {
  const cuts = [...inner.kinks];
  inner.slopes.forEach((a, j) => {
    if (a === 0) return;
    const lo = j === 0 ? -Infinity : inner.kinks[j - 1];
    const hi = j === inner.kinks.length ? Infinity : inner.kinks[j];
    for (const t of outer.kinks) {
      const x = (t - inner.intercepts[j]) / a;
      if (x > lo && x < hi) cuts.push(x);
    }
  });
  const kinks = [...new Set(cuts)].sort((p, q) => p - q);
  const n = kinks.length;
  const slopes: number[] = [];
  const intercepts: number[] = [];
  for (let j = 0; j <= n; j++) {
    const x = n === 0 ? 0 : j === 0 ? kinks[0] - 1 : j === n ? kinks[n - 1] + 1 : 0.5 * (kinks[j - 1] + kinks[j]);
    const i = pieceAt(inner, x);
    const a = inner.slopes[i];
    const b = inner.intercepts[i];
    const k = pieceAt(outer, a * x + b);
    slopes.push(outer.slopes[k] * a);
    intercepts.push(outer.slopes[k] * b + outer.intercepts[k]);
  }
  const keep: number[] = [];
  const s: number[] = [slopes[0]];
  const c: number[] = [intercepts[0]];
  for (let j = 0; j < n; j++) {
    if (slopes[j + 1] === s[s.length - 1] && intercepts[j + 1] === c[c.length - 1]) continue;
    keep.push(kinks[j]);
    s.push(slopes[j + 1]);
    c.push(intercepts[j + 1]);
  }
  return { kinks: keep, slopes: s, intercepts: c };
}
