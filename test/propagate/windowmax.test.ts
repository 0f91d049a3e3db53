/**
 * The max of a MaxPool window (src/moments/windowmax.ts) against 10^6-sample Monte Carlo of the
 * same Gaussian window, and its closed-form special cases against piecewise.ts and clark.ts.
 */
import { describe, expect, it } from 'vitest';
import { LATTICE_SHIFTS, windowMax } from '../../src/moments/windowmax.js';
import { clarkMax } from '../../src/moments/clark.js';
import { RELU, piecewiseLinearMoments } from '../../src/moments/piecewise.js';
import { normalGenerator } from '../moments/integrate.js';

/** Monte Carlo moments of max(floor, X) and P(X_a is the max), X ~ N(mu, C). */
function monteCarlo(mu: number[], C: number[], floor: number, n: number, seed: number) {
  const L = mu.length;
  const chol = new Float64Array(L * L);
  for (let a = 0; a < L; a++) {
    for (let b = 0; b <= a; b++) {
      let s = C[a * L + b];
      for (let e = 0; e < b; e++) s -= chol[a * L + e] * chol[b * L + e];
      chol[a * L + b] = a === b ? Math.sqrt(s) : s / chol[b * L + b];
    }
  }
  const gen = normalGenerator(seed);
  const z = new Float64Array(L);
  const wins = new Float64Array(L);
  let s1 = 0;
  let s2 = 0;
  let s4 = 0;
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < L; a++) z[a] = gen();
    let best = floor;
    let arg = -1;
    for (let a = 0; a < L; a++) {
      let v = mu[a];
      for (let e = 0; e <= a; e++) v += chol[a * L + e] * z[e];
      if (v > best) {
        best = v;
        arg = a;
      }
    }
    s1 += best;
    s2 += best * best;
    s4 += best ** 4;
    if (arg >= 0) wins[arg]++;
  }
  const mean = s1 / n;
  const variance = s2 / n - mean * mean;
  return { mean, variance, seVariance: Math.sqrt((s4 / n - (s2 / n) ** 2) / n), weights: Array.from(wins, (w) => w / n) };
}

/** A covariance with correlations like neighbouring conv outputs: rho between 0.3 and 0.9. */
function window(L: number, scale: number): number[] {
  const C: number[] = [];
  for (let a = 0; a < L; a++) for (let b = 0; b < L; b++) C.push(scale * scale * (a === b ? 1 + 0.1 * a : 0.9 - 0.15 * Math.abs(a - b)));
  return C;
}

describe('windowMax vs 10^6-sample Monte Carlo', () => {
  const cases: [string, number[], number, number][] = [
    ['4 contested elements, no floor', [0.2, 0.1, -0.1, 0.3], 1, -Infinity],
    ['4 contested elements, floor 0 (MaxPool + Relu)', [0.2, 0.1, -0.1, 0.3], 1, 0],
    ['4 elements around the floor, large spread', [-1, 0.5, -0.3, 0.8], 2, 0],
    ['3 elements, floor 0', [0.5, -0.5, 0], 0.7, 0],
    ['2 elements and the floor', [0.1, -0.2], 1, 0],
  ];
  for (const [name, mu, scale, floor] of cases) {
    it(`${name}: every shifted lattice within 0.03 sd (mean) and 25% (variance), their average within 0.004 sd and 2%`, () => {
      const L = mu.length;
      const C = window(L, scale);
      const mc = monteCarlo(mu, C, floor, 1_000_000, 11);
      const sd = Math.sqrt(mc.variance);
      const w = new Float64Array(L);
      let meanAvg = 0;
      let varAvg = 0;
      const wAvg = new Float64Array(L);
      for (let shift = 0; shift < LATTICE_SHIFTS; shift++) {
        const got = windowMax(mu, C, L, floor, w, shift);
        // one lattice of 127 points: measured up to 0.012 sd in the mean and 13% in the variance
        // (a shift that puts a point near 0 or 1 maps it to a far tail; unbiased over the shifts)
        expect(Math.abs(got.mean - mc.mean) / sd).toBeLessThan(0.03);
        expect(Math.abs(got.variance / mc.variance - 1)).toBeLessThan(0.25);
        meanAvg += got.mean / LATTICE_SHIFTS;
        varAvg += got.variance / LATTICE_SHIFTS;
        for (let a = 0; a < L; a++) wAvg[a] += w[a] / LATTICE_SHIFTS;
      }
      // the random shifts make the lattice unbiased: the average over the 64 (measured within
      // 0.002 sd and 0.7%) is bounded by the MC error plus the shifts' own spread over 64
      expect(Math.abs(meanAvg - mc.mean)).toBeLessThan(4.5 * (sd / 1000) + 2.5e-3 * sd);
      expect(Math.abs(varAvg - mc.variance)).toBeLessThan(4.5 * mc.seVariance + 0.015 * mc.variance);
      for (let a = 0; a < L; a++) expect(Math.abs(wAvg[a] - mc.weights[a])).toBeLessThan(4.5 * Math.sqrt(0.25 / 1e6) + 3e-3);
    });
  }
});

describe('windowMax special cases are closed form', () => {
  it('two elements without a floor: Clark (exact for two)', () => {
    const C = [1, 0.6, 0.6, 2];
    const w = new Float64Array(2);
    const got = windowMax([0.3, 0.1], C, 2, -Infinity, w, 5);
    const c = clarkMax(0.3, 1, 0.1, 2, 0.6);
    expect(got.mean).toBe(c.mean);
    expect(got.variance).toBe(c.variance);
    expect(w[0]).toBe(c.weightX);
  });
  it('one element with the floor: floor + relu(X - floor)', () => {
    const w = new Float64Array(1);
    const got = windowMax([0.4], [2.25], 1, 0, w, 0);
    const r = piecewiseLinearMoments(RELU, 0.4, 1.5);
    expect(got.mean).toBeCloseTo(r.mean, 14);
    expect(got.variance).toBeCloseTo(r.variance, 14);
    expect(w[0]).toBeCloseTo(r.slope, 14);
  });
  it('decided windows: an element 4.5 sd above the rest and the floor is the max; all 4.5 sd below the floor gives the floor', () => {
    const w = new Float64Array(3);
    const C = window(3, 1);
    const top = windowMax([10, 0, 0.5], C, 3, 0, w, 0);
    expect(top).toEqual({ mean: 10, variance: C[0] });
    expect(Array.from(w)).toEqual([1, 0, 0]);
    const below = windowMax([-10, -12, -9], C, 3, 0, w, 0);
    expect(below).toEqual({ mean: 0, variance: 0 });
    expect(Array.from(w)).toEqual([0, 0, 0]);
  });
});
