import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeBatchDynamic } from '../../src/onnx/batch.js';
import type { Graph } from '../../src/onnx/graph.js';
import { loadModel, loadModelBytes } from '../../src/onnx/load.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo } from '../../src/onnx/proto.js';
import { intermediateShapes, runWithIntermediates } from '../../src/onnx/shapes.js';
import { toIntegers } from '../../src/onnx/tensor.js';
import { batch1Net, randn, rng, torchBatch1Net } from './models.js';

/** Batch 5 through the rewritten graph equals 5 runs of batch 1 through the original. */
async function checkPerRow(original: Graph, dynamic: Graph, rowDims: number[]): Promise<void> {
  const input = original.dataInputs[0].name;
  const out = original.outputs[0].name;
  const n = rowDims.reduce((a, b) => a * b, 1);
  const x = randn(rng(42), 5 * n);
  await expect(runWithIntermediates(original, { [input]: { type: 'float32', data: x, dims: [5, ...rowDims] } }, [])).rejects.toThrow();
  const batched = await runWithIntermediates(dynamic, { [input]: { type: 'float32', data: x, dims: [5, ...rowDims] } }, []);
  const yb = batched[out].data as Float32Array;
  expect(batched[out].dims[0]).toBe(5);
  const m = yb.length / 5;
  for (let r = 0; r < 5; r++) {
    const single = await runWithIntermediates(original, { [input]: { type: 'float32', data: x.slice(r * n, (r + 1) * n), dims: [1, ...rowDims] } }, []);
    const ys = single[out].data as Float32Array;
    expect(ys.length).toBe(m);
    for (let i = 0; i < m; i++) expect(Math.abs(yb[r * m + i] - ys[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ys[i])));
  }
}

describe('makeBatchDynamic', () => {
  it('rewrites inputs, outputs and Reshape constants of a batch-1 model (initializer and Constant node shapes)', async () => {
    const g = loadModelBytes(batch1Net(), 'batch1.onnx').graph;
    const d = makeBatchDynamic(g);
    expect(d.inputs[0].shape).toEqual(['N', 1, 4, 4]);
    expect(d.outputs[0].shape).toEqual(['N', 6]);
    expect(d.valueInfo.size).toBe(0);
    const shapeOf = (node: string): number[] => {
      const n = d.nodes.find((x) => x.name === node)!;
      return toIntegers(d.initializers.get(n.inputs[1])!);
    };
    expect(shapeOf('reshape1')).toEqual([0, -1]); // [1, -1]: the -1 is taken, copy dim 0
    expect(shapeOf('reshape2')).toEqual([-1, 2, 3]); // Constant node [1, 2, 3]
    expect(shapeOf('reshape3')).toEqual([-1, 6]);
    expect(d.nodes.some((n) => n.opType === 'Constant')).toBe(false);
    expect(d.initializers.has('shape_flat')).toBe(false);
    // The original graph is untouched.
    expect(g.inputs[0].shape).toEqual([1, 1, 4, 4]);
    expect(toIntegers(g.initializers.get('shape_flat')!)).toEqual([1, -1]);
    await checkPerRow(g, d, [1, 4, 4]);
  });

  it('leaves Shape/Gather/Concat chains of a torch export alone and then accepts any batch', async () => {
    const g = loadModelBytes(torchBatch1Net(), 'torch.onnx').graph;
    const d = makeBatchDynamic(g);
    expect(d.nodes.map((n) => n.inputs)).toEqual(g.nodes.map((n) => n.inputs));
    await checkPerRow(g, d, [1, 5, 5]);
  });

  it('handles allowzero=1 with a -1 elsewhere from the batch-1 shapes, and leaves parameter reshapes alone', async () => {
    const r = rng(3);
    const bytes = encodeModel(
      makeModel(
        {
          name: 'az',
          node: [
            makeNode('Relu', ['x'], ['r'], { name: 'relu' }),
            makeNode('Reshape', ['r', 'shp'], ['f'], { name: 'reshape', attributes: { allowzero: 1 } }),
            makeNode('Reshape', ['bias', 'bshape'], ['b2'], { name: 'reshape_bias' }),
            makeNode('Add', ['f', 'b2'], ['y'], { name: 'add' }),
          ],
          input: [makeValueInfo('x', DataType.FLOAT, [1, 2, 3])],
          output: [makeValueInfo('y', DataType.FLOAT, [1, 6])],
          initializer: [
            makeTensor('shp', DataType.INT64, [2], [1, -1]),
            makeTensor('bias', DataType.FLOAT, [6], randn(r, 6)),
            makeTensor('bshape', DataType.INT64, [2], [1, 6]),
          ],
        },
        { opset: 14 },
      ),
    );
    const g = loadModelBytes(bytes, 'az.onnx').graph;
    expect(() => makeBatchDynamic(g, { file: 'az.onnx' })).toThrow(/allowzero=1/);
    const shapes = await intermediateShapes(g, new Float32Array(6), [1, 2, 3]);
    const d = makeBatchDynamic(g, { shapes });
    const n = d.nodes.find((x) => x.name === 'reshape')!;
    expect(toIntegers(d.initializers.get(n.inputs[1])!)).toEqual([-1, 6]);
    expect(d.nodes.find((x) => x.name === 'reshape_bias')!.inputs[1]).toBe('bshape');
    await checkPerRow(g, d, [2, 3]);
  });

  const LENET_B1 = join(import.meta.dirname, '..', '..', 'fixtures', 'lenet-batch1.onnx');
  it.runIf(existsSync(LENET_B1))('fixtures/lenet-batch1.onnx (torch export, batch fixed at 1) accepts batch 5 after the rewrite', async () => {
    const g = loadModel(LENET_B1).graph;
    const d = makeBatchDynamic(g);
    expect(d.dataInputs[0].shape).toEqual(['N', 1, 28, 28]);
    await checkPerRow(g, d, [1, 28, 28]);
  });
});
