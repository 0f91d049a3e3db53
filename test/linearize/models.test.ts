/**
 * Whole networks. The JVP Jacobian of every fixture (the full model and both parts of the split at
 * every ReLU), of LeNet at a real MNIST digit, of a torch-style LeNet exported with a fixed batch
 * of 1 (Reshape fed by Shape/Gather/Unsqueeze/Concat, opset 11) and of a torch-style residual
 * block (conv-bn-relu + skip, GlobalAveragePool, opset 12, batch 1) is checked two ways:
 *
 * - against central differences of an independent float64 evaluation (reference.ts) at a step of
 *   1e-7 (tolerance 1e-4 of max |J|): this shows the JVP is exact up to float32 rounding (observed
 *   1e-7 to 1e-6 relative);
 * - against the engine's own float32 finite differences (the --jacobian fd fallback), in norm:
 *   float32 central differences of a deep PL net cannot do better than about 1e-2 here (rounding
 *   over small steps, kinks crossed by large ones).
 *
 * Points are away from kinks: random for the synthetic nets, and for LeNet the digit with N(0, 1)
 * pixel dither, because the constant MNIST background makes exactly tied max-pool windows, where
 * central differences average the one-sided slopes while the JVP follows the first maximal element
 * (the last test states that difference).
 */
import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createJacobianEngine } from '../../src/linearize/jacobian.js';
import type { Graph } from '../../src/onnx/graph.js';
import { loadModel } from '../../src/onnx/load.js';
import { splitModelAt } from '../../src/onnx/split.js';
import { maxAbsDiff, relFroDiff, rng } from '../tangent/helpers.js';
import { digit, lenet, residualTorch } from './nets.js';
import { expectJvpMatchesReference } from './reference.js';

const FIXTURES = new URL('../../fixtures/', import.meta.url);
const onnxFixtures = existsSync(FIXTURES)
  ? readdirSync(FIXTURES)
      .filter((f) => f.endsWith('.onnx'))
      .sort()
  : [];

const sizeOf = (g: Graph) => g.dataInputs.reduce((a, i) => a + (i.shape ?? []).slice(1).reduce<number>((p, d) => p * (typeof d === 'number' ? d : 1), 1), 0);

/** The digit with N(0, 1) pixel dither: breaks the exactly tied max-pool windows of the constant background. */
function ditheredDigit(seed = 77): Float32Array {
  const r = rng(seed);
  return Float32Array.from(digit(), (v) => v + r.normal());
}

/** JVP vs the float64 reference on the full model and on both parts of the split at every ReLU. */
async function expectExactEverywhere(g: Graph, x: Float32Array, columns: { full: number; parts: number }): Promise<void> {
  const full = await expectJvpMatchesReference(g, { point: x, maxColumns: columns.full });
  expect(full.forwardError).toBeLessThanOrEqual(1e-5);
  const relus = g.relus().length;
  expect(relus).toBeGreaterThan(0);
  const dither = rng(5);
  for (let k = 0; k < relus; k++) {
    const split = await splitModelAt(g, k);
    await expectJvpMatchesReference(split.bottom, { point: x, maxColumns: columns.parts });
    // The top at relu(z) and the skip values; the dead units get a small positive dither, since
    // their exact zeros tie in any max-pool window above the cut.
    const bottom = await createJacobianEngine(split.bottom, { mode: 'jvp' });
    const top: Record<string, Float32Array> = {};
    try {
      const { outputValue } = await bottom.jvp(x, new Float32Array(0), 0);
      for (const o of bottom.outputs) {
        const v = Float32Array.from(outputValue.subarray(o.offset, o.offset + o.size));
        if (o.name === split.relu.input) top[split.relu.output] = v.map((t) => (t > 0 ? t : 1e-2 * dither.uniform()));
        else top[o.name] = v;
      }
    } finally {
      await bottom.release();
    }
    await expectJvpMatchesReference(split.top, { point: top, maxColumns: columns.parts });
  }
}

describe.each(onnxFixtures)('fixture %s', (file) => {
  it('JVP Jacobians are exact (float64 reference) on the full model and both parts at every ReLU', async () => {
    const g = loadModel(new URL(file, FIXTURES).pathname).graph;
    // the 28x28 nets that read pixel - 127.5 (LeNet, the Fashion-MNIST fixtures) at a dithered digit: away from their many tied windows
    const lenetLike = file.startsWith('lenet') || file.startsWith('fashion');
    const x = lenetLike ? ditheredDigit() : rng(1).normals(sizeOf(g));
    await expectExactEverywhere(g, x, { full: 16, parts: 6 });
  });
});

describe('LeNet (in memory, fixture shapes)', () => {
  it('logits wrt the input at a dithered digit: exact, and within float32 FD accuracy of the fd engine', async () => {
    const g = lenet('dynamic');
    const x = ditheredDigit();
    const ref = await expectJvpMatchesReference(g, { point: x, maxColumns: 24 });
    expect([ref.jvp.rows]).toEqual([10]);
    const a = await createJacobianEngine(g, { mode: 'jvp' });
    const f = await createJacobianEngine(g, { mode: 'fd', fdStep: 0.1 });
    try {
      const ja = await a.jacobian(x);
      const jf = await f.jacobian(x);
      expect([ja.rows, ja.cols]).toEqual([10, 784]);
      expect(relFroDiff(ja.J, jf.J)).toBeLessThanOrEqual(3e-2);
    } finally {
      await a.release();
      await f.release();
    }
  });

  it('the torch export (fixed batch 1, Shape/Gather/Unsqueeze/Concat/Reshape flatten, opset 11) gives the same Jacobian', async () => {
    const x = ditheredDigit();
    const a = await createJacobianEngine(lenet('dynamic'), { mode: 'jvp' });
    const b = await createJacobianEngine(lenet('torch-batch1'), { mode: 'jvp' });
    try {
      const ja = await a.jacobian(x);
      const jb = await b.jacobian(x);
      expect(maxAbsDiff(ja.J, jb.J)).toBeLessThanOrEqual(1e-7);
      expect(maxAbsDiff(ja.outputValue, jb.outputValue)).toBeLessThanOrEqual(1e-5);
    } finally {
      await a.release();
      await b.release();
    }
    await expectJvpMatchesReference(lenet('torch-batch1'), { point: x, maxColumns: 16 });
  });

  it('at the raw digit, tied max-pool windows make central differences differ from the first-maximal convention', async () => {
    // A statement of fact the docs rely on, not a requirement: at exact ties the central difference
    // averages the one-sided slopes; the JVP follows the first maximal element (onnxruntime's Indices).
    const g = lenet('dynamic');
    const a = await createJacobianEngine(g, { mode: 'jvp' });
    const f = await createJacobianEngine(g, { mode: 'fd', fdStep: 0.1 });
    try {
      const x = digit();
      expect(relFroDiff((await a.jacobian(x)).J, (await f.jacobian(x)).J)).toBeGreaterThan(0.05);
    } finally {
      await a.release();
      await f.release();
    }
  });
});

describe('residual block, torch-style (conv-bn-relu + skip, GlobalAveragePool, opset 12, batch 1)', () => {
  it('JVP Jacobians are exact on the full model and both parts at every ReLU', async () => {
    const g = residualTorch();
    await expectExactEverywhere(g, rng(3).normals(sizeOf(g)), { full: 32, parts: 8 });
  });
});
