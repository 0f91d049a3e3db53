import { describe, expect, it } from 'vitest';
import {
  pairCorrectionClosedForm,
  pairCorrectionQuadrature,
  reluChi,
  reluCovariance,
  reluCrossMoment,
  reluCrossMomentPaper,
  reluMean,
  reluPairCorrection,
  reluPairCorrectionPaper,
  reluPsi,
  reluSecondMoment,
  reluVariance,
  reluVarianceCorrection,
} from '../../src/moments/relu.js';
import { Phi } from '../../src/moments/special.js';
import { integrate, integratePieces, npdf } from './integrate.js';

/** E[f(m + s x)] by adaptive Gauss-Kronrod over x > -m/s (where relu(m + s x) > 0). */
function expectRelu(m: number, s: number, power: number): number {
  const lo = Math.max(-m / s, -40);
  if (lo >= 40) return 0;
  return integrate((x) => (m + s * x) ** power * npdf(x), lo, 40, 1e-14);
}

/**
 * Genuine 2-D numerical integration of E[relu(a + x) relu(b + y)], corr(x, y) = rho: y = rho x + r t
 * with t independent; the outer integral over x > -a, the inner over t beyond the kink of
 * relu(b + rho x + r t), both adaptive Gauss-Kronrod with relative tolerance 1e-13.
 */
function crossMoment2D(a: number, b: number, rho: number): number {
  const r = Math.sqrt((1 - rho) * (1 + rho));
  const inner = (x: number) => {
    const c = b + rho * x;
    if (r === 0) return c > 0 ? c : 0;
    const t0 = Math.max(-c / r, -40);
    if (t0 >= 40) return 0;
    return integrate((t) => (c + r * t) * npdf(t), t0, 40, 1e-14);
  };
  const lo = Math.max(-a, -40);
  if (lo >= 40) return 0;
  const pts = [lo, 40];
  if (rho !== 0) {
    const kink = -b / rho; // where the inner integral's mean c crosses 0
    for (const q of [kink - 6 * r, kink, kink + 6 * r]) if (q > lo && q < 40) pts.push(q);
  }
  pts.sort((x, y) => x - y);
  let s = 0;
  for (let i = 0; i + 1 < pts.length; i++) s += integrate((x) => (a + x) * npdf(x) * inner(x), pts[i], pts[i + 1], 1e-13);
  return s;
}

/** The pair correction from its integral (*) in relu.ts: int_0^rho (rho - t) phi2(a, b; t) dt, by Gauss-Kronrod. */
function correctionIntegral(a: number, b: number, rho: number): number {
  const f = (t: number) => ((rho - t) * Math.exp(-(a * a - 2 * t * a * b + b * b) / (2 * (1 - t * t)))) / (2 * Math.PI * Math.sqrt(1 - t * t));
  // substitute t = sin(theta) near |t| -> 1 to remove the 1/sqrt(1 - t^2) singularity
  const th = Math.asin(rho);
  const g = (u: number) => f(Math.sin(u)) * Math.cos(u);
  const lo = Math.min(0, th);
  const hi = Math.max(0, th);
  const pts = [lo, hi];
  for (let j = 1; j < 12; j++) pts.splice(1, 0, th > 0 ? hi - (hi - lo) * 2 ** -j : lo + (hi - lo) * 2 ** -j);
  pts.sort((x, y) => x - y);
  let s = 0;
  for (let i = 0; i + 1 < pts.length; i++) s += integrate(g, pts[i], pts[i + 1], 1e-12, 1e-300);
  return th > 0 ? s : -s;
}

