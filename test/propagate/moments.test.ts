/**
 * The per-unit moment maths of propagate against independent references: adaptive Gauss-Kronrod
 * quadrature (test/moments/integrate.ts) for the piecewise-linear and smooth units, and 10^6-sample
 * Monte Carlo (a test-local generator) for Clark's max of two correlated Gaussians.
 */
import { describe, expect, it } from 'vitest';
import { ABS, RELU, clip, leakyRelu, piecewiseLinearMoments, type PiecewiseLinear } from '../../src/moments/piecewise.js';
import { clarkMax } from '../../src/moments/clark.js';
import { SMOOTH_FUNCTIONS, expMoments, gaussHermite, gaussLegendre, smoothMoments } from '../../src/moments/smooth.js';
import { integratePieces, normalGenerator, npdf } from '../moments/integrate.js';
import { semidefiniteCholesky, softmaxMoments } from '../../src/moments/softmax.js';
import { composePiecewiseLinear, evaluatePiecewiseLinear, hardSigmoid } from '../../src/moments/piecewise.js';
import { unitFunction, unitRule } from '../../src/propagate/rules/unit.js';
import { Graph, type GraphNode } from '../../src/onnx/graph.js';
import { Phi } from '../../src/moments/special.js';

function evalPl(f: PiecewiseLinear, x: number): number {
  let j = 0;
  while (j < f.kinks.length && x >= f.kinks[j]) j++;
  return f.slopes[j] * x + f.intercepts[j];
}

/** E g(x), x ~ N(m, s^2), by quadrature over [m - 14 s, m + 14 s] split at the given points. */
function expectation(g: (x: number) => number, m: number, s: number, breaks: readonly number[] = []): number {
  const pts = [m - 14 * s, ...breaks.filter((t) => t > m - 14 * s && t < m + 14 * s), m + 14 * s];
  return integratePieces((x) => g(x) * (npdf((x - m) / s) / s), pts, 1e-13, 1e-300);
}

function reference(f: (x: number) => number, m: number, s: number, breaks: readonly number[]) {
  const e1 = expectation(f, m, s, breaks);
  const e2 = expectation((x) => f(x) * f(x), m, s, breaks);
  const cxf = expectation((x) => (x - m) * f(x), m, s, breaks);
  // E f''(x) by Stein's lemma twice: E[f(x) He_2((x - m) / s)] / s^2
  const he2 = expectation((x) => (((x - m) / s) ** 2 - 1) * f(x), m, s, breaks);
  // E f'''(x) = E[f(x) He_3((x - m) / s)] / s^3
  const he3 = expectation((x) => (((x - m) / s) ** 3 - (3 * (x - m)) / s) * f(x), m, s, breaks);
  return { mean: e1, variance: e2 - e1 * e1, slope: cxf / (s * s), curvature: he2 / (s * s), third: he3 / s ** 3 };
}

const cases: [number, number][] = [
  [0, 1],
  [1.3, 0.7],
  [-2.5, 1.1],
  [4, 0.5],
  [-7, 1],
  [0.2, 3],
  [5.5, 2],
];

