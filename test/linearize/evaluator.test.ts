/**
 * The real model run forward (src/linearize/evaluator.ts): its first, single-input call runs on a
 * one-run session (no graph optimizations, no pre-packed weights), later calls on an optimized one.
 * Both must give the model's outputs: the one-run session's within float32 rounding of the
 * optimized one's, on the bundled LeNet and real MNIST digits.
 */
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/onnx/load.js';
import { ModelEvaluator } from '../../src/linearize/evaluator.js';
import { ModelSession } from '../../src/runtime/session.js';
import { readNpy, npyToFloat32 } from '../../src/data/npy.js';

const fixture = (f: string) => new URL(`../../fixtures/${f}`, import.meta.url).pathname;

describe('ModelEvaluator: a one-run session first, an optimized one from the second call', () => {
  it('gives LeNet logits equal to a plain onnxruntime session of the model, before and after the switch', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const xs = npyToFloat32(readNpy(fixture('mnist/digits-100.npy'))).subarray(0, 3 * 784);
    const plain = await ModelSession.create(model.bytes);
    const expected = (await plain.run({ input: { type: 'float32', data: xs, dims: [3, 1, 28, 28] } }, ['logits'])).logits.data as Float32Array;
    await plain.release();
    const evaluator = await ModelEvaluator.create(
      model.graph,
      { name: 'input', shape: [1, 28, 28], size: 784 },
      { name: 'logits', shape: [10], size: 10 },
      { file: 'lenet.onnx' },
    );
    try {
      const scale = Math.max(...Array.from(expected, Math.abs));
      expect(scale).toBeGreaterThan(1);
      const first = await evaluator.evaluate(xs.subarray(0, 784), 1); // the one-run session
      for (let i = 0; i < 10; i++) expect(Math.abs(first[i] - expected[i])).toBeLessThanOrEqual(1e-5 * scale);
      const again = await evaluator.evaluate(xs.subarray(0, 784), 1); // optimized from here on
      for (let i = 0; i < 10; i++) expect(Math.abs(again[i] - expected[i])).toBeLessThanOrEqual(1e-5 * scale);
      const batch = await evaluator.evaluate(xs, 3);
      for (let i = 0; i < 30; i++) expect(Math.abs(batch[i] - expected[i])).toBeLessThanOrEqual(1e-5 * scale);
    } finally {
      await evaluator.release();
    }
  });
});
