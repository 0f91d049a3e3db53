/**
 * The load-time rewrites for exports whose axis 0 is not the batch of 1 netmoments expects
 * (src/onnx/batchAxis.ts, src/onnx/load.ts) and the batch rewrite's handling of Shape-computed and
 * batch-folding Reshapes (src/onnx/batch.ts): each rewritten model computes, per input, what the
 * file computes, and accepts a batch after makeBatchDynamicProbed.
 */
import { describe, expect, it } from 'vitest';
import { makeBatchDynamicProbed } from '../../src/onnx/batch.js';
import type { Graph } from '../../src/onnx/graph.js';
import { loadModelBytes } from '../../src/onnx/load.js';
import { DataType, encodeModel, makeModel, makeNode, makeTensor, makeValueInfo, type GraphProto } from '../../src/onnx/proto.js';
import { runWithIntermediates } from '../../src/onnx/shapes.js';
import { toIntegers } from '../../src/onnx/tensor.js';
import { ModelSession } from '../../src/runtime/session.js';
import { randn, rng } from './models.js';

function bytesOf(graph: GraphProto, opset = 13, irVersion?: number): Uint8Array {
  return encodeModel(makeModel(graph, { opset, irVersion }));
}

/** The file's own output through onnxruntime (no netmoments rewrite), for the given feed. */
async function runFile(bytes: Uint8Array, input: string, data: Float32Array, dims: number[], output: string): Promise<Float32Array> {
  const s = await ModelSession.create(bytes);
  try {
    return (await s.run({ [input]: { type: 'float32', data, dims } }, [output]))[output].data as Float32Array;
  } finally {
    await s.release();
  }
}

async function runGraph(g: Graph, input: string, data: Float32Array, dims: number[], output: string): Promise<{ data: Float32Array; dims: number[] }> {
  const r = await runWithIntermediates(g, { [input]: { type: 'float32', data, dims } }, []);
  return { data: r[output].data as Float32Array, dims: r[output].dims };
}

function expectClose(a: ArrayLike<number>, b: ArrayLike<number>): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(b[i])));
}

/** An MLP on x [3] without a batch axis, written as W x (column vectors): MatMul(W, x) + b -> Relu -> MatMul(h, V) -> Softmax. */
function batchlessMlp(): Uint8Array {
  const r = rng(11);
  return bytesOf({
    name: 'batchless',
    node: [
      makeNode('MatMul', ['W', 'x'], ['m'], { name: 'mm' }),
      makeNode('Add', ['m', 'b'], ['a'], { name: 'add' }),
      makeNode('Relu', ['a'], ['h'], { name: 'relu' }),
      makeNode('MatMul', ['h', 'V'], ['z'], { name: 'mm2' }),
      makeNode('Softmax', ['z'], ['y'], { name: 'softmax', attributes: { axis: 0 } }),
    ],
    input: [makeValueInfo('x', DataType.FLOAT, [3])],
    output: [makeValueInfo('y', DataType.FLOAT, [2])],
    initializer: [
      makeTensor('W', DataType.FLOAT, [4, 3], randn(r, 12)),
      makeTensor('b', DataType.FLOAT, [4], randn(r, 4)),
      makeTensor('V', DataType.FLOAT, [4, 2], randn(r, 8)),
    ],
  });
}

/** Conv -> Relu -> Reshape to [B, -1] -> Gemm with a fixed batch B; `across` adds a ReduceSum over axis 0 (rows not independent). */
function fixedBatchNet(batch: number, across = false): Uint8Array {
  const r = rng(12);
  const node = [
    makeNode('Conv', ['x', 'Wc'], ['c'], { name: 'conv', attributes: { kernel_shape: [3, 3] } }),
    makeNode('Relu', ['c'], ['h'], { name: 'relu' }),
    makeNode('Reshape', ['h', 'shape'], ['f'], { name: 'flatten' }),
    makeNode('Gemm', ['f', 'Wf', 'bf'], [across ? 'g' : 'y'], { name: 'fc', attributes: { transB: 1 } }),
  ];
  if (across) node.push(makeNode('ReduceSum', ['g'], ['y'], { name: 'sum', attributes: { axes: [0], keepdims: 1 } }));
  return bytesOf(
    {
      name: 'fixed',
      node,
      input: [makeValueInfo('x', DataType.FLOAT, [batch, 1, 4, 4])],
      output: [makeValueInfo('y', DataType.FLOAT, [across ? 1 : batch, 3])],
      initializer: [
        makeTensor('Wc', DataType.FLOAT, [2, 1, 3, 3], randn(r, 18)),
        makeTensor('shape', DataType.INT64, [2], [batch, -1]),
        makeTensor('Wf', DataType.FLOAT, [3, 8], randn(r, 24)),
        makeTensor('bf', DataType.FLOAT, [3], randn(r, 3)),
      ],
    },
    11,
  );
}

