/**
 * The propagation engine on real models: the affine rules (mean, F and the squared-weights
 * variance model) against the exact Jacobian of the op run by onnxruntime; LeNet against Monte
 * Carlo through the real model, next to two-stage linearization; refusal of ops without a rule.
 */
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/onnx/load.js';
import { createJacobianEngine } from '../../src/linearize/jacobian.js';
import { probeShapes } from '../../src/linearize/shapes.js';
import { createPropagator, propagationSupport } from '../../src/propagate/index.js';
import { readNpy, npyToFloat32 } from '../../src/data/npy.js';
import { monteCarloMoments } from '../../src/moments/montecarlo.js';
import { Analyzer } from '../../src/analyze.js';
import { NetmomentsError } from '../../src/errors.js';
import { ModelEvaluator } from '../../src/linearize/evaluator.js';
import { Phi, phi } from '../../src/moments/special.js';

const fixture = (f: string) => new URL(`../../fixtures/${f}`, import.meta.url).pathname;

describe('affine segments vs the Jacobian of the real op (relative 1e-4: float32 runs)', () => {
  // Covariance at a ReLU output C = F F^T + diag(r) (from the propagator), pushed through the
  // affine part after it: the propagated variance must be diag(L C L^T) with L the part's exact Jacobian.
  for (const [from, to] of [
    ['relu0', 'bn1'],
    ['relu1', 'output'],
  ]) {
    it(`batchnorm-avgpool: ${from} -> ${to} (AveragePool, Conv, BatchNormalization / GlobalAveragePool, Flatten, Gemm)`, async () => {
      const model = loadModel(fixture('batchnorm-avgpool.onnx'));
      const n = 3 * 12 * 12;
      const mu = new Float64Array(n).map((_, i) => Math.sin(i));
      const noise = { kind: 'isotropic' as const, sigma: 0.7 };
      // the forward rule under test: the output covariance from the factor (the reverse pass has its own tests, adjoint.test.ts)
      const atFrom = await createPropagator(model, { output: from, outputCovariance: 'factor' });
      const atTo = await createPropagator(model, { output: to, outputCovariance: 'factor' });
      const a = await atFrom.moments(mu, noise);
      const b = await atTo.moments(mu, noise);
      await atFrom.release();
      await atTo.release();
      const part = model.graph.clone();
      part.inputs = [{ name: from, elemType: 1, shape: ['N', ...(await probeShapes(model.graph))!.get(from)!.slice(1)] }];
      part.outputs = [{ name: to, elemType: 1 }];
      part.nodes = part.nodes.slice(part.nodes.findIndex((n) => n.outputs.includes(from)) + 1);
      part.prune();
      const J = await createJacobianEngine(part, { mode: 'jvp' });
      const { J: L, rows, cols, outputValue } = await J.jacobian(Float32Array.from(a.mean));
      await J.release();
      expect(cols).toBe(a.mean.length);
      for (let i = 0; i < rows; i++) {
        // L C L^T on the diagonal
        let v = 0;
        for (let p = 0; p < cols; p++) {
          const lp = L[i * cols + p];
          if (lp === 0) continue;
          for (let q = 0; q < cols; q++) v += lp * a.covariance[p * cols + q] * L[i * cols + q];
        }
        expect(Math.abs(b.variance[i] - v) / v).toBeLessThan(1e-4);
        expect(Math.abs(b.mean[i] - outputValue[i])).toBeLessThan(1e-4 * (1 + Math.abs(outputValue[i])));
      }
    }, 60_000);
  }
});

