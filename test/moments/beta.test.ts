import { describe, expect, it } from 'vitest';
import { clopperPearsonInterval, clopperPearsonLower, clopperPearsonUpper, inverseRegularizedBeta, logGamma, regularizedBeta } from '../../src/moments/beta.js';

/** log k! by summing logs: independent of logGamma's Stirling and Lanczos forms. */
function logFactorials(n: number): Float64Array {
  const out = new Float64Array(n + 1);
  for (let i = 1; i <= n; i++) out[i] = out[i - 1] + Math.log(i);
  return out;
}

/** P(Bin(n, p) >= k) by summing the pmf, each term formed in logs from summed log factorials. */
function binomialUpperTail(k: number, n: number, p: number, lf: Float64Array): number {
  let s = 0;
  for (let j = k; j <= n; j++) s += Math.exp(lf[n] - lf[j] - lf[n - j] + j * Math.log(p) + (n - j) * Math.log1p(-p));
  return s;
}

describe('logGamma', () => {
  // mpmath.loggamma at 40 digits
  const TABLE: [number, number][] = [
    [0.1, 2.252712651734205902],
    [1.5, -0.12078223763524522235],
    [7.3, 7.1478925230222486921],
    [25, 54.78472939811231919],
    [1e5, 1051287.7089736568949],
  ];
  it('matches 40-digit values (relative 1e-14) and log factorials on both sides of the Stirling switch', () => {
    for (const [x, v] of TABLE) expect(Math.abs(logGamma(x) - v) / Math.abs(v), `logGamma(${x})`).toBeLessThan(1e-14);
    const lf = logFactorials(60);
    for (let k = 1; k <= 60; k++) expect(Math.abs(logGamma(k + 1) - lf[k]), `log ${k}!`).toBeLessThan(1e-12 * Math.max(1, lf[k]));
  });
});

describe('regularizedBeta', () => {
  it('has the closed forms I_x(1,1) = x, I_x(a,1) = x^a, I_x(1,b) = 1 - (1-x)^b', () => {
    for (const x of [0, 0.01, 0.3, 0.77, 0.999, 1]) {
      expect(regularizedBeta(x, 1, 1)).toBeCloseTo(x, 14);
      expect(regularizedBeta(x, 3.5, 1)).toBeCloseTo(x ** 3.5, 14);
      expect(regularizedBeta(x, 1, 6)).toBeCloseTo(1 - (1 - x) ** 6, 14);
    }
  });
  it('matches mpmath.betainc at 40 digits, including a = 99990 (relative 1e-9)', () => {
    const TABLE: [number, number, number, number][] = [
      [0.3, 2.5, 4, 0.35219758590676721388],
      [0.9, 100, 5, 0.017937643107257261961],
      [0.5, 0.5, 0.5, 0.5],
      [0.99993, 99990, 11, 0.90148665941583854485],
    ];
    for (const [x, a, b, v] of TABLE) expect(Math.abs(regularizedBeta(x, a, b) - v) / v, `I_${x}(${a}, ${b})`).toBeLessThan(1e-9);
  });
  it('inverts: inverseRegularizedBeta(I_x(a, b)) = x', () => {
    for (const [x, a, b] of [
      [0.2, 2, 3],
      [0.95, 50, 3],
      [1e-4, 1, 10],
    ]) {
      expect(Math.abs(inverseRegularizedBeta(regularizedBeta(x, a, b), a, b) - x) / x).toBeLessThan(1e-10);
    }
  });
});

describe('Clopper-Pearson bounds', () => {
  // scipy.stats.beta.ppf(alpha, k, n - k + 1)
  const SCIPY: [number, number, number, number][] = [
    [1, 10, 0.001, 0.00010004502852067863],
    [7, 10, 0.05, 0.39337578389458766],
    [990, 1000, 0.001, 0.9760361871553114],
    [99990, 100000, 0.001, 0.9997586773435911],
    [50, 100, 0.01, 0.38071746690695246],
    [9, 100000, 0.001, 2.4524924321947027e-5],
  ];
  it("match scipy's beta quantiles (relative 1e-9)", () => {
    for (const [k, n, a, v] of SCIPY) expect(Math.abs(clopperPearsonLower(k, n, a) - v) / v, `k=${k} n=${n}`).toBeLessThan(1e-9);
  });
  it('solve P(Bin(n, p_L) >= k) = alpha, checked by summing the binomial pmf', () => {
    const lf = logFactorials(100000);
    for (const [k, n, a] of [
      [3, 20, 0.05],
      [97, 100, 0.001],
      [600, 1000, 0.01],
      [99990, 100000, 0.001],
    ]) {
      const pL = clopperPearsonLower(k, n, a);
      expect(Math.abs(binomialUpperTail(k, n, pL, lf) - a) / a, `k=${k} n=${n}`).toBeLessThan(1e-7);
      // the bound is below the point estimate, and a slightly larger p puts more than alpha in the tail
      expect(pL).toBeLessThan(k / n);
      expect(binomialUpperTail(k, n, pL * (1 + 1e-4), lf)).toBeGreaterThan(a);
    }
  });
  it('has the closed forms at k = 0 and k = n, and the upper bound mirrors the lower', () => {
    expect(clopperPearsonLower(0, 50, 0.01)).toBe(0);
    expect(clopperPearsonLower(100000, 100000, 0.001)).toBeCloseTo(Math.exp(Math.log(0.001) / 100000), 15);
    expect(clopperPearsonUpper(50, 50, 0.01)).toBe(1);
    expect(clopperPearsonUpper(3, 20, 0.05)).toBeCloseTo(1 - clopperPearsonLower(17, 20, 0.05), 15);
    const [lo, hi] = clopperPearsonInterval(7, 10, 0.1);
    expect(lo).toBeCloseTo(0.39337578389458766, 9);
    expect(hi).toBeGreaterThan(0.7);
    expect(Number.isNaN(clopperPearsonLower(3, 2, 0.01))).toBe(true);
  });
});