describe('load: a fixed batch B > 1', () => {
  it('becomes batch 1 when the rows are independent: each row of the file equals the rewritten model at that row', async () => {
    const bytes = fixedBatchNet(4);
    const m = loadModelBytes(bytes, 'fixed.onnx');
    expect(m.rewrites).toEqual(["the model input 'x' has a fixed batch of 4 ([4, 1, 4, 4]); its inputs are analysed one at a time, at batch 1"]);
    expect(m.graph.inputs[0].shape).toEqual([1, 1, 4, 4]);
    expect(m.graph.outputs[0].shape).toEqual([1, 3]);
    const x = randn(rng(1), 4 * 16);
    const all = await runFile(bytes, 'x', x, [4, 1, 4, 4], 'y');
    for (let row = 0; row < 4; row++) {
      const one = await runGraph(m.graph, 'x', x.slice(row * 16, (row + 1) * 16), [1, 1, 4, 4], 'y');
      expect(one.dims).toEqual([1, 3]);
      expectClose(one.data, all.slice(row * 3, (row + 1) * 3));
    }
    const dynamic = await makeBatchDynamicProbed(m.graph);
    const batched = await runGraph(dynamic, 'x', x, [4, 1, 4, 4], 'y');
    expectClose(batched.data, all);
  });

  it('is left as the file has it when an op acts across axis 0 (then analyze refuses the fixed batch)', () => {
    const m = loadModelBytes(fixedBatchNet(4, true), 'across.onnx');
    expect(m.rewrites).toEqual([]);
    expect(m.graph.inputs[0].shape).toEqual([4, 1, 4, 4]);
  });
});

describe('load: an input without a batch axis', () => {
  it('gets one: MatMul(W, x) becomes MatMul(x, W^T), the Softmax axis moves, and the model computes what the file does', async () => {
    const bytes = batchlessMlp();
    const m = loadModelBytes(bytes, 'batchless.onnx');
    expect(m.rewrites).toEqual(["the model input 'x' [3] has no batch axis; netmoments added one (input [1, 3])"]);
    expect(m.graph.inputs[0].shape).toEqual([1, 3]);
    expect(m.graph.outputs[0].shape).toEqual([1, 2]);
    expect(m.graph.initializers.has('W')).toBe(false); // replaced by its transpose
    const dynamic = await makeBatchDynamicProbed(m.graph);
    const x = randn(rng(2), 5 * 3);
    const batched = await runGraph(dynamic, 'x', x, [5, 3], 'y');
    expect(batched.dims).toEqual([5, 2]);
    for (let row = 0; row < 5; row++) expectClose(batched.data.slice(row * 2, row * 2 + 2), await runFile(bytes, 'x', x.slice(row * 3, row * 3 + 3), [3], 'y'));
  });

  it('is left as the file has it when an op on the data path is not one the rewrite carries the axis through', () => {
    const bytes = bytesOf({
      name: 'gather',
      node: [makeNode('Gather', ['x', 'idx'], ['g'], { name: 'gather', attributes: { axis: 0 } }), makeNode('Relu', ['g'], ['y'], { name: 'relu' })],
      input: [makeValueInfo('x', DataType.FLOAT, [5])],
      output: [makeValueInfo('y', DataType.FLOAT, [2])],
      initializer: [makeTensor('idx', DataType.INT64, [2], [0, 3])],
    });
    const m = loadModelBytes(bytes, 'gather.onnx');
    expect(m.rewrites).toEqual([]);
    expect(m.graph.inputs[0].shape).toEqual([5]);
  });
});

