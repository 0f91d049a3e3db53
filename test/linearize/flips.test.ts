/**
 * Expected state changes of the layers the surrogate holds fixed (Linearizer.linearize's `flips`):
 * for a unit-wise piecewise-linear op with kinks (ReLU, LeakyRelu and PRelu at 0, Clip at its min
 * and max) the expected number of units that leave their linear piece under the linearized noise,
 * sum_u P(z_u leaves the piece of z_u at the point) with z_u ~ N(m_u, s_u^2).
 *
 * Independent check: in these nets the kinked layer sits right after the first Gemm, so its input
 * z = W x + b is exactly affine in x and the linearized noise is the real one. Monte Carlo draws
 * x ~ N(mu, sigma^2 I), computes z in float64 here from the weights, and counts the units whose
 * piece differs from the piece at mu: the mean count must agree with the expected flips within 4
 * standard errors (20,000 samples). Also the split ReLU's own count (same formula, exact marginals).
 */
import { describe, expect, it } from 'vitest';
import { Linearizer, pieceChangeProbability } from '../../src/linearize/linearizer.js';
import { factorFromRows } from '../../src/noise.js';
import { loadModelBytes } from '../../src/onnx/load.js';
import { makeNode } from '../../src/onnx/proto.js';
import { buildGraph, floatInit, randomInit, rng } from '../tangent/helpers.js';

const N_IN = 8;
const H = 24;

function net(kinked: 'Clip13' | 'Clip9' | 'LeakyRelu' | 'PRelu', seed: number) {
  const r = rng(seed);
  const W1 = r.normals(H * N_IN, 0.5);
  const b1 = r.normals(H, 0.3);
  const act =
    kinked === 'Clip13'
      ? makeNode('Clip', ['z1', 'lo', 'hi'], ['a1'])
      : kinked === 'Clip9'
        ? makeNode('Clip', ['z1'], ['a1'], { attributes: { min: -0.4, max: 0.6 } })
        : kinked === 'LeakyRelu'
          ? makeNode('LeakyRelu', ['z1'], ['a1'], { attributes: { alpha: 0.1 } })
          : makeNode('PRelu', ['z1', 'slope'], ['a1']);
  const graph = buildGraph({
    opset: kinked === 'Clip9' ? 9 : 13,
    inputs: [['x', ['N', N_IN]]],
    outputs: ['y'],
    nodes: [
      makeNode('Gemm', ['x', 'W1', 'b1'], ['z1'], { attributes: { transB: 1 } }),
      act,
      makeNode('Gemm', ['a1', 'W2', 'b2'], ['z2'], { attributes: { transB: 1 } }),
      makeNode('Relu', ['z2'], ['a2']),
      makeNode('Gemm', ['a2', 'W3', 'b3'], ['y'], { attributes: { transB: 1 } }),
    ],
    initializers: [
      floatInit('W1', [H, N_IN], W1),
      floatInit('b1', [H], b1),
      floatInit('lo', [], [-0.4]),
      floatInit('hi', [], [0.6]),
      floatInit('slope', [H], r.normals(H, 0.2)),
      randomInit(r, 'W2', [12, H]),
      randomInit(r, 'b2', [12], 0.3),
      randomInit(r, 'W3', [3, 12]),
      randomInit(r, 'b3', [3], 0.1),
    ],
  });
  // float32 weights as onnxruntime sees them
  return { bytes: graph.toBytes(), W1: Float64Array.from(Float32Array.from(W1)), b1: Float64Array.from(Float32Array.from(b1)) };
}

function pieceOf(v: number, kinks: readonly number[]): number {
  let k = 0;
  while (k < kinks.length && v > kinks[k]) k++;
  return k;
}