describe('a sketched input: exact marginal variances after the first affine segment (relative 1e-4: float32 runs)', () => {
  // With diagonal Sigma, the segment y = L x + b has Var(y_i) = sum_j L_ij^2 Sigma_jj exactly (L from
  // the real op's Jacobian here); a rank-16 sketch's own |(L F)_i|^2 is 35% off per unit (sqrt(2/16)),
  // so this fails without the rescaling. The Relu after it then has the closed-form mean of
  // relu(N(m_i, v_i)) = m Phi(m/s) + s phi(m/s) (Theorem 1) at that exact variance.
  const model = loadModel(fixture('batchnorm-avgpool.onnx'));
  const n = 3 * 12 * 12;
  const mu = new Float64Array(n).map((_, i) => Math.sin(i));
  const diagonal = new Float64Array(n).map((_, i) => (0.3 + (i % 7) / 10) ** 2);
  for (const noise of [
    { kind: 'isotropic' as const, sigma: 0.7 },
    { kind: 'diagonal' as const, variance: diagonal },
  ]) {
    it(`${noise.kind} noise, rank 16: Conv + BatchNormalization (bn0), then the Relu's mean (relu0)`, async () => {
      const atBn = await createPropagator(model, { output: 'bn0', rank: 16, outputCovariance: 'factor' });
      const atRelu = await createPropagator(model, { output: 'relu0', rank: 16, outputCovariance: 'factor' });
      const a = await atBn.moments(mu, noise);
      const again = await atBn.moments(mu, noise); // the segment hands its remembered factor back: rescaled once
      const b = await atRelu.moments(mu, noise);
      await atBn.release();
      await atRelu.release();
      expect(a.sketched).toBe(true);
      expect(a.rank).toBe(16);
      const part = model.graph.clone();
      part.outputs = [{ name: 'bn0', elemType: 1 }];
      part.prune();
      const J = await createJacobianEngine(part, { mode: 'jvp' });
      const { J: L, rows, cols } = await J.jacobian(Float32Array.from(mu));
      await J.release();
      expect(cols).toBe(n);
      for (let i = 0; i < rows; i++) {
        let v = 0;
        for (let j = 0; j < n; j++) v += L[i * n + j] ** 2 * (noise.kind === 'isotropic' ? noise.sigma ** 2 : diagonal[j]);
        expect(Math.abs(a.variance[i] - v) / v).toBeLessThan(1e-4);
        expect(again.variance[i]).toBe(a.variance[i]);
        const s = Math.sqrt(v);
        const m = a.mean[i];
        const relu = m * Phi(m / s) + s * phi(m / s);
        expect(Math.abs(b.mean[i] - relu)).toBeLessThan(1e-4 * (Math.abs(relu) + s));
      }
    }, 60_000);
  }
});

describe('LeNet against 20,000-sample Monte Carlo through the real model (digits 0-2)', () => {
  // bounds: just beyond what was measured on these digits and seeds (deterministic), with MC's own
  // standard error of a mean 1/sqrt(20000) = 0.0071 sd:
  //   sigma 8:  error median 0.0035 sd, worst 0.0088; variance / MC 0.970-1.018; two-stage median 0.22
  //   sigma 32: error median 0.0035 sd, worst 0.0137; variance / MC 0.946-1.015; two-stage median 0.87
  const bounds = {
    8: { median: 0.006, worst: 0.012, ratioLow: 0.96, ratioHigh: 1.03 },
    32: { median: 0.006, worst: 0.015, ratioLow: 0.93, ratioHigh: 1.03 },
  };
  for (const sigma of [8, 32] as const) {
    it(`sigma ${sigma} pixel units: propagate is far closer than two-stage in mean, and close in variance`, async () => {
      const model = loadModel(fixture('lenet.onnx'));
      const xs = npyToFloat32(readNpy(fixture('mnist/digits-100.npy')));
      const noise = { kind: 'isotropic' as const, sigma };
      const prop = await createPropagator(model, { threads: 1 });
      expect(prop.plan).toEqual(['affine[Conv]', 'MaxPool+Relu', 'affine[Conv]', 'MaxPool+Relu', 'affine[Flatten,Gemm]', 'Relu', 'affine[Gemm]']);
      const two = await Analyzer.create(model, { noise, variance: 'exact', flips: false, probabilitySamples: 0, threads: 1, method: 'two-stage' });
      const propErr: number[] = [];
      const twoErr: number[] = [];
      const ratios: number[] = [];
      for (const k of [0, 1, 2]) {
        const x = xs.subarray(k * 784, (k + 1) * 784);
        const p = await prop.moments(x, noise);
        expect(p.rank).toBe(784);
        const t = await two.analyzeInput(x, k);
        const mc = await monteCarloMoments((b, c) => two.linearizer.evaluate(b, c), 10, Float64Array.from(x), noise, {
          samples: 20000,
          batchSize: 2500,
          seed: 7 + k,
        });
        for (let i = 0; i < 10; i++) {
          const sd = Math.sqrt(mc.variance[i]);
          propErr.push(Math.abs(p.mean[i] - mc.mean[i]) / sd);
          twoErr.push(Math.abs(t.mean[i] - mc.mean[i]) / sd);
          ratios.push(p.variance[i] / mc.variance[i]);
        }
      }
      await prop.release();
      await two.release();
      const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
      const b = bounds[sigma];
      expect(median(propErr)).toBeLessThan(b.median);
      expect(Math.max(...propErr)).toBeLessThan(b.worst);
      // the issue asks for 30x less mean error than two-stage
      expect(median(propErr) * 30).toBeLessThan(median(twoErr));
      for (const r of ratios) {
        expect(r).toBeGreaterThan(b.ratioLow);
        expect(r).toBeLessThan(b.ratioHigh);
      }
    }, 240_000);
  }
});

