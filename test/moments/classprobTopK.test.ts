/**
 * Class probabilities on the top-k classes (src/moments/classprob.ts, topK): against the QMC on all
 * d classes (an independent run of the same estimator on the full problem), each sampled probability
 * must lie within [full - 5 se, full + rest + 5 se] (the top-k value can be high by at most the rest
 * bound), the rest bound must be at least the full run's mass outside the sampled classes, and the
 * classes outside get 0. The bound itself is checked against a case where it is tight: one class
 * outside the top-k with a known P(y_j >= y_t).
 */
import { describe, expect, it } from 'vitest';
import { classProbabilities, topClasses } from '../../src/moments/classprob.js';
import { Phi } from '../../src/moments/special.js';
import { Rng } from '../../src/moments/montecarlo.js';

function randomGaussian(d: number, seed: number): { mean: Float64Array; cov: Float64Array } {
  const rng = new Rng(seed);
  const mean = Float64Array.from({ length: d }, (_, j) => 4 - 0.5 * j + 0.3 * rng.normal());
  const r = 6;
  const G = Float64Array.from({ length: d * r }, () => rng.normal() * 0.5);
  const cov = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let t = 0; t < r; t++) cov[i * d + j] += G[i * r + t] * G[j * r + t];
  for (let i = 0; i < d; i++) cov[i * d + i] += 0.2;
  return { mean, cov };
}

describe('class probabilities on the top-k classes', () => {
  it('agree with all-class QMC within the rest bound, which covers the mass outside', async () => {
    const d = 40;
    const { mean, cov } = randomGaussian(d, 3);
    const full = await classProbabilities(mean, cov, { points: 2048, seed: 9, trueClass: 12 });
    const top = await classProbabilities(mean, cov, { points: 2048, seed: 9, trueClass: 12, topK: 5 });
    const byMean = Array.from({ length: d }, (_, j) => j).sort((a, b) => mean[b] - mean[a]);
    expect(Array.from(top.classes!)).toEqual([...byMean.slice(0, 5), 12]);
    const rest = top.restBound!;
    expect(rest).toBeGreaterThan(0);
    expect(rest).toBeLessThan(1);
    let outside = 0;
    const inT = new Set(Array.from(top.classes!));
    for (let j = 0; j < d; j++) {
      if (!inT.has(j)) {
        expect(top.probabilities[j]).toBe(0);
        outside += full.probabilities[j];
        continue;
      }
      const se = Math.hypot(full.stdErr[j], top.stdErr[j]) + 1e-3;
      expect(top.probabilities[j]).toBeGreaterThan(full.probabilities[j] - 5 * se);
      expect(top.probabilities[j]).toBeLessThan(full.probabilities[j] + rest + 5 * se);
    }
    expect(rest).toBeGreaterThan(outside - 5 * full.stdErr.reduce((a, v) => Math.max(a, v), 0));
    expect(top.misclassification!.probability).toBeCloseTo(1 - top.probabilities[12], 12);
  });

  it('the rest bound is the exact P(y_j >= y_t) for one class outside', () => {
    // y_0 ~ N(2, 1), y_1 ~ N(1.5, 1), y_2 ~ N(0, 2), cov(y_0, y_2) = 0.5: P(y_2 >= y_0) = Phi(-2 / sqrt(1 + 2 - 1))
    const mean = Float64Array.from([2, 1.5, 0]);
    const cov = Float64Array.from([1, 0, 0.5, 0, 1, 0, 0.5, 0, 2]);
    const { classes, rest } = topClasses(mean, cov, 3, 2);
    expect(Array.from(classes)).toEqual([0, 1]);
    expect(rest).toBeCloseTo(Phi(-2 / Math.sqrt(2)), 14);
  });
});
