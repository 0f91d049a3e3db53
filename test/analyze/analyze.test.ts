/**
 * analyze end to end on (Affine, ReLU, Affine) nets, where the two-stage surrogate is the network
 * itself: the analytic moments must equal the moments engine on the TRUE A, c1, B, c2 read from the
 * initializers (independent of the JVP machinery), and Monte Carlo through the real model
 * (10^6 samples) within 4 standard errors.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Analyzer, type AnalyzeOptions } from '../../src/analyze.js';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { toFloat64 } from '../../src/onnx/tensor.js';
import { networkMoments, type NoiseCovariance } from '../../src/moments/network.js';
import { monteCarloMoments } from '../../src/moments/montecarlo.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo } from '../../src/onnx/proto.js';
import { Rng } from '../../src/synthetic/index.js';

const ROOT = join(import.meta.dirname, '..', '..');

interface TrueNet {
  A: Float64Array; // p x n
  c1: Float64Array;
  B: Float64Array; // d x p
  c2: Float64Array;
  D?: Float64Array; // d x n
  n: number;
  p: number;
  d: number;
}

/** A (Gemm transB=1, Relu, Gemm transB=1) model's true matrices from its initializers. */
function trueNet(file: string): TrueNet {
  const g = loadModel(file).graph;
  const [gemm0, , gemm1] = g.nodes;
  const W0 = g.initializers.get(gemm0.inputs[1])!;
  const W1 = g.initializers.get(gemm1.inputs[1])!;
  return {
    A: toFloat64(W0),
    c1: toFloat64(g.initializers.get(gemm0.inputs[2])!),
    B: toFloat64(W1),
    c2: toFloat64(g.initializers.get(gemm1.inputs[2])!),
    n: W0.dims[1],
    p: W0.dims[0],
    d: W1.dims[0],
  };
}

/** x [N,n] -> Gemm A -> Relu -> Gemm B ; + Gemm D(x): g = B relu(A x + c1) + D x + c2 (a skip path). */
function skipNetFile(n: number, p: number, d: number, seed: number): { file: string; net: TrueNet } {
  const r = new Rng(seed);
  const A = r.normals(p * n, 1 / Math.sqrt(n));
  const c1 = r.normals(p, 0.3);
  const B = r.normals(d * p, 1 / Math.sqrt(p));
  const D = r.normals(d * n, 0.5 / Math.sqrt(n));
  const c2 = r.normals(d, 0.2);
  const f32 = (a: ArrayLike<number>) => Float64Array.from(Float32Array.from(a));
  const graph = {
    name: 'skip',
    node: [
      makeNode('Gemm', ['x', 'A', 'c1'], ['z'], { attributes: { transB: 1 } }),
      makeNode('Relu', ['z'], ['y']),
      makeNode('Gemm', ['y', 'B', 'c2'], ['top'], { attributes: { transB: 1 } }),
      makeNode('MatMul', ['x', 'Dt'], ['skip']),
      makeNode('Add', ['top', 'skip'], ['g']),
    ],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', n])],
    output: [makeValueInfo('g', DataType.FLOAT, ['N', d])],
    initializer: [
      makeTensor('A', DataType.FLOAT, [p, n], A),
      makeTensor('c1', DataType.FLOAT, [p], c1),
      makeTensor('B', DataType.FLOAT, [d, p], B),
      makeTensor('c2', DataType.FLOAT, [d], c2),
      makeTensor(
        'Dt',
        DataType.FLOAT,
        [n, d],
        Array.from({ length: n * d }, (_, k) => D[(k % d) * n + Math.floor(k / d)]),
      ),
    ],
  };
  const dir = mkdtempSync(join(tmpdir(), 'nm-skip-'));
  const file = join(dir, 'skip.onnx');
  writeFileSync(file, encodeModel(makeModel(graph, { opset: 13 })));
  return { file, net: { A: f32(A), c1: f32(c1), B: f32(B), c2: f32(c2), D: f32(D), n, p, d } };
}

/** Moments of the true network by the moments engine (no JVPs, no ONNX). */
async function reference(net: TrueNet, mu: Float64Array, noise: NoiseCovariance) {
  const m = new Float64Array(net.p);
  for (let u = 0; u < net.p; u++) {
    let s = net.c1[u];
    for (let i = 0; i < net.n; i++) s += net.A[u * net.n + i] * mu[i];
    m[u] = s;
  }
  return networkMoments(
    {
      A: { data: net.A, rows: net.p, cols: net.n },
      B: { data: net.B, rows: net.d, cols: net.p },
      D: net.D ? { data: net.D, rows: net.d, cols: net.n } : undefined,
      m,
      c2: net.c2,
      mu: net.D ? mu : undefined,
    },
    noise,
  );
}

function randomCov(n: number, r: Rng, scale: number): Float64Array {
  const L = r.normals(n * n, scale / Math.sqrt(n));
  const C = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += L[i * n + k] * L[j * n + k];
      C[i * n + j] = s;
    }
  return C;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, sd: ArrayLike<number>, what: string) {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const tol = 1e-5 * (Math.abs(expected[i]) + Math.sqrt(Math.max(sd[i], 0)));
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) throw new Error(`${what}[${i}]: ${actual[i]} vs ${expected[i]} (tolerance ${tol})`);
  }
}

type Case = { name: string; noise: NoiseCovariance; options: AnalyzeOptions };