/**
 * LeNet's logits at temperature 4 (logits / 4), so that the probabilities are not saturated (a
 * saturated class's variance lies in rare tail events, which 20,000 samples estimate poorly), then
 * `op` (Softmax or LogSoftmax): its propagator, checked to hold a rule for every op and to end
 * with `op`, and the real model's evaluator.
 */
async function lenetWithHead(op: 'Softmax' | 'LogSoftmax'): Promise<{ prop: Awaited<ReturnType<typeof createPropagator>>; evaluator: ModelEvaluator }> {
  const model = loadModel(fixture('lenet.onnx'));
  const g = model.graph.clone();
  g.initializers.set('temperature', { name: 'temperature', dataType: 1, dims: [], data: Float32Array.from([0.25]) });
  g.nodes.push({ name: 'cooled', opType: 'Mul', domain: '', inputs: ['logits', 'temperature'], outputs: ['cooled'], attributes: [] });
  g.nodes.push({ name: 'head', opType: op, domain: '', inputs: ['cooled'], outputs: ['head'], attributes: [] });
  g.outputs = [{ name: 'head', elemType: 1, shape: ['N', 10] }];
  expect(propagationSupport(g)).toEqual({ supported: true, missing: [] });
  const prop = await createPropagator({ ...model, graph: g }, { threads: 1 });
  expect(prop.plan.at(-1)).toBe(op);
  const evaluator = await ModelEvaluator.create(
    g,
    { name: 'input', shape: [1, 28, 28], size: 784 },
    { name: 'head', shape: [10], size: 10 },
    { file: `lenet+${op}` },
  );
  return { prop, evaluator };
}

describe('a Softmax after LeNet (its class probabilities) against 20,000-sample Monte Carlo through the real model', () => {
  // bounds: just beyond what was measured on these digits and seeds (mean error up to 0.0196 sd,
  // variance / MC 0.951-1.017 over the classes with variance >= 1e-6; MC's standard error of a mean
  // is 0.0071 sd, of a variance ratio about 0.01): the logits' own error (above) plus the Softmax
  // rule's quadrature error (test/propagate/moments.test.ts)
  it('sigma 32, digits 0-1: mean error below 0.03 sd, variance / MC within 0.92-1.08 where the variance is not negligible', async () => {
    const { prop, evaluator } = await lenetWithHead('Softmax');
    const xs = npyToFloat32(readNpy(fixture('mnist/digits-100.npy')));
    const noise = { kind: 'isotropic' as const, sigma: 32 };
    let checked = 0;
    for (const k of [0, 1]) {
      const x = xs.subarray(k * 784, (k + 1) * 784);
      const p = await prop.moments(x, noise);
      const mc = await monteCarloMoments((b, c) => evaluator.evaluate(b, c), 10, Float64Array.from(x), noise, {
        samples: 20000,
        batchSize: 2500,
        seed: 70 + k,
      });
      let sum = 0;
      for (let i = 0; i < 10; i++) {
        sum += p.mean[i];
        const sd = Math.sqrt(mc.variance[i]);
        if (mc.variance[i] < 1e-6) continue;
        checked++;
        expect(Math.abs(p.mean[i] - mc.mean[i]) / sd, `digit ${k} class ${i} mean`).toBeLessThan(0.03);
        expect(p.variance[i] / mc.variance[i], `digit ${k} class ${i} variance`).toBeGreaterThan(0.92);
        expect(p.variance[i] / mc.variance[i], `digit ${k} class ${i} variance`).toBeLessThan(1.08);
      }
      expect(sum).toBeCloseTo(1, 6);
    }
    expect(checked).toBeGreaterThan(0);
    await prop.release();
    await evaluator.release();
  }, 240_000);
});

