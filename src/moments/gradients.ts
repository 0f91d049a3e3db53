/**
 * Closed-form gradients of the mean of a linear combination of outputs, w^T E[g], for
 * g(x) = B relu(A x + c1) + D x + c2 under x ~ N(mu, Sigma) (network.ts), with respect to the input
 * mean mu and to the noise covariance. The attack issue minimizes E_i - E_j with these.
 *
 * With beta = B^T w and per unit E[relu(z_v)] = m_v Phi(a_v) + s_v phi(a_v) (Bibi et al. 2018,
 * Theorem 1), the partial derivatives are (d/dm: Phi(a) + m phi(a)/s - s a phi(a)/s = Phi(a);
 * d/ds: m phi(a)(-a/s) + phi(a) + s phi'(a)(-a/s) = phi(a))
 *   dE[relu(z_v)]/dm_v = Phi(a_v),   dE[relu(z_v)]/ds_v = phi(a_v).
 * With m = A mu + c1 and s_v^2 = (A Sigma A^T)_vv:
 *   d(w^T E g)/d mu        = A^T (beta o Phi(a)) + D^T w
 *   d(w^T E g)/d Sigma_jk  = sum_v gamma_v A_vj A_vk,   gamma_v = beta_v phi(a_v) / (2 s_v)
 * so for Sigma = sigma^2 I:   d/d sigma^2 = sum_v gamma_v |A_v|^2 = sum_v beta_v phi(a_v) s_v / (2 sigma^2),
 * for Sigma = diag(v):        d/d v_j = sum_v gamma_v A_vj^2,
 * for Sigma = F F^T:          d/d F = 2 A^T diag(gamma) A F.
 * A unit with s_v = 0 contributes the limit s -> 0+: 0 when m_v != 0 (phi(m/s)/s -> 0), and
 * +-Infinity to the variance directions it touches when m_v = 0 (E relu grows like s phi(0));
 * for a low-rank factor such a unit contributes 0 (s = |A_v F| has no gradient at 0).
 */
import { NetmomentsError } from '../errors.js';
import { type LinearAlgebra, jsLinearAlgebra, matTVec } from './linalg.js';
import { validateNoise, type NoiseCovariance } from '../noise.js';
import { type ShallowNetwork, type UnitStats, networkMean, unitStatistics, validateNetwork } from './network.js';
import { Phi, phi } from './special.js';

export interface MeanGradient {
  /** w^T E[g]. */
  value: number;
  /** d(w^T E g)/d mu (n). */
  dMu: Float64Array;
  /** Isotropic noise: d/d sigma^2. */
  dSigma2?: number;
  /** Isotropic or diagonal noise: d/d Sigma_jj per input element (n). */
  dVariance?: Float64Array;
  /** Full noise: d/d Sigma (n x n, entries treated as independent). */
  dCov?: Float64Array;
  /** Low-rank noise: d/d F (n x rank). */
  dFactor?: Float64Array;
  units: UnitStats;
}

/** Weights of the difference E_j - E_i over d outputs. */
export function differenceWeights(d: number, j: number, i: number): Float64Array {
  if (!(Number.isInteger(i) && Number.isInteger(j) && i >= 0 && j >= 0 && i < d && j < d)) {
    throw new NetmomentsError(`class indices must be integers in [0, ${d}), got ${j} and ${i}`, { code: 'BAD_USAGE' });
  }
  const w = new Float64Array(d);
  w[j] += 1;
  w[i] -= 1;
  return w;
}

