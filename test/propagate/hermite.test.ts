/**
 * The Hermite rows of a kinked op (src/propagate/rules/unit.ts, factor.ts probeOf): with K columns
 * from P probes, more than P / 2 of them sharing probes, the rows' covariance between two units
 * must still be an unbiased sketch of the Mehler terms of orders 2 and 3,
 * E f''(x_1) E f''(x_2) S_12^2 / 2 + E f'''(x_1) E f'''(x_2) S_12^3 / 6, added to the slope term
 * E f'(x_1) E f'(x_2) S_12 that the factor carries. Checked on a Relu of two correlated units
 * against that sum computed from the closed-form derivatives, averaged over 400 independent probe
 * draws (tolerance 4.5 standard errors of the average plus 2% of the Hermite part, for the per-unit
 * rescaling of the rows, a ratio estimator). And when the reverse pass asks a rule to record more
 * Hermite columns than it carries (rules/factor.ts carryHermiteRows): the recorded columns are that
 * same unbiased sketch, and the carried rows plus the carried residual keep each unit's exact
 * variance (unit-wise and MaxPool rules).
 */
import { describe, expect, it } from 'vitest';
import { applyUnitRule } from '../../src/propagate/index.js';
import { applyMaxPool, type StepTape, type TensorMoments } from '../../src/propagate/rules/index.js';
import { maxHermiteColumns, probeOf } from '../../src/propagate/rules/factor.js';
import { RELU, piecewiseLinearMoments } from '../../src/moments/piecewise.js';
import { Rng } from '../../src/moments/montecarlo.js';

/** Two correlated units, S = L L^T = [[1, 0.6], [0.6, 1.5]]: P probe rows drawn from S, then the rows L^T. */
const L = [
  [1, 0],
  [0.6, Math.sqrt(1.5 - 0.36)],
];
function twoUnits(P: number, rng: Rng): Float32Array {
  const F = new Float32Array((P + 2) * 2);
  for (let d = 0; d < P; d++) {
    const z0 = rng.normal();
    const z1 = rng.normal();
    F[d * 2] = L[0][0] * z0;
    F[d * 2 + 1] = L[1][0] * z0 + L[1][1] * z1;
  }
  F[P * 2] = L[0][0];
  F[P * 2 + 1] = L[1][0];
  F[(P + 1) * 2] = 0;
  F[(P + 1) * 2 + 1] = L[1][1];
  return F;
}