describe('a LogSoftmax after LeNet (log-probabilities) against 20,000-sample Monte Carlo through the real model', () => {
  // LogSoftmax is x - lse(x): its rule passes the factor through I - 1 E[softmax]^T and carries
  // the rest, var(lse) - p^T C p the same in every class, as one row (rules/softmax.ts). Bounds as
  // for the Softmax above; and the differences between classes, which that row must not touch
  // (measured, digits 0-1, the classes other than the top: mean error up to 0.014 sd, variance / MC
  // 0.991-1.035, variance of the difference with the top class 0.991-1.029)
  it('sigma 32, digits 0-1: means within 0.03 sd, variances and the variances of class differences within 0.92-1.08', async () => {
    const { prop, evaluator } = await lenetWithHead('LogSoftmax');
    const xs = npyToFloat32(readNpy(fixture('mnist/digits-100.npy')));
    const noise = { kind: 'isotropic' as const, sigma: 32 };
    for (const k of [0, 1]) {
      const x = xs.subarray(k * 784, (k + 1) * 784);
      const p = await prop.moments(x, noise);
      const mc = await monteCarloMoments((b, c) => evaluator.evaluate(b, c), 10, Float64Array.from(x), noise, {
        samples: 20000,
        batchSize: 2500,
        seed: 80 + k,
        covariance: true,
      });
      const top = [...p.mean.keys()].sort((a, b) => p.mean[b] - p.mean[a])[0];
      for (let i = 0; i < 10; i++) {
        const sd = Math.sqrt(mc.variance[i]);
        expect(Math.abs(p.mean[i] - mc.mean[i]) / sd, `digit ${k} class ${i} mean`).toBeLessThan(0.03);
        expect(p.variance[i] / mc.variance[i], `digit ${k} class ${i} variance`).toBeGreaterThan(0.92);
        expect(p.variance[i] / mc.variance[i], `digit ${k} class ${i} variance`).toBeLessThan(1.08);
        if (i === top) continue;
        const diff = (C: Float64Array) => C[i * 10 + i] + C[top * 10 + top] - 2 * C[i * 10 + top];
        const ratio = diff(p.covariance) / diff(mc.covariance!);
        expect(ratio, `digit ${k} var(y_${i} - y_${top})`).toBeGreaterThan(0.92);
        expect(ratio, `digit ${k} var(y_${i} - y_${top})`).toBeLessThan(1.08);
      }
    }
    await prop.release();
    await evaluator.release();
  }, 240_000);
});

describe('ops without a moment rule', () => {
  it('are listed by propagationSupport and refused up front with the op named', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    expect(propagationSupport(model.graph)).toEqual({ supported: true, missing: [] });
    const g = model.graph.clone();
    g.nodes.find((n) => n.opType === 'Relu')!.opType = 'Asinh';
    expect(propagationSupport(g)).toEqual({ supported: false, missing: ['Asinh'] });
    await expect(createPropagator({ ...model, graph: g })).rejects.toThrow(NetmomentsError);
    await expect(createPropagator({ ...model, graph: g })).rejects.toThrow(/Asinh/);
  });
});
