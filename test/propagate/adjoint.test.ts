/**
 * The output covariance by reverse passes (src/propagate/adjoint.ts):
 *  - each rule's recorded linear map pulled back satisfies <u, L v> = <L^T u, v> against the rule's
 *    own forward action on factor rows (unit-wise, MaxPool, Softmax);
 *  - on the (Affine, ReLU, Affine) fixture, the reverse covariance equals the surrogate's covariance
 *    computed here independently from the weights and 1-D numerical integration of the ReLU;
 *  - on a residual net, the factor's covariance converges to it as the residual rows (random signs)
 *    grow, and on LeNet it stays within the Monte Carlo bounds of the engine's other tests.
 */
import { describe, expect, it } from 'vitest';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { buildGraph, intInit, makeNode, randomInit, rng } from '../tangent/helpers.js';
import { attrInt, graphConstant } from '../../src/onnx/graph.js';
import { createPropagator } from '../../src/propagate/index.js';
import { pullBack, reverseOutputCovariance, type ReverseStep } from '../../src/propagate/adjoint.js';
import { OrtLinearAlgebra } from '../../src/runtime/linalg.js';
import { applyMaxPool, applySoftmax, applyUnitRule, type StepTape, type TensorMoments } from '../../src/propagate/rules/index.js';
import { piecewiseLinearMoments, RELU } from '../../src/moments/piecewise.js';
import { Rng } from '../../src/moments/montecarlo.js';

const fixture = (f: string) => new URL(`../../fixtures/${f}`, import.meta.url).pathname;

function randomMoments(size: number, rows: number, seed: number): TensorMoments {
  const rng = new Rng(seed);
  const m = new Float64Array(size).map(() => rng.normal());
  const F = new Float32Array(rows * size).map(() => 0.5 * rng.normal());
  const r = new Float64Array(size).map(() => 0.1 * Math.abs(rng.normal()));
  return { m, F, probes: 0, k: rows, r };
}

/** <u, L v> against <L^T u, v> for every factor row v, u random (u x outSize cotangent rows). */
function checkAdjoint(x: TensorMoments, y: TensorMoments, tape: StepTape): void {
  const inSize = x.m.length;
  const outSize = y.m.length;
  const rows = x.F.length / inSize;
  const rng = new Rng(7);
  const u = 3;
  const U = new Float64Array(u * outSize).map(() => rng.normal());
  const back = pullBack(tape, U, u, inSize, outSize);
  for (let a = 0; a < u; a++) {
    for (let d = 0; d < rows; d++) {
      let lhs = 0;
      let rhs = 0;
      let scale = 0;
      for (let o = 0; o < outSize; o++) {
        lhs += U[a * outSize + o] * y.F[d * outSize + o];
        scale += Math.abs(U[a * outSize + o] * y.F[d * outSize + o]);
      }
      for (let i = 0; i < inSize; i++) rhs += back[a * inSize + i] * x.F[d * inSize + i];
      // float32 rows: relative to the sum of magnitudes
      expect(Math.abs(lhs - rhs)).toBeLessThan(1e-5 * (scale + 1e-12));
    }
  }
}

describe('the rules recorded for the reverse pass are the transposes of what they did to the rows', () => {
  it("unit-wise (Relu): diag(E relu'(x))", () => {
    const x = randomMoments(50, 6, 1);
    const tape: StepTape = {};
    const y = applyUnitRule((_i, m, s) => piecewiseLinearMoments(RELU, m, s), x, 3, 0, 0, tape);
    expect(tape.slope).toBeDefined();
    checkAdjoint(x, y, tape);
  });
  it('MaxPool with a Relu floor: the window weights (2 x 2 windows, stride 2, over 6 x 6)', () => {
    const x = randomMoments(36, 5, 2);
    const windows: Int32Array[] = [];
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) windows.push(Int32Array.from([0, 1, 6, 7].map((o) => 12 * i + 2 * j + o)));
    const tape: StepTape = {};
    const y = applyMaxPool(windows, x, {}, 3, 0, 0, 0, tape);
    expect(tape.pool).toBeDefined();
    checkAdjoint(x, y, tape);
  });
  it('Softmax over slices of 3 (outer 2, inner 2): the expected Jacobian', () => {
    const x = randomMoments(12, 4, 3);
    const tape: StepTape = {};
    const y = applySoftmax(x, { outer: 2, D: 3, inner: 2 }, 0, tape);
    expect(tape.slices).toBeDefined();
    checkAdjoint(x, y, tape);
  });
});