function cases(n: number, r: Rng): Case[] {
  const variance = Float64Array.from({ length: n }, () => 0.2 + r.float());
  const cov = randomCov(n, r, 0.8);
  return [
    { name: 'isotropic', noise: { kind: 'isotropic', sigma: 0.7 }, options: { noise: { kind: 'isotropic', sigma: 0.7 } } },
    { name: 'diagonal', noise: { kind: 'diagonal', variance }, options: { noise: { kind: 'diagonal', variance } } },
    { name: 'full', noise: { kind: 'full', cov }, options: { noise: { kind: 'full', cov } } },
  ];
}

async function checkNet(file: string, net: TrueNet, seed: number, mcCase: string) {
  const r = new Rng(seed);
  const model = loadModel(file);
  for (const c of cases(net.n, r)) {
    const x = Float32Array.from(r.normals(net.n, 1));
    const noiseMean = Float64Array.from(r.normals(net.n, 0.3));
    for (const at of ['mean', 'input'] as const) {
      // the two-stage surrogate is the network itself here (propagate's tests are in method.test.ts)
      const analyzer = await Analyzer.create(model, { ...c.options, noiseMean, at, method: 'two-stage' });
      try {
        const res = await analyzer.analyzeInput(x, 0);
        const mu = Float64Array.from(x, (v, i) => v + noiseMean[i]);
        const ref = await reference(net, mu, c.noise);
        const varRef = ref.variance!;
        expectClose(res.mean, ref.mean, varRef, `${c.name}/${at} mean`);
        expectClose(res.variance!, varRef, varRef, `${c.name}/${at} variance`);
        expectClose(res.variancePaper!, ref.variancePaper!, varRef, `${c.name}/${at} paper variance`);
        const cov = res.moments.covariance!;
        for (let i = 0; i < net.d; i++) {
          expectClose(
            cov.subarray(i * net.d, (i + 1) * net.d),
            ref.covariance!.subarray(i * net.d, (i + 1) * net.d),
            Array.from({ length: net.d }, (_, j) => Math.sqrt(varRef[i] * varRef[j])),
            `${c.name}/${at} covariance row ${i}`,
          );
        }
        if (c.name === mcCase && at === 'mean') {
          // Monte Carlo through the real model, 10^6 samples: within 4 standard errors
          const mc = await monteCarloMoments((xs, b) => analyzer.linearizer.evaluate(xs, b), net.d, mu, c.noise, {
            samples: 1_000_000,
            batchSize: 50_000,
            seed: 7,
          });
          for (let i = 0; i < net.d; i++) {
            expect(Math.abs(res.mean[i] - mc.mean[i])).toBeLessThanOrEqual(4 * mc.meanStdErr[i] + 1e-6 * Math.abs(mc.mean[i]));
            expect(Math.abs(res.variance![i] - mc.variance[i])).toBeLessThanOrEqual(4 * mc.varianceStdErr[i] + 1e-5 * mc.variance[i]);
          }
        }
      } finally {
        await analyzer.release();
      }
    }
  }
}

describe('analyze on (Affine, ReLU, Affine) nets', () => {
  it('fixtures/affine-relu-affine.onnx: equals the moments engine on the true A, c1, B, c2, and Monte Carlo', async () => {
    const file = join(ROOT, 'fixtures', 'affine-relu-affine.onnx');
    await checkNet(file, trueNet(file), 11, 'full');
  });

  it('with a skip path across the cut (D x): equals the engine with D, and Monte Carlo', async () => {
    const { file, net } = skipNetFile(7, 9, 3, 5);
    await checkNet(file, net, 12, 'diagonal');
  });

  it('a window keeps the noise on the window only', async () => {
    // conv-2 has input [1, 20, 20]; sigma in a 3x4 window equals diagonal noise with zeros elsewhere
    const model = loadModel(join(ROOT, 'fixtures', 'conv-2.onnx'));
    const x = Float32Array.from(new Rng(3).normals(400, 1));
    const variance = new Float64Array(400);
    for (let i = 5; i < 8; i++) for (let j = 2; j < 6; j++) variance[i * 20 + j] = 0.25;
    const a = await Analyzer.create(model, { noise: { kind: 'isotropic', sigma: 0.5 }, window: { row: 5, col: 2, height: 3, width: 4 } });
    const b = await Analyzer.create(model, { noise: { kind: 'diagonal', variance } });
    try {
      const ra = await a.analyzeInput(x, 0);
      const rb = await b.analyzeInput(x, 0);
      expect(a.noise.support.length).toBe(12);
      expectClose(ra.mean, rb.mean, rb.variance!, 'mean');
      expectClose(ra.variance!, rb.variance!, rb.variance!, 'variance');
    } finally {
      await a.release();
      await b.release();
    }
  });

  it('a model read from bytes with batch fixed at 1 analyses like the dynamic one', async () => {
    const file = join(ROOT, 'fixtures', 'lenet.onnx');
    const dynamic = loadModel(file);
    const fixed = loadModel(join(ROOT, 'fixtures', 'lenet-batch1.onnx'));
    const x = new Float32Array(784).fill(-127.5);
    for (let i = 300; i < 500; i++) x[i] = 127.5;
    const results = [];
    for (const m of [dynamic, fixed]) {
      const an = await Analyzer.create(m, { noise: { kind: 'isotropic', sigma: 8 } });
      try {
        results.push(await an.analyzeInput(x, 0));
      } finally {
        await an.release();
      }
    }
    expectClose(results[1].mean, results[0].mean, results[0].variance!, 'mean');
    expectClose(results[1].variance!, results[0].variance!, results[0].variance!, 'variance');
    void loadModelBytes;
  });
});
