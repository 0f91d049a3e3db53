/**
 * Splits at LeakyRelu, PRelu and Clip (ReLU6): the split op's pieces become ReLU units
 * (src/linearize/pieces.ts), two kinks for Clip, negative slopes for LeakyRelu with alpha < 0 and a
 * PRelu whose per-channel slopes have both signs.
 *
 * Independent check: the nets are (Gemm, kinked op, Gemm), for which the two-stage surrogate is the
 * network itself, so its exact mean and variance must equal the moments of the real function under
 * the noise. Monte Carlo computes them here in float64 from the weights (200,000 samples): means
 * within 4 standard errors, variances within 4 standard errors of the sample variance
 * (se(var) ~ var sqrt(2 / S)). Also: the ReLU identity of pieces.ts pointwise, and inspect lists the
 * ops as split points.
 */
import { describe, expect, it } from 'vitest';
import { analyze } from '../../src/analyze.js';
import { loadModelBytes } from '../../src/onnx/load.js';
import { inspectGraph } from '../../src/onnx/describe.js';
import { makeNode } from '../../src/onnx/proto.js';
import { applyPieces, splitPieces } from '../../src/onnx/ops/splitPieces.js';
import { reluTerms } from '../../src/linearize/pieces.js';
import { buildGraph, floatInit, intInit, rng } from '../tangent/helpers.js';

const N_IN = 5;
const C = 3; // channels of the kinked layer (PRelu slope per channel)
const W = 4; // units per channel
const H = C * W;
const D = 3;

type Kinked = 'Clip' | 'LeakyRelu' | 'PRelu';

function net(kinked: Kinked, seed: number) {
  const r = rng(seed);
  const W1 = r.normals(H * N_IN, 0.6);
  const b1 = r.normals(H, 1.5);
  const W2 = r.normals(D * H, 0.5);
  const b2 = r.normals(D, 0.2);
  const slope = Float32Array.from([0.3, -0.4, 0.8]); // per channel, one negative
  const act =
    kinked === 'Clip'
      ? makeNode('Clip', ['z1r', 'lo', 'hi'], ['a1r'])
      : kinked === 'LeakyRelu'
        ? makeNode('LeakyRelu', ['z1r'], ['a1r'], { attributes: { alpha: -0.25 } })
        : makeNode('PRelu', ['z1r', 'slope'], ['a1r']);
  const graph = buildGraph({
    inputs: [['x', ['N', N_IN]]],
    outputs: ['y'],
    nodes: [
      makeNode('Gemm', ['x', 'W1', 'b1'], ['z1'], { attributes: { transB: 1 } }),
      makeNode('Reshape', ['z1', 'shape3'], ['z1r']),
      act,
      makeNode('Reshape', ['a1r', 'shape2'], ['a1']),
      makeNode('Gemm', ['a1', 'W2', 'b2'], ['y'], { attributes: { transB: 1 } }),
    ],
    initializers: [
      floatInit('W1', [H, N_IN], W1),
      floatInit('b1', [H], b1),
      floatInit('W2', [D, H], W2),
      floatInit('b2', [D], b2),
      floatInit('lo', [], [0]),
      floatInit('hi', [], [1.5]),
      floatInit('slope', [C, 1], slope),
      intInit('shape3', [-1, C, W]),
      intInit('shape2', [-1, H]),
    ],
  });
  const f = (u: number, z: number): number => {
    if (kinked === 'Clip') return Math.min(1.5, Math.max(0, z));
    if (kinked === 'LeakyRelu') return z > 0 ? z : -0.25 * z;
    const s = slope[Math.floor(u / W)];
    return z > 0 ? z : s * z;
  };
  const f64 = (a: Float32Array) => Float64Array.from(a);
  return { graph, W1: f64(W1), b1: f64(b1), W2: f64(W2), b2: f64(b2), f };
}

describe('two-stage split at LeakyRelu, PRelu and Clip', () => {
  it('the ReLU terms reproduce f pointwise (two kinks, negative slopes)', () => {
    for (const kinked of ['Clip', 'LeakyRelu', 'PRelu'] as const) {
      const { graph, f } = net(kinked, 4);
      const node = graph.nodes.find((n) => n.opType === kinked)!;
      const pieces = splitPieces(graph, node, [C, W]);
      const terms = reluTerms(pieces);
      expect(terms.length).toBe(2);
      const r = rng(8);
      for (let t = 0; t < 200; t++) {
        const u = t % H;
        const z = r.normal() * 3;
        const viaTerms = pieces.atFirstKink + terms.reduce((a, term) => a + term.w[u] * Math.max(0, term.sign * (z - term.t)), 0);
        expect(viaTerms).toBeCloseTo(f(u, z), 12);
        expect(applyPieces(pieces, u, z)).toBeCloseTo(f(u, z), 12);
      }
    }
  });

  for (const kinked of ['Clip', 'LeakyRelu', 'PRelu'] as const) {
    it(`${kinked}: inspect lists it, and the surrogate's exact moments equal Monte Carlo of the net`, async () => {
      const { graph, W1, b1, W2, b2, f } = net(kinked, 11);
      const model = loadModelBytes(graph.toBytes(), `${kinked}.onnx`);
      const report = await inspectGraph(model.graph, `${kinked}.onnx`);
      expect(report.relus.map((s) => [s.op, s.width])).toEqual([[kinked, H]]);

      const r = rng(5);
      const x = Float32Array.from(r.normals(N_IN, 1));
      const sigma = 0.8;
      const res = await analyze(model, x, 1, { method: 'two-stage', relu: 0, noise: { kind: 'isotropic', sigma }, probabilitySamples: 0 });
      expect(res.split?.node).toBe(graph.nodes.find((n) => n.opType === kinked)!.name);
      const out = res.results[0];
      expect(out.linearization.expectedFlips.find((l) => l.isSplit)?.op).toBe(kinked);

      const S = 200_000;
      const mc = rng(77);
      const sum = new Float64Array(D);
      const sum2 = new Float64Array(D);
      const a = new Float64Array(H);
      for (let t = 0; t < S; t++) {
        const e = mc.normals(N_IN, sigma);
        for (let u = 0; u < H; u++) {
          let z = b1[u];
          for (let j = 0; j < N_IN; j++) z += W1[u * N_IN + j] * (x[j] + e[j]);
          a[u] = f(u, z);
        }
        for (let i = 0; i < D; i++) {
          let y = b2[i];
          for (let u = 0; u < H; u++) y += W2[i * H + u] * a[u];
          sum[i] += y;
          sum2[i] += y * y;
        }
      }
      for (let i = 0; i < D; i++) {
        const m = sum[i] / S;
        const v = sum2[i] / S - m * m;
        const seMean = Math.sqrt(v / S);
        const seVar = v * Math.sqrt(2 / S);
        expect(Math.abs(out.mean[i] - m), `mean ${i}: ${out.mean[i]} vs MC ${m} +- ${seMean}`).toBeLessThan(4 * seMean);
        expect(Math.abs(out.variance![i] - v), `variance ${i}: ${out.variance![i]} vs MC ${v} +- ${seVar}`).toBeLessThan(4 * seVar);
      }
    }, 60_000);
  }
});