/**
 * E g(x) for x ~ N(m, s^2), g zero below 0 and smooth above, by Simpson's rule over
 * [max(0, m - 12 s), m + 12 s] (independent of src/moments).
 */
function gaussianExpectation(g: (x: number) => number, m: number, s: number): number {
  const lo = Math.max(0, m - 12 * s);
  const hi = m + 12 * s;
  if (hi <= lo) return 0;
  const N = 20000;
  const h = (hi - lo) / N;
  let acc = 0;
  for (let k = 0; k <= N; k++) {
    const x = lo + k * h;
    const z = (x - m) / s;
    const w = k === 0 || k === N ? 1 : k % 2 === 1 ? 4 : 2;
    acc += w * g(x) * Math.exp(-0.5 * z * z);
  }
  return (acc * h) / 3 / (s * Math.sqrt(2 * Math.PI));
}

describe("affine-relu-affine: the reverse covariance is the surrogate's, computed independently", () => {
  it('W2 D W1 Sigma W1^T D W2^T + W2 diag(r) W2^T, D = diag(P(z > 0)), r = Var relu(z) - D^2 var z (relative 1e-5)', async () => {
    const model = loadModel(fixture('affine-relu-affine.onnx'));
    const g = model.graph;
    const gemm = g.nodes.filter((n) => n.opType === 'Gemm');
    // weights as out x in (PyTorch's transB = 1 layout, or transposed when transB = 0)
    const weights = gemm.map((n) => {
      const t = graphConstant(g, n.inputs[1])!;
      const [a, b] = t.dims;
      const W = new Float64Array(a * b);
      const transB = attrInt(n, 'transB', 0) === 1;
      const out = transB ? a : b;
      const inp = transB ? b : a;
      for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) W[o * inp + i] = Number(t.data[transB ? o * b + i : i * b + o]);
      const bias = Float64Array.from(graphConstant(g, n.inputs[2])!.data as Float32Array);
      return { W, out, inp, bias };
    });
    const [L1, L2] = weights;
    const n = L1.inp;
    const mu = new Float64Array(n).map((_, i) => Math.cos(1.3 * i));
    const sigma = 0.8;
    const prop = await createPropagator(model, { hermiteColumns: 0 });
    const p = await prop.moments(mu, { kind: 'isotropic', sigma });
    await prop.release();
    expect(p.reverseUnits).toBe(L2.out);
    // pre-activation z = W1 mu + b1, Cov z = sigma^2 W1 W1^T (float32 weights, float64 here)
    const h = L1.out;
    const a = new Float64Array(h);
    const S = new Float64Array(h * h);
    for (let j = 0; j < h; j++) {
      a[j] = L1.bias[j];
      for (let i = 0; i < n; i++) a[j] += L1.W[j * n + i] * mu[i];
      for (let l = 0; l < h; l++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += L1.W[j * n + i] * L1.W[l * n + i];
        S[j * h + l] = sigma * sigma * s;
      }
    }
    const slope = new Float64Array(h);
    const r = new Float64Array(h);
    for (let j = 0; j < h; j++) {
      const s = Math.sqrt(S[j * h + j]);
      slope[j] = gaussianExpectation(() => 1, a[j], s);
      const m1 = gaussianExpectation((x) => Math.max(0, x), a[j], s);
      const m2 = gaussianExpectation((x) => Math.max(0, x) ** 2, a[j], s);
      r[j] = m2 - m1 * m1 - slope[j] ** 2 * S[j * h + j];
    }
    const d = L2.out;
    for (let o = 0; o < d; o++)
      for (let q = 0; q < d; q++) {
        let c = 0;
        for (let j = 0; j < h; j++) {
          const wo = L2.W[o * h + j] * slope[j];
          for (let l = 0; l < h; l++) c += wo * S[j * h + l] * slope[l] * L2.W[q * h + l];
          c += L2.W[o * h + j] * r[j] * L2.W[q * h + j];
        }
        const tol = 1e-5 * Math.sqrt(p.covariance[o * d + o] * p.covariance[q * d + q]);
        expect(Math.abs(p.covariance[o * d + q] - c)).toBeLessThan(tol);
      }
  });
});

