/**
 * Moments of the max of a few jointly Gaussian variables, optionally with a constant floor:
 * M = max(floor, X_1, ..., X_L), X ~ N(mu, C), for a MaxPool window (floor 0 when a ReLU follows:
 * relu(max x) = max(0, x_1, ..., x_L)). Clark's pairwise recursion (clark.ts) re-approximates the
 * running max as Gaussian at every step, which biases the mean of max(0, x_1..x_4) by a few
 * percent of its sd; here the expectations are integrated numerically instead.
 *
 * Conditional quasi-Monte Carlo: write X = mu + L z (L the Cholesky factor, the element with the
 * largest mean last). Given z_1..z_{L-1}, the last element is N(nu, tau^2) with tau = L_LL, and
 * with c = max(floor, X_1, ..., X_{L-1}) the inner expectations are closed form (alpha = (nu - c)/tau):
 *   E[max(c, Y)]   = c + (nu - c) Phi(alpha) + tau phi(alpha)
 *   E[max(c, Y)^2] = c^2 Phi(-alpha) + (nu^2 + tau^2) Phi(alpha) + tau (nu + c) phi(alpha)
 *   P(Y wins) = Phi(alpha), P(the argmax of c wins) = Phi(-alpha).
 * The outer (L-1)-dimensional integral, now continuous, runs over a randomly shifted Korobov lattice mapped
 * through Phi^{-1}, with antithetic pairs (z, -z). P(X_a is the max) is d E[M] / d mu_a, so
 * cov(M, Z) = sum_a P(X_a is the max) cov(X_a, Z) for any Z jointly Gaussian with X (Stein's
 * lemma): these are the weights with which a covariance factor passes.
 */
import { clarkMax } from './clark.js';
import { RELU, piecewiseLinearMoments } from './piecewise.js';
import { Rng } from './montecarlo.js';
import { PhiInv } from './special.js';

export interface WindowMax {
  mean: number;
  variance: number;
}

/** Korobov lattice: 127 points (prime), generator 35. */
const KOROBOV = { points: 127, generator: 35 };
/** Randomly shifted copies of each lattice, precomputed; a window draws one. */
export const LATTICE_SHIFTS = 64;

const lattices = new Map<number, Float64Array[]>();

/**
 * Copy `shift` (0..LATTICE_SHIFTS-1) of the Korobov lattice of `dims` dimensions, shifted by a
 * uniform random vector modulo 1 (Cranley-Patterson) and mapped to standard normal coordinates
 * through Phi^{-1}: [points, dims]. The shifts are drawn once from a fixed seed.
 */
export function shiftedLattice(dims: number, shift: number): Float64Array {
  let set = lattices.get(dims);
  if (!set) {
    const rng = new Rng(7919 + dims);
    const { points, generator } = KOROBOV;
    set = [];
    for (let k = 0; k < LATTICE_SHIFTS; k++) {
      const offset = Array.from({ length: dims }, () => rng.nextDouble());
      const z = new Float64Array(points * Math.max(dims, 1));
      for (let i = 0; i < points; i++) {
        let g = 1;
        for (let d = 0; d < dims; d++) {
          let u = ((i * g) % points) / points + offset[d];
          if (u >= 1) u -= 1;
          z[i * dims + d] = PhiInv(Math.min(Math.max(u, 1e-300), 1 - 1e-16));
          g = (g * generator) % points;
        }
      }
      set.push(z);
    }
    lattices.set(dims, set);
  }
  return set[shift % LATTICE_SHIFTS];
}

/** Elements whose chance to be the max is below Phi(-DECIDED) (3.4e-6) are dropped. */
const DECIDED = 4.5;

let pool = new Float64Array(0);

