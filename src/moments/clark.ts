/**
 * Clark (1961), "The greatest of a finite set of random variables", Operations Research 9(2):
 * moments of max(X, Y) for jointly Gaussian X ~ N(m1, v1), Y ~ N(m2, v2) with cov(X, Y) = c:
 *   theta^2 = v1 + v2 - 2c,  alpha = (m1 - m2) / theta
 *   E max      = m1 Phi(alpha) + m2 Phi(-alpha) + theta phi(alpha)
 *   E max^2    = (m1^2 + v1) Phi(alpha) + (m2^2 + v2) Phi(-alpha) + (m1 + m2) theta phi(alpha)
 *   cov(max, Z) = Phi(alpha) cov(X, Z) + Phi(-alpha) cov(Y, Z)   for any Z jointly Gaussian with X, Y
 * The last line is exact (Stein's lemma) and gives the weights with which a covariance factor passes.
 * With max(X, Y) = Y + relu(X - Y), the expected second derivative along X - Y is
 * E relu''(X - Y) = phi(alpha) / theta and the third E relu'''(X - Y) = -alpha phi(alpha) / theta^2
 * (the Hermite-2 and -3 coefficients of the max, see piecewise.ts).
 */
import { Phi, phi } from './special.js';

export interface ClarkMax {
  mean: number;
  variance: number;
  /** Phi(alpha): the weight of X in cov(max, Z); Y's is 1 - weightX. */
  weightX: number;
  /** phi(alpha) / theta: E of the second derivative of the max along X - Y (0 when X - Y is degenerate). */
  curvature: number;
  /** -alpha phi(alpha) / theta^2: E of the third derivative of the max along X - Y. */
  third: number;
}

export function clarkMax(m1: number, v1: number, m2: number, v2: number, c: number): ClarkMax {
  const theta2 = v1 + v2 - 2 * c;
  // X - Y (nearly) deterministic: the max is the larger one almost surely
  if (!(theta2 > 1e-12 * (v1 + v2)) || theta2 <= 0) {
    if (m1 >= m2) return { mean: m1, variance: v1, weightX: 1, curvature: 0, third: 0 };
    return { mean: m2, variance: v2, weightX: 0, curvature: 0, third: 0 };
  }
  const theta = Math.sqrt(theta2);
  const alpha = (m1 - m2) / theta;
  const p = Phi(alpha);
  const q = Phi(-alpha);
  const f = phi(alpha);
  const mean = m1 * p + m2 * q + theta * f;
  // second moment centred at m2 to limit cancellation: E(max - m2)^2
  const d = m1 - m2;
  const e2c = (d * d + v1) * p + v2 * q + d * theta * f;
  const meanc = d * p + theta * f;
  return { mean, variance: Math.max(0, e2c - meanc * meanc), weightX: p, curvature: f / theta, third: (-alpha * f) / theta2 };
}