describe('a rule step with Hermite rows wider than one block of the GEMM', () => {
  it("slope^2 sigma^2 + the Hermite rows' Gram + r, in TypeScript and through onnxruntime (40,000 units, 3 blocks; relative 1e-12)", async () => {
    const size = 40_000;
    const K = 5;
    const rg = new Rng(11);
    const slope = new Float64Array(size).map(() => rg.double());
    const r = new Float64Array(size).map(() => 0.1 * rg.double());
    const hermite = new Float32Array(K * size).map(() => 0.3 * rg.normal());
    const tape: StepTape = { slope, r, hermite };
    const steps: ReverseStep[] = [{ kind: 'rule', input: 'x', output: 'y', inputSize: size, tape }];
    const units = [0, 16_383, 16_384, 39_999];
    const sigma = 0.7;
    const expected = units.map((i) =>
      units.map((j) => {
        let c = 0;
        for (let k = 0; k < K; k++) c += hermite[k * size + i] * hermite[k * size + j];
        return c + (i === j ? r[i] + sigma * sigma * slope[i] ** 2 : 0);
      }),
    );
    const noise = { kind: 'isotropic' as const, sigma };
    for (const linalg of [undefined, new OrtLinearAlgebra({ minFlops: 0 })]) {
      const cov = await reverseOutputCovariance(steps, 'x', size, 'y', size, units, noise, linalg);
      units.forEach((_, a) => units.forEach((_, b) => expect(Math.abs(cov[a * 4 + b] - expected[a][b])).toBeLessThan(1e-12 * (1 + Math.abs(expected[a][b])))));
      await linalg?.release();
    }
  });
});

describe("residual net (Conv, Relu, residual Add): the factor's covariance tends to the reverse one as its residual rows grow", () => {
  it('relative Frobenius distance: shrinks from 32 to 4,096 residual rows, and is below 2% at 4,096', async () => {
    const model = loadModel(fixture('residual.onnx'));
    const mu = new Float64Array(64).map((_, i) => Math.sin(0.7 * i));
    const noise = { kind: 'isotropic' as const, sigma: 0.5 };
    const run = async (opts: object) => {
      const prop = await createPropagator(model, { hermiteColumns: 0, ...opts });
      const p = await prop.moments(mu, noise);
      await prop.release();
      return p.covariance;
    };
    const exact = await run({});
    const dist = (c: Float64Array) => {
      let num = 0;
      let den = 0;
      for (let i = 0; i < c.length; i++) {
        num += (c[i] - exact[i]) ** 2;
        den += exact[i] ** 2;
      }
      return Math.sqrt(num / den);
    };
    const few = dist(await run({ outputCovariance: 'factor', residualRows: 32 }));
    const many = dist(await run({ outputCovariance: 'factor', residualRows: 4096 }));
    expect(many).toBeLessThan(0.02);
    expect(many).toBeLessThan(few);
  }, 60_000);
});

describe('a segment with an op that has no adjoint rule (Gather)', () => {
  it('falls back to the factor covariance, says so, and gives the same numbers as asking for it', async () => {
    const r = rng(5);
    const g = buildGraph({
      inputs: [['x', ['N', 6]]],
      outputs: ['y'],
      nodes: [
        makeNode('Gemm', ['x', 'w1', 'b1'], ['h'], { attributes: { transB: 1 } }),
        makeNode('Relu', ['h'], ['a']),
        makeNode('Gather', ['a', 'idx'], ['s'], { attributes: { axis: 1 } }),
        makeNode('Gemm', ['s', 'w2'], ['y'], { attributes: { transB: 1 } }),
      ],
      initializers: [randomInit(r, 'w1', [8, 6]), randomInit(r, 'b1', [8]), intInit('idx', [0, 2, 4, 6]), randomInit(r, 'w2', [3, 4])],
    });
    const model = loadModelBytes(g.toBytes(), 'gather.onnx');
    const mu = new Float64Array(6).map((_, i) => 0.3 * i - 0.7);
    const noise = { kind: 'isotropic' as const, sigma: 0.6 };
    const run = async (opts: object) => {
      const prop = await createPropagator(model, opts);
      const p = await prop.moments(mu, noise);
      await prop.release();
      return p;
    };
    const fallback = await run({});
    const factor = await run({ outputCovariance: 'factor' });
    expect(fallback.reverseUnits).toBe(0);
    expect(Array.from(fallback.covariance)).toEqual(Array.from(factor.covariance));
    expect(fallback.variance.every((v) => v > 0)).toBe(true);
  });
});
