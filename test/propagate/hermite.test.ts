/**
 * The Hermite rows of a kinked op (src/propagate/rules/unit.ts, factor.ts probeOf): with K columns
 * from P probes, more than P / 2 of them sharing probes, the rows' covariance between two units
 * must still be an unbiased sketch of the Mehler terms of orders 2 and 3,
 * E f''(x_1) E f''(x_2) S_12^2 / 2 + E f'''(x_1) E f'''(x_2) S_12^3 / 6, added to the slope term
 * E f'(x_1) E f'(x_2) S_12 that the factor carries. Checked on a Relu of two correlated units
 * against that sum computed from the closed-form derivatives, averaged over 400 independent probe
 * draws (tolerance 4.5 standard errors of the average plus 2% of the Hermite part, for the per-unit
 * rescaling of the rows, a ratio estimator).
 */
import { describe, expect, it } from 'vitest';
import { applyUnitRule } from '../../src/propagate/index.js';
import { maxHermiteColumns, probeOf } from '../../src/propagate/rules/factor.js';
import { RELU, piecewiseLinearMoments } from '../../src/moments/piecewise.js';
import { Rng } from '../../src/moments/montecarlo.js';

describe('Hermite columns from shared probes', () => {
  it('probeOf gives distinct pairs and distinct triples for every column up to maxHermiteColumns', () => {
    for (const P of [16, 32, 64]) {
      const K = maxHermiteColumns(P);
      expect(K).toBeGreaterThan(P / 2);
      const pairs = new Set<string>();
      const triples = new Set<string>();
      for (let c = 0; c < K; c++) {
        const [a, b, e] = [0, 1, 2].map((t) => probeOf(c, t, P));
        expect(a).not.toBe(b);
        expect(e).not.toBe(a);
        expect(e).not.toBe(b);
        pairs.add([a, b].sort((x, y) => x - y).join());
        triples.add([a, b, e].sort((x, y) => x - y).join());
      }
      expect(pairs.size).toBe(K);
      expect(triples.size).toBe(K);
    }
  });

  it('Relu of two correlated units, K = 64 columns from 32 probes: the rows carry the Mehler terms of orders 1-3', () => {
    const m = [0.3, -0.2];
    // S = [[1, 0.6], [0.6, 1.5]] = L L^T
    const L = [
      [1, 0],
      [0.6, Math.sqrt(1.5 - 0.36)],
    ];
    const S12 = 0.6;
    const s = [1, Math.sqrt(1.5)];
    const g = m.map((mi, i) => piecewiseLinearMoments(RELU, mi, s[i]));
    const hermite = (g[0].curvature * g[1].curvature * S12 ** 2) / 2 + (g[0].third * g[1].third * S12 ** 3) / 6;
    const expected = g[0].slope * g[1].slope * S12 + hermite;
    const P = 32;
    const K = 64;
    const rng = new Rng(2026);
    const draws = 400;
    const got: number[] = [];
    for (let t = 0; t < draws; t++) {
      const F = new Float32Array((P + 2) * 2);
      for (let d = 0; d < P; d++) {
        const z0 = rng.normal();
        const z1 = rng.normal();
        F[d * 2] = L[0][0] * z0;
        F[d * 2 + 1] = L[1][0] * z0 + L[1][1] * z1;
      }
      // the covariance rows: L^T, so that F F^T over them is S
      F[P * 2] = L[0][0];
      F[P * 2 + 1] = L[1][0];
      F[(P + 1) * 2] = 0;
      F[(P + 1) * 2 + 1] = L[1][1];
      const y = applyUnitRule(
        (_i, mi, si) => piecewiseLinearMoments(RELU, mi, si),
        { m: Float64Array.from(m), F, probes: P, k: 2, r: new Float64Array(2) },
        3,
        K,
      );
      expect(y.k).toBe(2 + K);
      let c = 0;
      for (let d = P; d < P + y.k; d++) c += y.F[d * 2] * y.F[d * 2 + 1];
      got.push(c);
    }
    const mean = got.reduce((a, b) => a + b, 0) / draws;
    const se = Math.sqrt(got.reduce((a, b) => a + (b - mean) ** 2, 0) / (draws - 1) / draws);
    expect(Math.abs(hermite)).toBeGreaterThan(0.01);
    expect(Math.abs(mean - expected)).toBeLessThan(4.5 * se + 0.02 * Math.abs(hermite));
  });
});