describe('piecewise-linear units vs quadrature (tolerance 1e-10 absolute, in units of s and s^2; curvature 1e-9 / s, third derivative 1e-9 / s^2)', () => {
  const units: [string, PiecewiseLinear][] = [
    ['Relu', RELU],
    ['LeakyRelu 0.1', leakyRelu(0.1)],
    ['PRelu slope -0.3', leakyRelu(-0.3)],
    ['Abs', ABS],
    ['Clip 0..6 (ReLU6)', clip(0, 6)],
    ['Clip -1..1', clip(-1, 1)],
    ['Clip -inf..2', clip(-Infinity, 2)],
  ];
  for (const [name, f] of units) {
    it(name, () => {
      for (const [m, s] of cases) {
        const got = piecewiseLinearMoments(f, m, s);
        const ref = reference((x) => evalPl(f, x), m, s, f.kinks);
        expect(Math.abs(got.mean - ref.mean) / s).toBeLessThan(1e-10);
        expect(Math.abs(got.variance - ref.variance) / (s * s)).toBeLessThan(1e-10);
        expect(Math.abs(got.slope - ref.slope)).toBeLessThan(1e-10);
        expect(Math.abs(got.curvature - ref.curvature) * s).toBeLessThan(1e-9);
        expect(Math.abs(got.third - ref.third) * s * s).toBeLessThan(1e-9);
      }
    });
  }
  it('HardSigmoid (alpha 0.2, beta 0.5; alpha -0.3, beta 0.4; alpha 0)', () => {
    for (const [alpha, beta] of [
      [0.2, 0.5],
      [-0.3, 0.4],
      [0, 1.7],
    ]) {
      const f = hardSigmoid(alpha, beta);
      const g = (x: number) => Math.max(0, Math.min(1, alpha * x + beta));
      for (const [m, s] of cases) {
        const got = piecewiseLinearMoments(f, m, s);
        const ref = reference(g, m, s, f.kinks);
        expect(Math.abs(got.mean - ref.mean) / s).toBeLessThan(1e-10);
        expect(Math.abs(got.variance - ref.variance) / (s * s)).toBeLessThan(1e-10);
        expect(Math.abs(got.slope - ref.slope)).toBeLessThan(1e-10);
      }
    }
  });
  it('a composition of piecewise-linear functions (Clip after Relu, Abs after a negated LeakyRelu, ...) is their composite everywhere', () => {
    const neg: PiecewiseLinear = { kinks: [], slopes: [-2], intercepts: [1] };
    const pairs: [PiecewiseLinear, PiecewiseLinear][] = [
      [clip(0, 6), RELU],
      [ABS, composePiecewiseLinear(leakyRelu(0.1), neg)],
      [hardSigmoid(0.2, 0.5), clip(-1, 4)],
      [clip(-1, 1), ABS],
      [RELU, hardSigmoid(-0.3, 0.4)],
    ];
    for (const [outer, inner] of pairs) {
      const f = composePiecewiseLinear(outer, inner);
      for (let x = -12; x <= 12; x += 0.0625)
        expect(evaluatePiecewiseLinear(f, x)).toBeCloseTo(evaluatePiecewiseLinear(outer, evaluatePiecewiseLinear(inner, x)), 12);
      // and its moments are the composite's (quadrature split at every kink of both)
      const g = (x: number) => evaluatePiecewiseLinear(outer, evaluatePiecewiseLinear(inner, x));
      for (const [m, s] of cases) {
        const got = piecewiseLinearMoments(f, m, s);
        const ref = reference(g, m, s, f.kinks);
        expect(Math.abs(got.mean - ref.mean) / s).toBeLessThan(1e-10);
        expect(Math.abs(got.variance - ref.variance) / (s * s)).toBeLessThan(1e-10);
      }
    }
    // kinks that change nothing are dropped: relu(relu(x)) is relu
    expect(composePiecewiseLinear(RELU, RELU)).toEqual(RELU);
  });
  it('ReLU: slope is Phi(m/s) and s = 0 gives the point value', () => {
    const r = piecewiseLinearMoments(RELU, 1, 2);
    expect(r.slope).toBeCloseTo(0.6914624612740131, 12);
    expect(piecewiseLinearMoments(RELU, -3, 0)).toEqual({ mean: 0, variance: 0, slope: 0, curvature: 0, third: 0 });
    expect(piecewiseLinearMoments(clip(0, 6), 7, 0)).toEqual({ mean: 6, variance: 0, slope: 0, curvature: 0, third: 0 });
  });
});

