import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { cantelliMarginBound, classProbabilities, pivotedCholesky } from '../../src/moments/classprob.js';
import { naiveMatMul, naiveTranspose, normalGenerator } from './integrate.js';

/** Plain Monte Carlo of P(argmax = j) for y = mean + G eps, with the test's own generator. */
function plainMC(mean: Float64Array, G: Float64Array, r: number, N: number, seed: number): Float64Array {
  const d = mean.length;
  const g = normalGenerator(seed);
  const counts = new Float64Array(d);
  const eps = new Float64Array(r);
  for (let k = 0; k < N; k++) {
    for (let t = 0; t < r; t++) eps[t] = g();
    let best = 0,
      bv = -Infinity;
    for (let j = 0; j < d; j++) {
      let y = mean[j];
      for (let t = 0; t < r; t++) y += G[j * r + t] * eps[t];
      if (y > bv) {
        bv = y;
        best = j;
      }
    }
    counts[best]++;
  }
  return counts.map((c) => c / N);
}

describe('class probabilities by randomized QMC', () => {
  const cases: [string, number][] = [
    ['full-rank covariance', 4],
    ['rank-1 (singular) covariance', 1],
  ];
  for (const [name, r] of cases) {
    it(`match plain Monte Carlo within 4 combined standard errors: ${name}`, async () => {
      const d = 4;
      const g = normalGenerator(r * 13);
      const mean = Float64Array.of(1, 1.4, 0.2, 1.1);
      const G = Float64Array.from({ length: d * r }, () => 0.8 * g());
      const cov = naiveMatMul(G, naiveTranspose(G, d, r), d, r, d);
      const res = await classProbabilities(mean, cov, { trueClass: 1, points: 2048, shifts: 16, seed: 3 });
      expect(res.rank).toBe(r);
      const N = 200_000;
      const mc = plainMC(mean, G, r, N, 99);
      let total = 0;
      for (let j = 0; j < d; j++) {
        total += res.probabilities[j];
        const se = Math.sqrt(res.stdErr[j] ** 2 + (mc[j] * (1 - mc[j])) / N);
        expect(Math.abs(res.probabilities[j] - mc[j]), `P(argmax = ${j})`).toBeLessThanOrEqual(4 * se + 1e-12);
      }
      expect(total).toBeCloseTo(1, 12);
      const mis = res.misclassification as { probability: number; stdErr: number };
      expect(mis.probability).toBeCloseTo(1 - res.probabilities[1], 14);
      // Cantelli is a guarantee: never below the (estimated) probability it bounds
      expect(res.marginBound as number).toBeGreaterThanOrEqual(1 - mc[1] - 4 * Math.sqrt((mc[1] * (1 - mc[1])) / N));
    });
  }

  it('a zero covariance gives the deterministic argmax (first index on ties)', async () => {
    const res = await classProbabilities(Float64Array.of(0.5, 2, 2, -1), new Float64Array(16), { trueClass: 0 });
    expect(res.rank).toBe(0);
    expect([...res.probabilities]).toEqual([0, 1, 0, 0]);
    expect([...res.stdErr]).toEqual([0, 0, 0, 0]);
    expect(res.misclassification).toEqual({ probability: 1, stdErr: 0 });
    expect(res.marginBound).toBe(1); // class 0 has a negative mean margin
  });

  it('the Cantelli bound: v / (v + mu^2) per class, union capped at 1', () => {
    const mean = Float64Array.of(3, 1, 0);
    const cov = Float64Array.of(1, 0.2, 0, 0.2, 0.5, 0.1, 0, 0.1, 2);
    const b = cantelliMarginBound(mean, cov, 3, 0);
    const v1 = 1 + 0.5 - 0.4,
      v2 = 1 + 2;
    expect(b.perClass[1]).toBeCloseTo(v1 / (v1 + 4), 15);
    expect(b.perClass[2]).toBeCloseTo(v2 / (v2 + 9), 15);
    expect(b.bound).toBeCloseTo(v1 / (v1 + 4) + v2 / (v2 + 9), 15);
    expect(cantelliMarginBound(mean, cov, 3, 2).bound).toBe(1);
    expect(() => cantelliMarginBound(mean, cov, 3, 5)).toThrow(NetmomentsError);
  });

  it('pivoted Cholesky reproduces a singular PSD matrix and rejects an indefinite one', () => {
    const g = normalGenerator(8);
    const G = Float64Array.from({ length: 5 * 2 }, () => g());
    const cov = naiveMatMul(G, naiveTranspose(G, 5, 2), 5, 2, 5);
    const { L, rank } = pivotedCholesky(cov, 5);
    expect(rank).toBe(2);
    const back = naiveMatMul(L, naiveTranspose(L, 5, 2), 5, 2, 5);
    for (let i = 0; i < 25; i++) expect(Math.abs(back[i] - cov[i])).toBeLessThan(1e-12);
    expect(() => pivotedCholesky(Float64Array.of(1, 2, 2, 1), 2)).toThrow(/not positive semi-definite/);
  });
});
