import { describe, expect, it } from 'vitest';
import { loadModelBytes } from '../../src/onnx/load.js';
import { intermediateShapes, runWithIntermediates, tensorInfo, zeroFeeds } from '../../src/onnx/shapes.js';
import { batch1Net, randn, residualNet, rng, torchBatch1Net } from './models.js';

describe('intermediate shapes', () => {
  it('returns the dims of every tensor at a given input', async () => {
    const g = loadModelBytes(residualNet(), 'residual.onnx').graph;
    const shapes = await intermediateShapes(g, new Float32Array(3 * 36), [3, 1, 6, 6]);
    expect(shapes.get('x')).toEqual([3, 1, 6, 6]);
    expect(shapes.get('a')).toEqual([3, 2, 6, 6]);
    expect(shapes.get('r2')).toEqual([3, 2, 6, 6]);
    expect(shapes.get('p')).toEqual([3, 2, 3, 3]);
    expect(shapes.get('f')).toEqual([3, 18]);
    expect(shapes.get('y')).toEqual([3, 4]);
  });

  it('runWithIntermediates returns values of chosen tensors', async () => {
    const g = loadModelBytes(residualNet(), 'residual.onnx').graph;
    const x = randn(rng(1), 36);
    const out = await runWithIntermediates(g, { x: { type: 'float32', data: x, dims: [1, 1, 6, 6] } }, ['a', 'r1', 'x']);
    const a = out.a.data as Float32Array;
    const r1 = out.r1.data as Float32Array;
    expect(a.length).toBe(72);
    for (let i = 0; i < a.length; i++) expect(r1[i]).toBe(Math.max(a[i], 0));
    expect(out.x.data).toBe(x);
    expect(Object.keys(out)).toContain('y');
    await expect(runWithIntermediates(g, { x: { type: 'float32', data: x, dims: [1, 1, 6, 6] } }, ['nope'])).rejects.toThrow(/no tensor named 'nope'/);
  });

  it('tensorInfo marks dims that follow the batch with the input symbol', async () => {
    const g = loadModelBytes(residualNet(), 'residual.onnx').graph;
    const info = await tensorInfo(g);
    expect(info.get('a')).toEqual({ name: 'a', elemType: 1, dims: ['N', 2, 6, 6] });
    expect(info.get('y')!.dims).toEqual(['N', 4]);
    const t = loadModelBytes(torchBatch1Net(), 't.onnx').graph;
    const ti = await tensorInfo(t);
    expect(ti.get('/Shape_output_0')).toEqual({ name: '/Shape_output_0', elemType: 7, dims: [4] });
    expect(ti.get('/relu/Relu_output_0')!.dims).toEqual([1, 3, 3, 3]);
  });

  it('zeroFeeds refuses dynamic non-batch dims and missing shapes', () => {
    const g = loadModelBytes(batch1Net(), 'b.onnx').graph;
    expect(zeroFeeds(g).x.dims).toEqual([1, 1, 4, 4]);
    g.inputs[0] = { ...g.inputs[0], shape: ['N', 1, 'H', 4] };
    expect(() => zeroFeeds(g, 1, 'b.onnx')).toThrow(/dynamic dimension 'H' at axis 2/);
    g.inputs[0] = { ...g.inputs[0], shape: undefined };
    expect(() => zeroFeeds(g, 1, 'b.onnx')).toThrow(/declares no shape/);
  });
});