describe('smooth units (composite normal rule) vs quadrature', () => {
  it('the rule integrates polynomials of degree < 2n exactly', () => {
    const { nodes, weights } = gaussHermite(20);
    let w0 = 0;
    let t4 = 0;
    for (let i = 0; i < 20; i++) {
      w0 += weights[i];
      t4 += weights[i] * nodes[i] ** 4;
    }
    expect(w0).toBeCloseTo(Math.sqrt(Math.PI), 13);
    expect(t4).toBeCloseTo((3 / 4) * Math.sqrt(Math.PI), 12);
    const gl = gaussLegendre(6);
    let x10 = 0;
    for (let i = 0; i < 6; i++) x10 += gl.weights[i] * gl.nodes[i] ** 10;
    expect(x10).toBeCloseTo(2 / 11, 13);
  });
  for (const name of ['Sigmoid', 'Tanh', 'Erf', 'Sin', 'Cos', 'Softplus']) {
    it(`${name} (tolerance 1e-8 absolute for s <= 3)`, () => {
      const f = SMOOTH_FUNCTIONS[name];
      for (const [m, s] of cases) {
        const tol = 1e-8;
        const got = smoothMoments(f, m, s);
        const ref = reference(f, m, s, []);
        expect(Math.abs(got.mean - ref.mean)).toBeLessThan(tol);
        expect(Math.abs(got.variance - ref.variance)).toBeLessThan(tol);
        expect(Math.abs(got.slope - ref.slope)).toBeLessThan(tol);
        expect(Math.abs(got.curvature - ref.curvature)).toBeLessThan(tol);
        expect(Math.abs(got.third - ref.third)).toBeLessThan(tol);
      }
    });
  }
  it('Exp in closed form vs quadrature (relative 1e-9)', () => {
    for (const [m, s] of [
      [0, 1],
      [-1, 0.5],
      [1, 2],
    ]) {
      const got = expMoments(m, s);
      const ref = reference(Math.exp, m, s, []);
      expect(Math.abs(got.mean / ref.mean - 1)).toBeLessThan(1e-9);
      expect(Math.abs(got.variance / ref.variance - 1)).toBeLessThan(1e-9);
      expect(Math.abs(got.slope / ref.slope - 1)).toBeLessThan(1e-9);
      expect(Math.abs(got.curvature / ref.curvature - 1)).toBeLessThan(1e-9);
      expect(Math.abs(got.third / ref.third - 1)).toBeLessThan(1e-9);
    }
  });
});

describe('unit-wise ops with attributes (ONNX definitions) vs quadrature', () => {
  // smoothMoments' fixed panels do not split at a kink: units whose derivative jumps (Selu at 0,
  // HardSwish at +-3) or whose curvature does (Elu, Celu, Softsign at 0) converge more slowly there,
  // to ~6e-5 (in units of s); the smooth ones to ~1e-12. Either is far below what propagation's
  // Gaussian closure costs (0.01-0.05 output sd, docs/RESULTS.md).
  const node = (opType: string, attributes: GraphNode['attributes'] = []): GraphNode => ({
    name: opType,
    opType,
    domain: '',
    inputs: ['x'],
    outputs: ['y'],
    attributes,
  });
  const f = (name: string, value: number) => ({ name, type: 1, f: value });
  const units: [string, GraphNode, (x: number) => number, number[], number][] = [
    ['Elu alpha 0.7', node('Elu', [f('alpha', 0.7)]), (x) => (x < 0 ? 0.7 * (Math.exp(x) - 1) : x), [0], 1e-4],
    ['Selu (defaults)', node('Selu'), (x) => 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * (Math.exp(x) - 1)), [0], 1e-4],
    ['Celu alpha 1.5', node('Celu', [f('alpha', 1.5)]), (x) => Math.max(0, x) + Math.min(0, 1.5 * (Math.exp(x / 1.5) - 1)), [0], 1e-4],
    ['Softsign', node('Softsign'), (x) => x / (1 + Math.abs(x)), [0], 1e-4],
    ['HardSwish', node('HardSwish'), (x) => (x <= -3 ? 0 : x >= 3 ? x : (x * (x + 3)) / 6), [-3, 3], 1e-4],
    ['Mish', node('Mish'), (x) => x * Math.tanh(Math.log(1 + Math.exp(x))), [], 1e-8],
    ['Gelu', node('Gelu'), (x) => x * Phi(x), [], 1e-8],
    [
      'Gelu tanh',
      node('Gelu', [{ name: 'approximate', type: 3, s: new TextEncoder().encode('tanh') }]),
      (x) => 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
      [],
      1e-8,
    ],
  ];
  for (const [name, n, g, kinks, tol] of units) {
    it(`${name} (tolerance ${tol} in units of s, s^2)`, () => {
      const graph = new Graph();
      const rule = unitRule(n, graph, [1])!;
      const fn = unitFunction(n, graph)!;
      for (const x of [-5, -3, -1.2, 0, 0.4, 2.9, 6]) expect(fn(x)).toBeCloseTo(g(x), 6);
      for (const [m, s] of [...cases, [-3, 0.05], [2.9, 0.2]] as [number, number][]) {
        const got = rule(0, m, s);
        const ref = reference(g, m, s, kinks);
        expect(Math.abs(got.mean - ref.mean) / s).toBeLessThan(tol);
        expect(Math.abs(got.variance - ref.variance) / (s * s)).toBeLessThan(tol);
        expect(Math.abs(got.slope - ref.slope)).toBeLessThan(tol);
        expect(Math.abs(got.curvature - ref.curvature) * s).toBeLessThan(tol);
      }
    });
  }
});

