/**
 * Expectations of smooth functions of one Gaussian: E f(x), var f(x) and E f'(x) for
 * x ~ N(m, s^2), the statistical linearization of a smooth unit (Sigmoid, Tanh, Erf, Sin, Cos,
 * Softplus, ...; Exp in closed form).
 *
 * Gauss-Hermite quadrature (gaussHermite below) converges slowly for saturating units at large s
 * (tanh has poles at +-i pi/2: with 48 nodes the mean of tanh(x), x ~ N(0.2, 9), is off by 1e-3),
 * so smoothMoments uses a composite Gauss-Legendre rule on the standard normal instead:
 * E g(x) = int phi(z) g(m + s z) dz over |z| <= 9 (the tail beyond holds 2e-19 of the mass),
 * 64 panels of 6 Gauss-Legendre points, weights times phi(z). Accurate to ~1e-9 for the units
 * here at s up to 5 (tested against adaptive Gauss-Kronrod).
 */
import type { GaussianImage } from './piecewise.js';
import { INV_SQRT_2PI, Phi } from './special.js';

export interface HermiteRule {
  nodes: Float64Array;
  weights: Float64Array;
}

const PIM4 = 0.7511255444649425; // pi^{-1/4}

/** The n-point Gauss-Hermite rule (weight e^{-t^2}). */
export function gaussHermite(n: number): HermiteRule {
  const x = new Float64Array(n);
  const w = new Float64Array(n);
  const m = Math.floor((n + 1) / 2);
  let z = 0;
  for (let i = 0; i < m; i++) {
    if (i === 0) z = Math.sqrt(2 * n + 1) - 1.85575 * Math.pow(2 * n + 1, -0.16667);
    else if (i === 1) z -= (1.14 * Math.pow(n, 0.426)) / z;
    else if (i === 2) z = 1.86 * z - 0.86 * x[0];
    else if (i === 3) z = 1.91 * z - 0.91 * x[1];
    else z = 2 * z - x[i - 2];
    let pp = 0;
    for (let its = 0; its < 100; its++) {
      let p1 = PIM4;
      let p2 = 0;
      for (let j = 0; j < n; j++) {
        const p3 = p2;
        p2 = p1;
        p1 = z * Math.sqrt(2 / (j + 1)) * p2 - Math.sqrt(j / (j + 1)) * p3;
      }
      pp = Math.sqrt(2 * n) * p2;
      const z1 = z;
      z = z1 - p1 / pp;
      if (Math.abs(z - z1) <= 1e-15) break;
    }
    x[i] = z;
    x[n - 1 - i] = -z;
    w[i] = 2 / (pp * pp);
    w[n - 1 - i] = w[i];
  }
  return { nodes: x, weights: w };
}

/** n-point Gauss-Legendre nodes and weights on [-1, 1] (Newton on the Legendre recurrence; Numerical Recipes 4.6, gauleg). */
export function gaussLegendre(n: number): { nodes: Float64Array; weights: Float64Array } {
  const x = new Float64Array(n);
  const w = new Float64Array(n);
  for (let i = 0; i < Math.floor((n + 1) / 2); i++) {
    let z = Math.cos((Math.PI * (i + 0.75)) / (n + 0.5));
    let pp = 0;
    for (let its = 0; its < 100; its++) {
      let p1 = 1;
      let p2 = 0;
      for (let j = 0; j < n; j++) {
        const p3 = p2;
        p2 = p1;
        p1 = ((2 * j + 1) * z * p2 - j * p3) / (j + 1);
      }
      pp = (n * (z * p1 - p2)) / (z * z - 1);
      const z1 = z;
      z = z1 - p1 / pp;
      if (Math.abs(z - z1) <= 1e-15) break;
    }
    x[i] = -z;
    x[n - 1 - i] = z;
    w[i] = 2 / ((1 - z * z) * pp * pp);
    w[n - 1 - i] = w[i];
  }
  return { nodes: x, weights: w };
}