/**
 * Mean and variance of max(floor, X_1..X_L) and, in `weights`, P(X_a is the max) for each a.
 * `C` is L x L row-major (positive semidefinite); `floor` -Infinity for a plain max; `shift`
 * picks one of the randomly shifted lattices (Cranley-Patterson rotation: the estimate is then
 * unbiased over the shift, and windows drawing different shifts have independent errors, which
 * the next layer's sums average out).
 *
 * Decided parts are removed first: an element b with (mu_top - mu_b) / sd(X_top - X_b) > 4.5 never
 * wins, nor does the floor when (mu_top - floor) / sd(X_top) > 4.5; the max of all elements lying
 * 4.5 sd below the floor is the floor. What is left is closed form for one element (itself, or
 * floor + relu(X - floor) by piecewise.ts's moments) and for two without a floor (Clark's formulas
 * are exact for two), else integrated on the lattice.
 */
export function windowMax(mu: ArrayLike<number>, C: ArrayLike<number>, L: number, floor: number, weights: Float64Array, shift = 0): WindowMax {
  weights.fill(0, 0, L);
  if (L === 0) return { mean: floor, variance: 0 };
  const need = 4 * L * L + 8 * L;
  if (pool.length < need) pool = new Float64Array(need);
  let top = 0;
  for (let a = 1; a < L; a++) if (mu[a] > mu[top]) top = a;
  const vTop = C[top * L + top];
  let floored = Number.isFinite(floor);
  if (floored) {
    let below = true;
    for (let a = 0; a < L && below; a++) {
      const sd = Math.sqrt(Math.max(C[a * L + a], 0));
      if (!(floor - mu[a] > DECIDED * sd)) below = false;
    }
    if (below) return { mean: floor, variance: 0 };
    if (mu[top] - floor > DECIDED * Math.sqrt(Math.max(vTop, 0))) floored = false;
  }
  const keep = pool.subarray(0, L);
  let n = 0;
  for (let b = 0; b < L; b++) {
    if (b !== top) {
      const theta2 = vTop + C[b * L + b] - 2 * C[top * L + b];
      if (!(theta2 > 0) || mu[top] - mu[b] > DECIDED * Math.sqrt(theta2)) continue;
    }
    keep[n++] = b;
  }
  if (n === 1 && !floored) {
    weights[top] = 1;
    return { mean: mu[top], variance: Math.max(vTop, 0) };
  }
  if (n === 1) {
    const g = piecewiseLinearMoments(RELU, mu[top] - floor, Math.sqrt(Math.max(vTop, 0)));
    weights[top] = g.slope;
    return { mean: floor + g.mean, variance: g.variance };
  }
  if (n === 2 && !floored) {
    const a = keep[0];
    const b = keep[1];
    const c = clarkMax(mu[a], C[a * L + a], mu[b], C[b * L + b], C[a * L + b]);
    weights[a] = c.weightX;
    weights[b] = 1 - c.weightX;
    return { mean: c.mean, variance: c.variance };
  }
  const muK = pool.subarray(L, L + n);
  const CK = pool.subarray(2 * L, 2 * L + n * n);
  const wK = pool.subarray(2 * L + L * L, 2 * L + L * L + n);
  for (let i = 0; i < n; i++) {
    muK[i] = mu[keep[i]];
    for (let j = 0; j < n; j++) CK[i * n + j] = C[keep[i] * L + keep[j]];
  }
  const res = latticeMax(muK, CK, n, floored ? floor : -Infinity, wK, pool.subarray(3 * L + L * L), shift);
  for (let i = 0; i < n; i++) weights[keep[i]] = wK[i];
  return res;
}