describe("Clark's max of two correlated Gaussians vs 10^6-sample Monte Carlo (within 4.5 standard errors)", () => {
  const pairs: [number, number, number, number, number][] = [
    // m1, v1, m2, v2, correlation
    [0, 1, 0, 1, 0],
    [1, 2, 0.5, 1, 0.6],
    [-1, 0.5, 2, 3, -0.4],
    [3, 1, 2.9, 1.2, 0.95],
  ];
  for (const [m1, v1, m2, v2, rho] of pairs) {
    it(`m = (${m1}, ${m2}), v = (${v1}, ${v2}), rho = ${rho}`, () => {
      const c = rho * Math.sqrt(v1 * v2);
      const got = clarkMax(m1, v1, m2, v2, c);
      const gen = normalGenerator(17);
      const N = 1_000_000;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let s4 = 0;
      let sxz = 0;
      // Z = X + 0.5 Y + independent noise: cov(max, Z) = w cov(X, Z) + (1 - w) cov(Y, Z)
      for (let i = 0; i < N; i++) {
        const a = gen();
        const b = gen();
        const x = m1 + Math.sqrt(v1) * a;
        const y = m2 + Math.sqrt(v2) * (rho * a + Math.sqrt(1 - rho * rho) * b);
        const z = x + 0.5 * y + gen();
        const mx = Math.max(x, y);
        s1 += mx;
        s2 += mx * mx;
        s3 += z;
        sxz += mx * z;
        s4 += mx ** 4;
      }
      const mean = s1 / N;
      const variance = s2 / N - mean * mean;
      const covMZ = sxz / N - mean * (s3 / N);
      const seMean = Math.sqrt(variance / N);
      const seVar = Math.sqrt((s4 / N - (s2 / N) ** 2) / N) * 1.5;
      expect(Math.abs(got.mean - mean)).toBeLessThan(4.5 * seMean);
      expect(Math.abs(got.variance - variance)).toBeLessThan(4.5 * seVar);
      const covXZ = v1 + 0.5 * c;
      const covYZ = c + 0.5 * v2;
      const predicted = got.weightX * covXZ + (1 - got.weightX) * covYZ;
      expect(Math.abs(predicted - covMZ)).toBeLessThan(4.5 * Math.sqrt(((variance + 0.0) * (v1 + 0.25 * v2 + c + 1)) / N) * 1.5);
    });
  }
  it("curvature and third derivative are those of relu(X - Y), the max's only kinked part (1e-12)", () => {
    // max(X, Y) = Y + relu(X - Y); Y is linear in X - Y plus an independent part, which has no
    // Hermite terms of order >= 2, so E[max He_h(d)] = E[relu(D) He_h(d)] for h = 2, 3
    for (const [m1, v1, m2, v2, rho] of pairs) {
      const c = rho * Math.sqrt(v1 * v2);
      const got = clarkMax(m1, v1, m2, v2, c);
      const ref = piecewiseLinearMoments(RELU, m1 - m2, Math.sqrt(v1 + v2 - 2 * c));
      expect(Math.abs(got.curvature - ref.curvature)).toBeLessThan(1e-12);
      expect(Math.abs(got.third - ref.third)).toBeLessThan(1e-12);
    }
  });
  it('a degenerate difference picks the larger mean', () => {
    expect(clarkMax(1, 2, 0, 2, 2)).toEqual({ mean: 1, variance: 2, weightX: 1, curvature: 0, third: 0 });
  });
});