describe('load: IR 3, initializers listed as graph inputs', () => {
  it('reads them as constants, so that the batch rewrite dropping a Reshape shape leaves no input to feed', async () => {
    const r = rng(13);
    const bytes = bytesOf(
      {
        name: 'ir3',
        node: [
          makeNode('Relu', ['x'], ['h'], { name: 'relu' }),
          makeNode('Reshape', ['h', 'shape'], ['f'], { name: 'flatten' }),
          makeNode('MatMul', ['f', 'W'], ['y'], { name: 'mm' }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, [1, 2, 3]), makeValueInfo('shape', DataType.INT64, [2]), makeValueInfo('W', DataType.FLOAT, [6, 2])],
        output: [makeValueInfo('y', DataType.FLOAT, [1, 2])],
        initializer: [makeTensor('shape', DataType.INT64, [2], [1, 6]), makeTensor('W', DataType.FLOAT, [6, 2], randn(r, 12))],
      },
      8,
      3,
    );
    const m = loadModelBytes(bytes, 'ir3.onnx');
    expect(m.graph.inputs.map((i) => i.name)).toEqual(['x']);
    expect(m.graph.irVersion).toBe(4);
    expect(m.rewrites).toHaveLength(1);
    // what the analysis does: the batch rewrite (a new shape constant), then a pruned copy
    const dynamic = (await makeBatchDynamicProbed(m.graph)).clone();
    dynamic.prune();
    expect(dynamic.dataInputs.map((i) => i.name)).toEqual(['x']);
    const x = randn(rng(3), 2 * 6);
    const batched = await runGraph(dynamic, 'x', x, [2, 2, 3], 'y');
    for (let row = 0; row < 2; row++)
      expectClose(batched.data.slice(row * 2, row * 2 + 2), await runFile(bytes, 'x', x.slice(row * 6, row * 6 + 6), [1, 2, 3], 'y'));
  });
});

describe('makeBatchDynamicProbed: Reshapes that would carry int64 shapes or fold the batch', () => {
  it('replaces a shape computed from Shape(x) (torch dynamo: Shape -> Concat -> Reshape allowzero=1) by the explicit constant', async () => {
    const r = rng(14);
    const bytes = bytesOf(
      {
        name: 'dynamo',
        node: [
          makeNode('Shape', ['x'], ['s'], { name: 'shape', attributes: { start: 0, end: 1 } }),
          makeNode('Relu', ['x'], ['h'], { name: 'relu' }),
          makeNode('Concat', ['s', 'rest'], ['target'], { name: 'concat', attributes: { axis: 0 } }),
          makeNode('Reshape', ['h', 'target'], ['f'], { name: 'view', attributes: { allowzero: 1 } }),
          makeNode('Gemm', ['f', 'W'], ['y'], { name: 'fc', attributes: { transB: 1 } }),
        ],
        input: [makeValueInfo('x', DataType.FLOAT, ['s77', 2, 3])],
        output: [makeValueInfo('y', DataType.FLOAT, ['s77', 4])],
        initializer: [makeTensor('rest', DataType.INT64, [1], [6]), makeTensor('W', DataType.FLOAT, [4, 6], randn(r, 24))],
      },
      20,
    );
    const g = loadModelBytes(bytes, 'dynamo.onnx').graph;
    const d = await makeBatchDynamicProbed(g);
    expect(d.nodes.map((n) => n.opType)).toEqual(['Relu', 'Reshape', 'Gemm']);
    const view = d.nodes.find((n) => n.name === 'view')!;
    expect(toIntegers(d.initializers.get(view.inputs[1])!)).toEqual([-1, 6]);
    const x = randn(rng(4), 3 * 6);
    expectClose((await runGraph(d, 'x', x, [3, 2, 3], 'y')).data, await runFile(bytes, 'x', x, [3, 2, 3], 'y'));
  });

  it("gives a final Reshape that folds the batch into axis 0 (skl2onnx's [-1, 1]) its batch axis back", async () => {
    const r = rng(15);
    const bytes = bytesOf({
      name: 'folded',
      node: [makeNode('MatMul', ['x', 'W'], ['m'], { name: 'mm' }), makeNode('Reshape', ['m', 'shape'], ['y'], { name: 'reshape' })],
      input: [makeValueInfo('x', DataType.FLOAT, [null, 3])],
      output: [makeValueInfo('y', DataType.FLOAT, [null, 1])],
      initializer: [makeTensor('W', DataType.FLOAT, [3, 5], randn(r, 15)), makeTensor('shape', DataType.INT64, [2], [-1, 1])],
    });
    const g = loadModelBytes(bytes, 'folded.onnx').graph;
    const d = await makeBatchDynamicProbed(g);
    expect(d.outputs[0].shape).toEqual(['N', 5, 1]);
    const x = randn(rng(5), 2 * 3);
    const batched = await runGraph(d, 'x', x, [2, 3], 'y');
    expect(batched.dims).toEqual([2, 5, 1]);
    for (let row = 0; row < 2; row++)
      expectClose(batched.data.slice(row * 5, row * 5 + 5), await runFile(bytes, 'x', x.slice(row * 3, row * 3 + 3), [1, 3], 'y'));
  });
});