/** windowMax on the lattice (see the file comment); `scratch` needs L^2 + 4 L doubles. */
function latticeMax(
  mu: ArrayLike<number>,
  C: ArrayLike<number>,
  L: number,
  floor: number,
  weights: Float64Array,
  scratch: Float64Array,
  shift: number,
): WindowMax {
  // order: the element with the largest mean last (its kink is integrated in closed form); all
  // values centred at its mean, against cancellation in the second moment
  const perm = scratch.subarray(0, L);
  let top = 0;
  for (let a = 1; a < L; a++) if (mu[a] > mu[top]) top = a;
  for (let a = 0, t = 0; a < L; a++) if (a !== top) perm[t++] = a;
  perm[L - 1] = top;
  const ref = mu[top];
  // Cholesky of the permuted covariance, with a relative jitter for degenerate windows
  const Lc = scratch.subarray(L, L + L * L);
  let trace = 0;
  for (let a = 0; a < L; a++) trace += C[a * L + a];
  const jitter = 1e-12 * (trace / L) + 1e-300;
  for (let a = 0; a < L; a++) {
    for (let b = 0; b <= a; b++) {
      let s = C[perm[a] * L + perm[b]] + (a === b ? jitter : 0);
      for (let e = 0; e < b; e++) s -= Lc[a * L + e] * Lc[b * L + e];
      Lc[a * L + b] = a === b ? Math.sqrt(Math.max(s, 0)) : Lc[b * L + b] > 0 ? s / Lc[b * L + b] : 0;
    }
  }
  const m0 = scratch.subarray(L + L * L, L + L * L + L);
  const won = scratch.subarray(L + L * L + L, L + L * L + 2 * L);
  won.fill(0);
  for (let a = 0; a < L; a++) m0[a] = mu[perm[a]] - ref;
  const fl = floor - ref;
  const dims = L - 1;
  const z = shiftedLattice(dims, shift);
  const points = z.length / dims;
  const last = (L - 1) * L;
  const tau = Lc[last + L - 1];
  let s1 = 0;
  let s2 = 0;
  // Lz: the point's image under the Cholesky factor, shared by the antithetic pair
  const Lz = scratch.subarray(L + L * L + 2 * L, L + L * L + 3 * L);
  for (let i = 0; i < points; i++) {
    const zi = i * dims;
    let nuz = 0;
    for (let a = 0; a < dims; a++) {
      let v = 0;
      for (let e = 0; e <= a; e++) v += Lc[a * L + e] * z[zi + e];
      Lz[a] = v;
      nuz += Lc[last + a] * z[zi + a];
    }
    for (let sign = -1; sign <= 1; sign += 2) {
      // the first L-1 elements (the largest, c, and which, arg) and the conditional mean of the last
      let c = fl;
      let arg = -1;
      const nu = sign * nuz;
      for (let a = 0; a < dims; a++) {
        const v = m0[a] + sign * Lz[a];
        if (v > c) {
          c = v;
          arg = a;
        }
      }
      let pTop: number;
      let e1: number;
      let e2: number;
      const alpha = (nu - c) / tau;
      if (alpha > 8.5 || c === -Infinity) {
        // the last element wins (or stands alone): its conditional moments
        pTop = 1;
        e1 = nu;
        e2 = nu * nu + tau * tau;
      } else if (alpha < -8.5 || !(tau > 0)) {
        pTop = nu > c ? 1 : 0;
        e1 = pTop ? nu : c;
        e2 = e1 * e1;
      } else {
        const f = INV_SQRT_2PI * Math.exp(-0.5 * alpha * alpha);
        pTop = normalCdfGivenDensity(alpha, f);
        const pc = 1 - pTop;
        e1 = c + (nu - c) * pTop + tau * f;
        e2 = c * c * pc + (nu * nu + tau * tau) * pTop + tau * (nu + c) * f;
      }
      s1 += e1;
      s2 += e2;
      won[L - 1] += pTop;
      if (arg >= 0) won[arg] += 1 - pTop;
    }
  }
  const n = 2 * points;
  const mean = s1 / n;
  for (let a = 0; a < L; a++) weights[perm[a]] = won[a] / n;
  return { mean: ref + mean, variance: Math.max(0, s2 / n - mean * mean) };
}

const INV_SQRT_2PI = 0.3989422804014327;

/**
 * Phi(x) from the density f = phi(x) already at hand: Zelen and Severo (Abramowitz and Stegun
 * 26.2.17), 1 - f (b1 t + ... + b5 t^5), t = 1 / (1 + 0.2316419 |x|), absolute error < 7.5e-8
 * (ample for a lattice integration whose own error is ~1e-3).
 */
function normalCdfGivenDensity(x: number, f: number): number {
  const t = 1 / (1 + 0.2316419 * Math.abs(x));
  const tail = f * t * (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
  return x >= 0 ? 1 - tail : tail;
}