describe('expected state changes of kinked layers vs Monte Carlo', () => {
  const cases: { kinked: 'Clip13' | 'Clip9' | 'LeakyRelu' | 'PRelu'; op: string; kinks: number[] }[] = [
    { kinked: 'Clip13', op: 'Clip', kinks: [-0.4, 0.6] },
    { kinked: 'Clip9', op: 'Clip', kinks: [-0.4, 0.6] },
    { kinked: 'LeakyRelu', op: 'LeakyRelu', kinks: [0] },
    { kinked: 'PRelu', op: 'PRelu', kinks: [0] },
  ];
  for (const c of cases) {
    it(`${c.kinked}: kinks at ${c.kinks.join(' and ')}`, async () => {
      const { bytes, W1, b1 } = net(c.kinked, 17);
      const model = loadModelBytes(bytes, `${c.kinked}.onnx`);
      const lin = await Linearizer.create(model, { relu: 1 }); // the Relu after the second Gemm (index 0 is the kinked layer under test)
      try {
        const r = rng(3);
        const mu = Float32Array.from(r.normals(N_IN, 1));
        const sigma = 0.35;
        const F = new Float64Array(N_IN * N_IN);
        for (let i = 0; i < N_IN; i++) F[i * N_IN + i] = sigma;
        const res = await lin.linearize(mu, factorFromRows(F, N_IN, N_IN));
        const layer = res.flips.find((f) => f.op === c.op);
        expect(layer, JSON.stringify(res.flips)).toBeDefined();
        expect(layer!.units).toBe(H);

        // Monte Carlo over the real noise
        const z0 = Float64Array.from(b1, (b, u) => b + W1.subarray(u * N_IN, (u + 1) * N_IN).reduce((a, w, j) => a + w * mu[j], 0));
        const S = 20000;
        const mc = rng(99);
        let sum = 0;
        let sum2 = 0;
        for (let t = 0; t < S; t++) {
          const e = mc.normals(N_IN, sigma);
          let changed = 0;
          for (let u = 0; u < H; u++) {
            let z = z0[u];
            for (let j = 0; j < N_IN; j++) z += W1[u * N_IN + j] * e[j];
            if (pieceOf(z, c.kinks) !== pieceOf(z0[u], c.kinks)) changed++;
          }
          sum += changed;
          sum2 += changed * changed;
        }
        const mean = sum / S;
        const se = Math.sqrt((sum2 / S - mean * mean) / S);
        expect(mean).toBeGreaterThan(0.5); // the noise does move some units across a kink
        expect(Math.abs(layer!.expectedFlips - mean), `expected ${layer!.expectedFlips}, Monte Carlo ${mean} +- ${se}`).toBeLessThan(4 * se);
      } finally {
        await lin.release();
      }
    });
  }

  it('pieceChangeProbability: ReLU sign flips, both tails of a Clip piece, s = 0', () => {
    // ReLU at 0: on at the point (v > 0), mean 1, sd 2: P(z <= 0) = Phi(-0.5)
    expect(pieceChangeProbability(1, 0.3, 2, [0])).toBeCloseTo(0.3085375387259869, 14);
    expect(pieceChangeProbability(1, -0.3, 2, [0])).toBeCloseTo(1 - 0.3085375387259869, 14);
    // Clip [-1, 1], point inside, mean 0, sd 1: P(|z| > 1) = 2 Phi(-1)
    expect(pieceChangeProbability(0, 0.2, 1, [-1, 1])).toBeCloseTo(2 * 0.15865525393145707, 14);
    // far tails keep their digits (no 1 - (1 - tiny))
    expect(pieceChangeProbability(0, 0, 1, [-40, 40])).toBe(0);
    expect(pieceChangeProbability(30, 31, 1, [0])).toBeGreaterThan(0);
    expect(pieceChangeProbability(30, 31, 1, [0])).toBeLessThan(1e-190);
    // no noise: 0 when the mean stays on the point's piece, 1 when it does not
    expect(pieceChangeProbability(0.5, 0.2, 0, [-1, 1])).toBe(0);
    expect(pieceChangeProbability(1.5, 0.2, 0, [-1, 1])).toBe(1);
    // a value on a kink belongs to the piece below (ReLU's v > 0 test)
    expect(pieceChangeProbability(0, 0, 0, [0])).toBe(0);
  });
});