describe('Softmax (and the log-sum-exp of LogSoftmax) of a Gaussian vector vs 400,000-sample Monte Carlo of the op alone', () => {
  // Tolerances: the rule's quadrature error (measured below 1e-3 sd in the mean and 1% in the
  // variance; src/moments/softmax.ts) plus 5 Monte Carlo standard errors.
  const N = 400_000;
  const cases: { name: string; mu: number[]; scale: number; seed: number }[] = [
    { name: '3 units, spread 0.5', mu: [0.3, -0.2, 0.1], scale: 0.5, seed: 11 },
    { name: '5 units, spread 1 (a softmax mostly decided)', mu: [0.5, -1, 2, 0, 1.2], scale: 1, seed: 12 },
    { name: '10 units (a classifier), spread 2', mu: [1, 0.5, -0.5, 2.5, 0, -1, 0.3, 1.7, -2, 0.8], scale: 2, seed: 13 },
  ];
  for (const { name, mu, scale, seed } of cases) {
    it(
      name,
      () => {
        const D = mu.length;
        const normal = normalGenerator(seed);
        // C = B B^T / D + 0.05 scale^2 I, B standard normal times scale
        const B = Array.from({ length: D * D }, () => normal() * scale);
        const C = new Float64Array(D * D);
        for (let i = 0; i < D; i++)
          for (let j = 0; j < D; j++) {
            let s = 0;
            for (let k = 0; k < D; k++) s += B[i * D + k] * B[j * D + k];
            C[i * D + j] = s / D + (i === j ? 0.05 * scale * scale : 0);
          }
        const got = softmaxMoments(mu, C, D);
        const L = semidefiniteCholesky(C, D);
        const s1 = new Float64Array(D);
        const s2 = new Float64Array(D * D);
        const s4 = new Float64Array(D);
        const sxy = new Float64Array(D * D); // sum (x_l - mu_l) y_j at [j * D + l]
        const x = new Float64Array(D);
        const z = new Float64Array(D);
        const y = new Float64Array(D);
        // the log-sum-exp (LogSoftmax's rule): its sums
        let sL = 0;
        let sL2 = 0;
        let sL4 = 0;
        for (let n = 0; n < N; n++) {
          for (let i = 0; i < D; i++) z[i] = normal();
          let max = -Infinity;
          for (let i = 0; i < D; i++) {
            let v = 0;
            for (let k = 0; k <= i; k++) v += L[i * D + k] * z[k];
            x[i] = v;
            max = Math.max(max, mu[i] + v);
          }
          let sum = 0;
          for (let i = 0; i < D; i++) sum += y[i] = Math.exp(mu[i] + x[i] - max);
          for (let i = 0; i < D; i++) y[i] /= sum;
          const lse = max + Math.log(sum);
          sL += lse;
          sL2 += lse * lse;
          sL4 += lse ** 4;
          for (let i = 0; i < D; i++) {
            s1[i] += y[i];
            s4[i] += y[i] ** 4;
            for (let j = 0; j < D; j++) {
              s2[i * D + j] += y[i] * y[j];
              sxy[i * D + j] += y[i] * x[j];
            }
          }
        }
        const lseMean = sL / N;
        const lseVariance = sL2 / N - lseMean ** 2;
        const lseSd = Math.sqrt(lseVariance);
        expect(Math.abs(got.logSumExp - lseMean), 'E lse').toBeLessThan(1e-3 * lseSd + (5 * lseSd) / Math.sqrt(N));
        // var(lse) = E lse^2 - (E lse)^2; the standard error of E lse^2 from the fourth moment
        const seLse2 = Math.sqrt((sL4 / N - (sL2 / N) ** 2) / N);
        expect(Math.abs(got.logSumExpSecond - got.logSumExp ** 2 - lseVariance), 'var lse').toBeLessThan(
          0.01 * lseVariance + 5 * seLse2 + 2 * Math.abs(lseMean) * ((5 * lseSd) / Math.sqrt(N)),
        );
        for (let i = 0; i < D; i++) {
          const mean = s1[i] / N;
          const second = s2[i * D + i] / N;
          const variance = second - mean * mean;
          const sd = Math.sqrt(variance);
          expect(Math.abs(got.mean[i] - mean), `mean ${i}`).toBeLessThan(1e-3 * sd + (5 * sd) / Math.sqrt(N));
          const seSecond = Math.sqrt((s4[i] / N - second * second) / N);
          const gotVariance = got.second[i * D + i] - got.mean[i] ** 2;
          expect(Math.abs(gotVariance - variance), `variance ${i}`).toBeLessThan(0.01 * variance + 5 * seSecond + 2 * sd * ((5 * sd) / Math.sqrt(N)));
          for (let j = 0; j < D; j++) {
            // off-diagonal second moments (the diagonal is the variance above), and Stein's lemma: cov(y, x) = E J C with E J = diag(E y) - E[y y^T]
            const sdj = Math.sqrt(s2[j * D + j] / N - (s1[j] / N) ** 2);
            const se = (5 * sd * sdj) / Math.sqrt(N) + 1e-6;
            if (j !== i) expect(Math.abs(got.second[i * D + j] - s2[i * D + j] / N), `E y_${i} y_${j}`).toBeLessThan(0.01 * sd * sdj + se);
            let predicted = 0;
            for (let l = 0; l < D; l++) predicted += ((l === i ? got.mean[i] : 0) - got.second[i * D + l]) * C[l * D + j];
            const sx = Math.sqrt(C[j * D + j]);
            expect(Math.abs(predicted - sxy[i * D + j] / N), `cov(y_${i}, x_${j})`).toBeLessThan(0.01 * sd * sx + (5 * sd * sx) / Math.sqrt(N));
          }
        }
      },
      120_000,
    );
  }
  it('a Softmax with no noise is the softmax of the mean; one noisy unit against 1-D quadrature', () => {
    const got = softmaxMoments([1, 2, 0], new Float64Array(9), 3);
    const e = [Math.exp(1), Math.exp(2), 1];
    const sum = e[0] + e[1] + e[2];
    for (let i = 0; i < 3; i++) {
      expect(got.mean[i]).toBeCloseTo(e[i] / sum, 12);
      for (let j = 0; j < 3; j++) expect(got.second[i * 3 + j]).toBeCloseTo((e[i] * e[j]) / sum ** 2, 12);
    }
    // only unit 0 varies: the result depends on one live dimension
    const C = new Float64Array(9);
    C[0] = 1;
    const one = softmaxMoments([1, 2, 0], C, 3);
    expect(one.mean.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    // against 1-D quadrature: y_0 = e^x / (e^x + e^2 + 1), x ~ N(1, 1) (tolerance 2e-4: quasi-Monte Carlo in one dimension)
    const y0 = (x: number) => Math.exp(x) / (Math.exp(x) + e[1] + e[2]);
    expect(Math.abs(one.mean[0] - expectation(y0, 1, 1))).toBeLessThan(2e-4);
    expect(Math.abs(one.second[0] - expectation((x) => y0(x) ** 2, 1, 1))).toBeLessThan(2e-4);
  });
});
