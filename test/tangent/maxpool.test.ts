/**
 * MaxPool's tangent follows the argmax Indices of the primal pooling (batch 1): JVP vs central
 * finite differences at random points (no ties), and hand-computed Jacobians where windows tie:
 * the first maximal element in row-major order takes the derivative (onnxruntime's MaxPool Indices).
 */
import { describe, expect, it } from 'vitest';
import { createJacobianEngine } from '../../src/linearize/jacobian.js';
import type { Graph } from '../../src/onnx/graph.js';
import { buildGraph, expectJvpMatchesFd, makeNode } from './helpers.js';

const pool = (opset: number, dims: (number | string)[], attributes: Record<string, number | number[]>, withIndices = false): Graph =>
  buildGraph({
    opset,
    inputs: [['x', dims]],
    outputs: ['y'],
    nodes: [makeNode('MaxPool', ['x'], withIndices ? ['y', 'idx'] : ['y'], { attributes })],
  });

async function jvpJacobian(g: Graph, point: Float32Array): Promise<{ J: Float64Array; rows: number; cols: number }> {
  const e = await createJacobianEngine(g, { mode: 'jvp' });
  try {
    return await e.jacobian(point);
  } finally {
    await e.release();
  }
}

describe('MaxPool vs finite differences', () => {
  it('2x2 stride 2 (no Indices output in the model)', async () => {
    await expectJvpMatchesFd(pool(13, ['N', 2, 6, 6], { kernel_shape: [2, 2], strides: [2, 2] }));
  });

  it('kernel 3, stride 2, pads, ceil_mode, with the Indices output in the model', async () => {
    await expectJvpMatchesFd(pool(13, ['N', 2, 5, 5], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }, true));
  });

  it('ceil_mode where the last window would start in the right padding (the kernel drops it, shape inference keeps it)', async () => {
    await expectJvpMatchesFd(pool(13, ['N', 1, 4, 5], { kernel_shape: [3, 2], strides: [1, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }));
  });

  it('storage_order = 1 (column-major Indices) on a non-square input', async () => {
    await expectJvpMatchesFd(pool(13, ['N', 2, 4, 6], { kernel_shape: [2, 3], strides: [2, 1], storage_order: 1 }, true));
  });

  it('dilations, opset 10 and opset 8, and 1-D pooling', async () => {
    await expectJvpMatchesFd(pool(12, ['N', 1, 5, 5], { kernel_shape: [2, 2], dilations: [2, 2] }));
    await expectJvpMatchesFd(pool(10, ['N', 2, 5, 5], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }));
    await expectJvpMatchesFd(pool(8, ['N', 2, 4, 4], { kernel_shape: [2, 2], strides: [2, 2] }));
    await expectJvpMatchesFd(pool(13, ['N', 2, 7], { kernel_shape: [3], strides: [2] }));
  });
});

describe('MaxPool with tied maxima', () => {
  // Windows (2x2, stride 2):   [1 1 | 0 2]
  //                            [1 1 | 2 2]
  //                            [3 0 | 5 5]
  //                            [3 3 | 5 5]
  const x = Float32Array.from([1, 1, 0, 2, 1, 1, 2, 2, 3, 0, 5, 5, 3, 3, 5, 5]);
  // First maximal element of each window in row-major order: flat 0, 3, 8, 10.
  const expected = [0, 3, 8, 10];

  for (const storage_order of [0, 1]) {
    it(`passes the derivative to the first maximal element in row-major order (storage_order ${storage_order})`, async () => {
      const g = pool(13, [1, 1, 4, 4], { kernel_shape: [2, 2], strides: [2, 2], storage_order });
      const { J, rows, cols } = await jvpJacobian(g, x);
      expect([rows, cols]).toEqual([4, 16]);
      for (let r = 0; r < 4; r++) for (let c = 0; c < 16; c++) expect(J[r * 16 + c]).toBe(c === expected[r] ? 1 : 0);
    });
  }

  it('constant input with overlapping windows and padding: the first in-bounds element wins', async () => {
    const H = 4;
    const W = 6;
    const g = pool(13, [1, 1, H, W], { kernel_shape: [3, 2], strides: [1, 2], pads: [1, 1, 1, 1] });
    const { J, rows, cols } = await jvpJacobian(g, new Float32Array(H * W).fill(-2));
    expect(cols).toBe(H * W);
    // Output dims: (H + 2 - 3) / 1 + 1 = 4, (W + 2 - 2) / 2 + 1 = 4.
    const Ho = 4;
    const Wo = 4;
    expect(rows).toBe(Ho * Wo);
    for (let i = 0; i < Ho; i++) {
      for (let j = 0; j < Wo; j++) {
        const h0 = Math.max(0, i - 1);
        const w0 = Math.max(0, 2 * j - 1);
        const first = h0 * W + w0;
        for (let c = 0; c < cols; c++) expect(J[(i * Wo + j) * cols + c]).toBe(c === first ? 1 : 0);
      }
    }
  });
});
