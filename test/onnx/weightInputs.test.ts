/**
 * Large weights handed to onnxruntime as inputs (src/onnx/weightInputs.ts): which initializers move
 * (float, FED_WEIGHT_ELEMENTS or more, not read by an op kept), and a session of the moved graph,
 * fed the arrays, computes what the session of the original graph computes.
 */
import { describe, expect, it } from 'vitest';
import { FED_WEIGHT_ELEMENTS, moveWeightsToInputs } from '../../src/onnx/weightInputs.js';
import { ModelSession } from '../../src/runtime/session.js';
import { buildGraph, makeNode, randomInit, rng } from '../tangent/helpers.js';

describe('moveWeightsToInputs', () => {
  it("moves a Gemm's weight at the threshold, keeps the small ones, and the session's outputs are unchanged", async () => {
    const r = rng(5);
    const k = FED_WEIGHT_ELEMENTS / 1024; // a [1024, k] Gemm weight: exactly the threshold
    const g = buildGraph({
      inputs: [['x', ['N', 4, 8, 8]]],
      outputs: ['y'],
      nodes: [
        makeNode('Conv', ['x', 'wc'], ['c']),
        makeNode('Flatten', ['c'], ['f']),
        makeNode('Gemm', ['f', 'w1', 'b1'], ['h'], { attributes: { transB: 1 } }),
        makeNode('Gemm', ['h', 'w2'], ['y'], { attributes: { transB: 1 } }),
      ],
      initializers: [randomInit(r, 'wc', [k / 64, 4, 1, 1]), randomInit(r, 'w1', [1024, k]), randomInit(r, 'b1', [1024]), randomInit(r, 'w2', [3, 1024])],
    });
    const x = Float32Array.from(r.normals(2 * 256));
    const run = async (bytes: Uint8Array, extra = {}) => {
      const s = await ModelSession.create(bytes);
      try {
        return (await s.run({ ...extra, x: { type: 'float32', data: x, dims: [2, 4, 8, 8] } }, ['y'])).y.data as Float32Array;
      } finally {
        await s.release();
      }
    };
    const expected = await run(g.toBytes());
    const moved = g.clone();
    const feeds = moveWeightsToInputs(moved, new Set(['Conv']));
    expect(Object.keys(feeds)).toEqual(['w1']);
    expect(feeds.w1.data).toBe(g.initializers.get('w1')!.data); // the array itself, not a copy
    expect(moved.initializers.has('w1')).toBe(false);
    expect(moved.inputs.map((i) => i.name)).toEqual(['x', 'w1']);
    // with no op kept, still only w1: the Conv's weight and the others are under the threshold
    const all = g.clone();
    expect(Object.keys(moveWeightsToInputs(all)).sort()).toEqual(['w1']);
    const got = await run(moved.toBytes(), feeds);
    expect(Math.max(...Array.from(expected, Math.abs))).toBeGreaterThan(1);
    for (let i = 0; i < expected.length; i++) expect(Math.abs(got[i] - expected[i])).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(expected[i])));
  });
});
