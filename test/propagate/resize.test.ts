/**
 * Resize (nearest) inside a propagation: a small U-Net-style net (Conv, Relu, MaxPool, Conv, Relu,
 * Resize x2 nearest, Concat with the skip, Conv, Relu, Gemm) gives the moments of the same net with
 * the upsampling written as a ConvTranspose (stride 2, a 2 x 2 kernel of ones per channel: the
 * same linear map, through rules tested on their own), and its means against Monte Carlo through
 * the real model; an interpolating Resize is named as what propagate lacks.
 */
import { describe, expect, it } from 'vitest';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo } from '../../src/onnx/proto.js';
import { loadModelBytes } from '../../src/onnx/load.js';
import { createPropagator, propagationSupport } from '../../src/propagate/index.js';
import { ModelEvaluator } from '../../src/linearize/evaluator.js';
import { monteCarloMoments } from '../../src/moments/montecarlo.js';
import { randn, rng } from '../onnx/models.js';

/** x [N, 1, 8, 8] -> U-Net-style net -> y [N, 3]; the x2 upsampling by Resize (`mode`) or by a ConvTranspose of ones. */
function unet(mode: 'nearest' | 'linear' | 'convtranspose'): Uint8Array {
  const r = rng(17);
  return encodeModel(
    makeModel({
      name: 'unet',
      node: [
        makeNode('Conv', ['x', 'w1', 'b1'], ['c1'], { attributes: { pads: [1, 1, 1, 1] } }),
        makeNode('Relu', ['c1'], ['a']),
        makeNode('MaxPool', ['a'], ['p'], { attributes: { kernel_shape: [2, 2], strides: [2, 2] } }),
        makeNode('Conv', ['p', 'w2', 'b2'], ['c2'], { attributes: { pads: [1, 1, 1, 1] } }),
        makeNode('Relu', ['c2'], ['b']),
        mode === 'convtranspose'
          ? makeNode('ConvTranspose', ['b', 'ones'], ['u'], { attributes: { strides: [2, 2], group: 4 } })
          : makeNode('Resize', ['b', '', 'scales'], ['u'], { attributes: { mode } }),
        makeNode('Concat', ['a', 'u'], ['cat'], { attributes: { axis: 1 } }),
        makeNode('Conv', ['cat', 'w3', 'b3'], ['c3'], { attributes: { pads: [1, 1, 1, 1] } }),
        makeNode('Relu', ['c3'], ['d']),
        makeNode('Flatten', ['d'], ['f']),
        makeNode('Gemm', ['f', 'W', 'B'], ['y'], { attributes: { transB: 1 } }),
      ],
      input: [makeValueInfo('x', DataType.FLOAT, ['N', 1, 8, 8])],
      output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
      initializer: [
        makeTensor('w1', DataType.FLOAT, [3, 1, 3, 3], randn(r, 27, 0.5)),
        makeTensor('b1', DataType.FLOAT, [3], randn(r, 3, 0.2)),
        makeTensor('w2', DataType.FLOAT, [4, 3, 3, 3], randn(r, 108, 0.3)),
        makeTensor('b2', DataType.FLOAT, [4], randn(r, 4, 0.2)),
        makeTensor('scales', DataType.FLOAT, [4], Float32Array.from([1, 1, 2, 2])),
        makeTensor('ones', DataType.FLOAT, [4, 1, 2, 2], new Float32Array(16).fill(1)),
        makeTensor('w3', DataType.FLOAT, [2, 7, 3, 3], randn(r, 126, 0.25)),
        makeTensor('b3', DataType.FLOAT, [2], randn(r, 2, 0.2)),
        makeTensor('W', DataType.FLOAT, [3, 128], randn(r, 384, 0.1)),
        makeTensor('B', DataType.FLOAT, [3], randn(r, 3, 0.2)),
      ],
    }),
  );
}

describe('Resize in a propagation', () => {
  // The two forms run the same float32 arithmetic up to summation order: relative 1e-5. Monte Carlo:
  // 40,000 samples (standard error of a mean 0.005 sd, of a variance ratio 0.007). The Relu that
  // both the MaxPool and the Concat read stays for the Concat, and a copy follows the pool (the
  // window max reads the Gaussian pre-activations): measured mean errors up to 0.021 sd, variances
  // 0.931-0.983 (the two copies' residuals are taken as independent). Before the copy, the pool read
  // the Relu's output: up to 0.137 sd and 0.747-0.933. Bounds: 0.05 sd, 0.90-1.05.
  it('nearest: the moments of the ConvTranspose form, and means near 40,000-sample Monte Carlo (sigma 0.5 and 1)', async () => {
    const model = loadModelBytes(unet('nearest'), 'unet.onnx');
    expect(propagationSupport(model.graph)).toEqual({ supported: true, missing: [] });
    // Resize has no adjoint rule, so its output covariance comes from the factor (the reverse pass
    // is unavailable); the twin's too, for the comparison
    const prop = await createPropagator(model, { threads: 1 });
    expect(prop.plan).toContain('affine[Resize,Concat,Conv]');
    // the pool reads the first Conv's output, fused with the Relu copied after it
    expect(prop.plan.slice(0, 4)).toEqual(['affine[Conv]', 'Relu', 'MaxPool+Relu', 'affine[Conv]']);
    const twin = await createPropagator(loadModelBytes(unet('convtranspose'), 'twin.onnx'), { threads: 1, outputCovariance: 'factor' });
    expect(twin.plan).toContain('affine[ConvTranspose,Concat,Conv]');
    const evaluator = await ModelEvaluator.create(model.graph, { name: 'x', shape: [1, 8, 8], size: 64 }, { name: 'y', shape: [3], size: 3 }, { file: 'unet' });
    const mu = Float64Array.from({ length: 64 }, (_, i) => Math.sin(i / 3));
    for (const sigma of [0.5, 1]) {
      const noise = { kind: 'isotropic' as const, sigma };
      const p = await prop.moments(mu, noise);
      expect(p.reverseUnits).toBe(0);
      const q = await twin.moments(mu, noise);
      const mc = await monteCarloMoments((b, c) => evaluator.evaluate(b, c), 3, mu, noise, { samples: 40_000, batchSize: 4000, seed: 9 });
      for (let i = 0; i < 3; i++) {
        const sd = Math.sqrt(q.variance[i]);
        expect(Math.abs(p.mean[i] - q.mean[i]) / sd, `sigma ${sigma} output ${i} mean`).toBeLessThan(1e-5);
        expect(Math.abs(p.variance[i] / q.variance[i] - 1), `sigma ${sigma} output ${i} variance`).toBeLessThan(1e-5);
        expect(Math.abs(p.mean[i] - mc.mean[i]) / Math.sqrt(mc.variance[i]), `sigma ${sigma} output ${i} mean vs Monte Carlo`).toBeLessThan(0.05);
        expect(p.variance[i] / mc.variance[i], `sigma ${sigma} output ${i} variance vs Monte Carlo`).toBeGreaterThan(0.9);
        expect(p.variance[i] / mc.variance[i], `sigma ${sigma} output ${i} variance vs Monte Carlo`).toBeLessThan(1.05);
      }
    }
    await prop.release();
    await twin.release();
    await evaluator.release();
  }, 60_000);

  it('linear: named as what propagate lacks (an interpolation mixes units with weights no Resize of the variances gives)', () => {
    const model = loadModelBytes(unet('linear'), 'unet.onnx');
    expect(propagationSupport(model.graph)).toEqual({ supported: false, missing: ["Resize (linear interpolation (propagate handles mode 'nearest'))"] });
  });
});