/** A rule for E g(Z), Z ~ N(0, 1): nodes z_i, weights w_i (sum 1 up to 2e-19). */
export interface NormalRule {
  nodes: Float64Array;
  weights: Float64Array;
}

/** Composite Gauss-Legendre on [-zmax, zmax] with weights times phi(z). */
export function normalRule(panels = 64, points = 6, zmax = 9): NormalRule {
  const gl = gaussLegendre(points);
  const nodes = new Float64Array(panels * points);
  const weights = new Float64Array(panels * points);
  const h = (2 * zmax) / panels;
  for (let p = 0; p < panels; p++) {
    const c = -zmax + (p + 0.5) * h;
    for (let j = 0; j < points; j++) {
      const z = c + 0.5 * h * gl.nodes[j];
      nodes[p * points + j] = z;
      weights[p * points + j] = 0.5 * h * gl.weights[j] * INV_SQRT_2PI * Math.exp(-0.5 * z * z);
    }
  }
  return { nodes, weights };
}

const DEFAULT_RULE = normalRule();

/**
 * Mean, variance and expected first three derivatives of f(x), x ~ N(m, s^2), by the composite
 * normal rule. The derivatives come from Stein's lemma applied repeatedly: E f'(x) = E[f(x) z] / s,
 * E f''(x) = E[f(x) (z^2 - 1)] / s^2, E f'''(x) = E[f(x) (z^3 - 3z)] / s^3 with z = (x - m) / s, so
 * only f is needed.
 */
export function smoothMoments(f: (x: number) => number, m: number, s: number, rule: NormalRule = DEFAULT_RULE): GaussianImage {
  if (!(s > 0)) {
    const h = 1e-6 * Math.max(1, Math.abs(m));
    return { mean: f(m), variance: 0, slope: (f(m + h) - f(m - h)) / (2 * h), curvature: 0, third: 0 };
  }
  let e1 = 0;
  let e2 = 0;
  let ex = 0;
  let exx = 0;
  let exxx = 0;
  const { nodes, weights } = rule;
  for (let i = 0; i < nodes.length; i++) {
    const t = nodes[i];
    const v = f(m + s * t);
    const w = weights[i];
    e1 += w * v;
    e2 += w * v * v;
    ex += w * t * v;
    exx += w * (t * t - 1) * v;
    exxx += w * (t * t - 3) * t * v;
  }
  return { mean: e1, variance: Math.max(0, e2 - e1 * e1), slope: ex / s, curvature: exx / (s * s), third: exxx / (s * s * s) };
}

/** erf by its relation to the normal cdf: erf(x) = 2 Phi(x sqrt 2) - 1. */
export function erf(x: number): number {
  return x >= 0 ? 1 - 2 * Phi(-x * Math.SQRT2) : 2 * Phi(x * Math.SQRT2) - 1;
}

/** The smooth unit-wise functions with a moment rule, by ONNX op type. */
export const SMOOTH_FUNCTIONS: Readonly<Record<string, (x: number) => number>> = {
  Sigmoid: (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))),
  Tanh: Math.tanh,
  Exp: Math.exp,
  Erf: erf,
  Sin: Math.sin,
  Cos: Math.cos,
  Softplus: (x) => (x > 30 ? x : Math.log1p(Math.exp(x))),
};

/**
 * Exp of a Gaussian in closed form (the lognormal): E e^x = e^{m + s^2/2}, var = e^{2m + s^2}(e^{s^2} - 1),
 * E (e^x)' = E (e^x)'' = E (e^x)''' = E e^x. Used instead of quadrature, which loses accuracy for large s.
 */
export function expMoments(m: number, s: number): GaussianImage {
  const mean = Math.exp(m + (s * s) / 2);
  return { mean, variance: mean * mean * Math.expm1(s * s), slope: mean, curvature: mean, third: mean };
}