/** Gradient of w^T E[g] with respect to mu and the noise (see the file comment). */
export async function meanGradient(
  net: ShallowNetwork,
  noise: NoiseCovariance,
  weights: Float64Array,
  options: { linalg?: LinearAlgebra; decidedTail?: number } = {},
): Promise<MeanGradient> {
  const [n, p, d] = validateNetwork(net);
  validateNoise(noise, n);
  if (weights.length !== d) throw new NetmomentsError(`the output weights have ${weights.length} values, the network has ${d} outputs`);
  const la = options.linalg ?? jsLinearAlgebra;
  const { units } = await unitStatistics(la, net, noise, options.decidedTail);
  const mean = networkMean(net, units);
  let value = 0;
  for (let i = 0; i < d; i++) value += weights[i] * mean[i];

  const beta = matTVec(net.B.data, d, p, weights); // B^T w
  const bp = new Float64Array(p);
  const gamma = new Float64Array(p); // beta phi(a) / (2 s)
  let infinite = false;
  for (let v = 0; v < p; v++) {
    const s = units.s[v];
    const m = net.m[v];
    if (s > 0) {
      bp[v] = beta[v] * Phi(units.a[v]);
      gamma[v] = (beta[v] * phi(units.a[v])) / (2 * s);
    } else {
      bp[v] = m > 0 ? beta[v] : 0;
      if (m === 0 && beta[v] !== 0) {
        gamma[v] = beta[v] > 0 ? Infinity : -Infinity;
        infinite = true;
      }
    }
  }
  const dMu = matTVec(net.A.data, p, n, bp);
  if (net.D) {
    const dt = matTVec(net.D.data, d, n, weights);
    for (let j = 0; j < n; j++) dMu[j] += dt[j];
  }
  const out: MeanGradient = { value, dMu, units };

  // sum_v gamma_v A_vj^2 without 0 * Infinity = NaN for elements a unit does not touch.
  const diagGrad = () => {
    const g = new Float64Array(n);
    for (let v = 0; v < p; v++) {
      const gv = gamma[v];
      if (gv === 0) continue;
      const o = v * n;
      for (let j = 0; j < n; j++) {
        const a = net.A.data[o + j];
        if (a !== 0) g[j] += gv * a * a;
      }
    }
    return g;
  };

  switch (noise.kind) {
    case 'isotropic': {
      out.dVariance = diagGrad();
      let t = 0;
      for (let j = 0; j < n; j++) t += out.dVariance[j];
      out.dSigma2 = t;
      break;
    }
    case 'diagonal':
      out.dVariance = diagGrad();
      break;
    case 'full': {
      if (infinite) {
        // Some gamma are infinite: sum only the nonzero products so 0 * Infinity never appears.
        const g = new Float64Array(n * n);
        for (let v = 0; v < p; v++) {
          const gv = gamma[v];
          if (gv === 0) continue;
          const o = v * n;
          for (let j = 0; j < n; j++) {
            const aj = net.A.data[o + j];
            if (aj === 0) continue;
            for (let k = 0; k < n; k++) {
              const ak = net.A.data[o + k];
              if (ak !== 0) g[j * n + k] += gv * aj * ak;
            }
          }
        }
        out.dCov = g;
        break;
      }
      const GA = scaleRows(net.A.data, p, n, gamma); // diag(gamma) A
      out.dCov = await la.gemm(net.A.data, p, n, GA, p, n, { transA: true });
      break;
    }
    case 'lowrank': {
      // s_v = |A_v F| is not differentiable in F where it is 0: such units contribute 0 here.
      const AF = await la.gemm(net.A.data, p, n, noise.factor, n, noise.rank); // p x r
      const GAF = scaleRows(
        AF,
        p,
        noise.rank,
        gamma.map((g) => (Number.isFinite(g) ? 2 * g : 0)),
      );
      out.dFactor = await la.gemm(net.A.data, p, n, GAF, p, noise.rank, { transA: true });
      break;
    }
  }
  return out;
}

function scaleRows(X: Float64Array, rows: number, cols: number, w: Float64Array): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const wi = w[i];
    if (wi === 0) continue;
    for (let j = 0; j < cols; j++) out[i * cols + j] = X[i * cols + j] * wi;
  }
  return out;
}

/** E[g] alone (Theorem 1), for callers that need only the mean (e.g. inside an optimizer). */
export async function networkMeanOnly(net: ShallowNetwork, noise: NoiseCovariance, options: { linalg?: LinearAlgebra } = {}): Promise<Float64Array> {
  const [n] = validateNetwork(net);
  validateNoise(noise, n);
  const { units } = await unitStatistics(options.linalg ?? jsLinearAlgebra, net, noise);
  return networkMean(net, units);
}