describe('single-unit ReLU moments', () => {
  it('E[relu(z)] and E[relu(z)^2] match 1-D numerical integration (relative 1e-12, down to a = -30)', () => {
    for (const [m, s] of [
      [0, 1],
      [1.3, 0.4],
      [-1.3, 0.4],
      [-5, 1],
      [5, 1],
      [-12, 0.5],
      [-30, 1],
      [3e3, 0.1],
      [0.2, 7],
    ]) {
      const e1 = expectRelu(m, s, 1);
      const e2 = expectRelu(m, s, 2);
      expect(Math.abs(reluMean(m, s) - e1) / e1, `E relu, m=${m} s=${s}`).toBeLessThan(1e-12);
      expect(Math.abs(reluSecondMoment(m, s) - e2) / e2, `E relu^2, m=${m} s=${s}`).toBeLessThan(1e-12);
    }
  });

  it('Var(relu(z)) matches integration of (relu - mean)^2, including far tails where E2 - E1^2 cancels', () => {
    for (const [m, s] of [
      [0, 1],
      [2, 1],
      [-2, 1],
      [8, 1],
      [-8, 1],
      [-25, 1],
      [40, 2],
    ]) {
      const mean = reluMean(m, s);
      const lo = Math.max(-m / s, -40);
      const ref = integrate((x) => (m + s * x - mean) ** 2 * npdf(x), lo, 40, 1e-14) + (lo > -40 ? mean * mean * Phi(-m / s) : 0);
      expect(Math.abs(reluVariance(m, s) - ref) / ref, `Var relu, m=${m} s=${s}`).toBeLessThan(1e-11);
    }
  });

  it('handles s = 0 (a constant), a = +-Infinity and large |a| explicitly', () => {
    expect(reluMean(2.5, 0)).toBe(2.5);
    expect(reluMean(-2.5, 0)).toBe(0);
    expect(reluSecondMoment(3, 0)).toBe(9);
    expect(reluVariance(3, 0)).toBe(0);
    expect(reluPsi(-Infinity)).toBe(0);
    expect(reluChi(-Infinity)).toBe(0);
    expect(reluVarianceCorrection(Infinity)).toBe(0);
    expect(reluMean(1e6, 1)).toBe(1e6);
    expect(reluMean(-50, 1)).toBe(0);
    expect(reluVariance(1e6, 1)).toBe(1);
    // psi(-y) ~ phi(y) / y^2: relative, not absolute, accuracy at y = 20
    expect(Math.abs(reluPsi(-20) - expectRelu(-20, 1, 1)) / reluPsi(-20)).toBeLessThan(1e-12);
  });
});