/** Per unit, the squared norm of rows first..first+count-1 of a [rows, size] factor. */
function rowNorms(F: Float32Array, first: number, count: number, size: number): number[] {
  const q = new Array<number>(size).fill(0);
  for (let d = first; d < first + count; d++) for (let i = 0; i < size; i++) q[i] += F[d * size + i] ** 2;
  return q;
}

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
      // the covariance rows: L^T, so that F F^T over them is S
      const F = twoUnits(P, rng);
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

  it('a tape asking for 64 columns while 4 are carried: the 64 recorded sketch the Mehler terms; the 4 carried keep each variance', () => {
    const m = [0.3, -0.2];
    const s = [1, Math.sqrt(1.5)];
    const g = m.map((mi, i) => piecewiseLinearMoments(RELU, mi, s[i]));
    const hermite = (g[0].curvature * g[1].curvature * 0.6 ** 2) / 2 + (g[0].third * g[1].third * 0.6 ** 3) / 6;
    const [P, K, Kt] = [32, 4, 64];
    const rng = new Rng(2027);
    const draws = 400;
    const got: number[] = [];
    for (let t = 0; t < draws; t++) {
      const x: TensorMoments = { m: Float64Array.from(m), F: twoUnits(P, rng), probes: P, k: 2, r: new Float64Array(2) };
      const tape: StepTape = { hermiteColumns: Kt };
      const y = applyUnitRule((_i, mi, si) => piecewiseLinearMoments(RELU, mi, si), x, 3, K, 0, tape);
      expect(y.k).toBe(2 + K);
      expect(tape.hermite!.length).toBe(Kt * 2);
      let c = 0;
      for (let d = 0; d < Kt; d++) c += tape.hermite![d * 2] * tape.hermite![d * 2 + 1];
      got.push(c);
      // each unit's exact variance: slope rows + carried Hermite rows + carried residual (float32 rows)
      const linear = rowNorms(y.F, P, 2, 2);
      const carried = rowNorms(y.F, P + 2, K, 2);
      for (let i = 0; i < 2; i++) {
        expect(linear[i] + carried[i] + y.r[i]).toBeCloseTo(g[i].variance, 6);
        expect(carried[i]).toBeGreaterThan(0);
      }
    }
    const mean = got.reduce((a, b) => a + b, 0) / draws;
    const se = Math.sqrt(got.reduce((a, b) => a + (b - mean) ** 2, 0) / (draws - 1) / draws);
    expect(Math.abs(mean - hermite)).toBeLessThan(4.5 * se + 0.02 * Math.abs(hermite));
    // none carried: the recorded columns' variance stays in the carried residual
    const x: TensorMoments = { m: Float64Array.from(m), F: twoUnits(P, rng), probes: P, k: 2, r: new Float64Array(2) };
    const tape: StepTape = { hermiteColumns: Kt };
    const y = applyUnitRule((_i, mi, si) => piecewiseLinearMoments(RELU, mi, si), x, 3, 0, 0, tape);
    expect(y.k).toBe(2);
    expect(tape.hermite!.length).toBe(Kt * 2);
    const linear = rowNorms(y.F, P, 2, 2);
    for (let i = 0; i < 2; i++) expect(linear[i] + y.r[i]).toBeCloseTo(g[i].variance, 6);
  });

  it('MaxPool+Relu (order 2), a tape asking for 64 columns while 8 are carried: the same pooled rows, the same variance per window', () => {
    // 2 x 2 windows, stride 2, over a 4 x 4 map; 24 probe rows and 6 covariance rows
    const rng = new Rng(5);
    const P = 24;
    const size = 16;
    const rows = P + 6;
    const x: TensorMoments = {
      m: new Float64Array(size).map(() => 0.3 * rng.normal()),
      F: new Float32Array(rows * size).map(() => 0.5 * rng.normal()),
      probes: P,
      k: 6,
      r: new Float64Array(size).map(() => 0.05 * Math.abs(rng.normal())),
    };
    const windows: Int32Array[] = [];
    for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) windows.push(Int32Array.from([0, 1, 4, 5].map((o) => 8 * i + 2 * j + o)));
    const plainTape: StepTape = {};
    // order 2 alone: the rows of one order are scaled to each window's exact Hermite variance (two
    // orders' rows are added after, exact only in expectation)
    const plain = applyMaxPool(windows, x, {}, 2, 0, 8, 0, plainTape);
    const tape: StepTape = { hermiteColumns: 64 };
    const y = applyMaxPool(windows, x, {}, 2, 0, 8, 0, tape);
    expect(y.k).toBe(plain.k);
    expect(Array.from(y.m)).toEqual(Array.from(plain.m));
    expect(Array.from(y.F.subarray(0, rows * 4))).toEqual(Array.from(plain.F.subarray(0, rows * 4)));
    expect(tape.hermite!.length).toBe(64 * 4);
    const carried = rowNorms(y.F, rows, 8, 4);
    const recorded = rowNorms(tape.hermite!, 0, 64, 4);
    const plainCarried = rowNorms(plain.F, rows, 8, 4);
    for (let o = 0; o < 4; o++) {
      expect(recorded[o]).toBeGreaterThan(0);
      expect(carried[o] + y.r[o]).toBeCloseTo(recorded[o] + tape.r![o], 6);
      expect(carried[o] + y.r[o]).toBeCloseTo(plainCarried[o] + plain.r[o], 6);
    }
  });
});