describe('pair moments', () => {
  const as = [-3, -0.5, 0, 1.5, 4];
  const rhos = [-0.999, -0.9, -0.5, 0, 0.3, 0.8, 0.95, 0.999];

  // "Not tiny" means >= 1e-10 (in units of s_u s_v): below that the literal formula is only
  // absolutely accurate, as Genz's Phi2 is (~1e-16); e.g. at a = b = -3, rho = -0.5 the value is
  // 1.7e-12 and the relative error 6e-9 (measured against 30-digit quadrature).
  it('Rosenbaum general-mean E[relu relu] matches 2-D numerical integration: max relative error <= 1e-9 where the value >= 1e-10, absolute <= 1e-15 below', () => {
    let worst = 0;
    for (const a of as)
      for (const b of as)
        for (const rho of rhos) {
          const ref = crossMoment2D(a, b, rho);
          const v = reluCrossMoment(a, 1, b, 1, rho);
          if (ref >= 1e-10) worst = Math.max(worst, Math.abs(v - ref) / ref);
          else expect(Math.abs(v - ref), `tiny value a=${a} b=${b} rho=${rho}`).toBeLessThan(1e-15);
        }
    expect(worst).toBeLessThan(1e-9);
  });

  it('matches at rho = +-1 (r = 0) against 1-D integration, and scales with s', () => {
    for (const [a, b] of [
      [0.3, -0.2],
      [-1, -1],
      [2, 0.5],
      [-0.4, 0.4],
      [1, -3],
    ]) {
      // split at the kinks -a, -b and b so no piece of the support is missed
      const plus = integratePieces((x) => Math.max(a + x, 0) * Math.max(b + x, 0) * npdf(x), [-40, -a, -b, 40], 1e-14, 1e-300);
      const minus = integratePieces((x) => Math.max(a + x, 0) * Math.max(b - x, 0) * npdf(x), [-40, -a, b, 40], 1e-14, 1e-300);
      expect(Math.abs(reluCrossMoment(a, 1, b, 1, 1) - plus)).toBeLessThan(1e-13 * Math.max(1, plus));
      expect(Math.abs(reluCrossMoment(a, 1, b, 1, -1) - minus)).toBeLessThan(1e-13 * Math.max(1, minus));
    }
    expect(reluCrossMoment(0.6, 2, -0.4, 0.5, 0.3)).toBeCloseTo(2 * 0.5 * reluCrossMoment(0.3, 1, -0.8, 1, 0.3), 14);
    // s = 0 on one side: the constant times the other's mean
    expect(reluCrossMoment(1.5, 0, 0.2, 1, 0.7)).toBeCloseTo(1.5 * reluMean(0.2, 1), 15);
    expect(reluCrossMoment(-1.5, 0, 0.2, 1, 0.7)).toBe(0);
  });

  it("the paper's zero-mean formula equals the exact formula when m = 0", () => {
    for (const rho of [-1, -0.97, -0.6, -0.1, 0, 0.2, 0.5, 0.93, 1]) {
      const paper = reluCrossMomentPaper(1.7, 0.3, rho);
      const exact = reluCrossMoment(0, 1.7, 0, 0.3, rho);
      expect(Math.abs(paper - exact), `rho=${rho}`).toBeLessThan(1e-13 * Math.max(exact, 1e-3));
      expect(Math.abs(reluPairCorrectionPaper(rho) - reluPairCorrection(0, 0, rho))).toBeLessThan(1e-16);
    }
    // but not when m != 0 (the paper applies it anyway)
    expect(Math.abs(reluCrossMomentPaper(1, 1, 0.5) - reluCrossMoment(1, 1, 1, 1, 0.5))).toBeGreaterThan(0.5);
  });

  it('the centred covariance equals Rosenbaum minus the product of the means, and 2-D integration', () => {
    for (const a of as)
      for (const b of [-2, 0.5, 3])
        for (const rho of [-0.95, -0.4, 0.25, 0.9, 0.99]) {
          const raw = reluCrossMoment(a, 1, b, 1, rho) - reluMean(a, 1) * reluMean(b, 1);
          const cov = reluCovariance(a, 1, b, 1, rho);
          expect(Math.abs(cov - raw), `a=${a} b=${b} rho=${rho}`).toBeLessThan(1e-12);
        }
    // where the raw form cancels (both units nearly surely on) the centred one still agrees with integration
    const ref = crossMoment2D(6, 7, 0.6) - reluMean(6, 1) * reluMean(7, 1);
    expect(Math.abs(reluCovariance(6, 1, 7, 1, 0.6) - ref)).toBeLessThan(1e-11);
    expect(reluCovariance(6, 1, 7, 1, 0.6)).toBeCloseTo(0.6, 8);
  });

  it('the pair correction c(a, b; rho) equals its integral to 1e-9 relative to sqrt(c(a,a;1) c(b,b;1)), for |a|, |b| up to 8.5', () => {
    let worst = 0;
    const grid = [-8.4, -6, -3.5, -1, 0, 0.7, 2.5, 8.4];
    for (const a of grid)
      for (const b of grid)
        for (const rho of [-0.999, -0.93, -0.8, -0.4, 0.1, 0.35, 0.7, 0.93, 0.99]) {
          const ref = correctionIntegral(a, b, rho);
          const scale = Math.sqrt(reluVarianceCorrection(a) * reluVarianceCorrection(b));
          const e = Math.abs(reluPairCorrection(a, b, rho) - ref) / scale;
          if (e > 1e-9) expect.fail(`c(${a}, ${b}; ${rho}) = ${reluPairCorrection(a, b, rho)}, integral ${ref}, scale ${scale}`);
          worst = Math.max(worst, e);
        }
    expect(worst).toBeLessThan(1e-9);
  });

  it('the quadrature and the closed form agree where both apply, and c has its symmetries', () => {
    for (const a of [-4, -1, 0.2, 3])
      for (const b of [-2.5, 0, 1.1])
        for (const rho of [-0.9, -0.5, 0.1, 0.6, 0.92]) {
          const scale = Math.sqrt(reluVarianceCorrection(a) * reluVarianceCorrection(b));
          expect(Math.abs(pairCorrectionQuadrature(a, b, rho) - pairCorrectionClosedForm(a, b, rho)) / scale).toBeLessThan(1e-12);
          expect(reluPairCorrection(a, b, rho)).toBeCloseTo(reluPairCorrection(-a, b, -rho), 15);
          expect(reluPairCorrection(a, b, rho)).toBeCloseTo(reluPairCorrection(-a, -b, rho), 15);
          // c = int_0^rho (rho - t) phi2 dt >= 0 for either sign of rho
          expect(reluPairCorrection(a, b, rho)).toBeGreaterThan(0);
        }
    expect(reluPairCorrection(0.3, 0.3, 1)).toBe(reluVarianceCorrection(0.3));
    expect(reluPairCorrection(0.3, -2, 0)).toBe(0);
  });
});
