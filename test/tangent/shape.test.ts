/**
 * Tangent rules of the data-movement ops (Flatten, Reshape incl. Shape/Gather/Unsqueeze/Concat
 * chains and a fixed batch of 1, Transpose, Squeeze/Unsqueeze in both opset forms, Concat, Slice,
 * Pad, Resize, Upsample, Identity, Dropout, Gather, Expand, Where, Split, ReduceMean/ReduceSum, Cast), JVP vs central
 * finite differences (float32: |diff| <= 2e-3 * max(1, max |J|), step 1e-3).
 */
import { describe, expect, it } from 'vitest';
import { createJacobianEngine } from '../../src/linearize/jacobian.js';
import { DataType } from '../../src/onnx/proto.js';
import { buildGraph, expectJvpMatchesFd, floatInit, intInit, makeNode, randomInit, rng } from './helpers.js';

describe('reshaping', () => {
  it('Flatten (axis 1 and 0) and Reshape with constant shapes [1,-1], [-1,24], [0,4,-1]', async () => {
    const g = buildGraph({
      inputs: [['x', ['N', 2, 3, 4]]],
      outputs: ['f1', 'f0', 'r1', 'r2', 'r3'],
      nodes: [
        makeNode('Flatten', ['x'], ['f1']),
        makeNode('Flatten', ['x'], ['f0'], { attributes: { axis: 0 } }),
        makeNode('Reshape', ['x', 's1'], ['r1']),
        makeNode('Reshape', ['x', 's2'], ['r2']),
        makeNode('Reshape', ['x', 's3'], ['r3']),
      ],
      initializers: [intInit('s1', [1, -1]), intInit('s2', [-1, 24]), intInit('s3', [0, 4, -1])],
    });
    await expectJvpMatchesFd(g);
  });

  it('Reshape through a Shape -> Gather -> Unsqueeze -> Concat chain (torch export, opset 11, fixed batch 1)', async () => {
    const r = rng(51);
    const g = buildGraph({
      opset: 11,
      inputs: [['x', [1, 2, 3, 3]]],
      outputs: ['y'],
      nodes: [
        makeNode('Relu', ['x'], ['h']),
        makeNode('Shape', ['h'], ['s']),
        makeNode('Constant', [], ['zero'], { attributes: { value: { name: 'zero', dataType: DataType.INT64, dims: [], int64Data: [0] } } }),
        makeNode('Gather', ['s', 'zero'], ['n'], { attributes: { axis: 0 } }),
        makeNode('Unsqueeze', ['n'], ['n1'], { attributes: { axes: [0] } }),
        makeNode('Constant', [], ['minus1'], { attributes: { value: { name: 'minus1', dataType: DataType.INT64, dims: [1], int64Data: [-1] } } }),
        makeNode('Concat', ['n1', 'minus1'], ['shape'], { attributes: { axis: 0 } }),
        makeNode('Reshape', ['h', 'shape'], ['flat']),
        makeNode('Gemm', ['flat', 'w', 'b'], ['y'], { attributes: { transB: 1 } }),
      ],
      initializers: [randomInit(r, 'w', [4, 18]), randomInit(r, 'b', [4])],
    });
    await expectJvpMatchesFd(g);
  });

  it('Squeeze/Unsqueeze with axes as attributes (opset 11) and as inputs (opset 13)', async () => {
    for (const opset of [11, 13]) {
      const axes = (name: string, v: number[]) => (opset < 13 ? { inputs: [] as string[], attributes: { axes: v } } : { inputs: [name], attributes: {} });
      const sq = axes('sq_axes', [2]);
      const un = axes('un_axes', [1, -1]);
      const g = buildGraph({
        opset,
        inputs: [['x', ['N', 3, 1, 4]]],
        outputs: ['u'],
        nodes: [
          makeNode('Squeeze', ['x', ...sq.inputs], ['s'], { attributes: sq.attributes }),
          makeNode('Unsqueeze', ['s', ...un.inputs], ['u'], { attributes: un.attributes }),
        ],
        initializers: opset < 13 ? [] : [intInit('sq_axes', [2]), intInit('un_axes', [1, -1])],
      });
      await expectJvpMatchesFd(g);
    }
  });

  it('Transpose keeping the batch axis first', async () => {
    const g = buildGraph({
      inputs: [['x', ['N', 2, 3, 4]]],
      outputs: ['y'],
      nodes: [makeNode('Transpose', ['x'], ['y'], { attributes: { perm: [0, 2, 3, 1] } })],
    });
    await expectJvpMatchesFd(g);
  });
});

describe('combining and selecting', () => {
  it('Concat of varying tensors and a constant (axis 1 and axis -1)', async () => {
    const r = rng(61);
    const g = buildGraph({
      inputs: [['x', ['N', 2, 3]]],
      outputs: ['c1', 'c2'],
      nodes: [
        makeNode('Relu', ['x'], ['rx']),
        makeNode('Concat', ['x', 'k', 'rx'], ['c1'], { attributes: { axis: 1 } }),
        makeNode('Concat', ['rx', 'x'], ['c2'], { attributes: { axis: -1 } }),
      ],
      initializers: [randomInit(r, 'k', [1, 4, 3])],
    });
    await expectJvpMatchesFd(g);
  });

  it('Slice with attributes (opset 9), including a batch-axis entry', async () => {
    const g = buildGraph({
      opset: 9,
      inputs: [['x', ['N', 4, 6]]],
      outputs: ['y', 'z'],
      nodes: [
        makeNode('Slice', ['x'], ['y'], { attributes: { starts: [0, 1, 1], ends: [2147483647, 3, -1] } }),
        makeNode('Slice', ['x'], ['z'], { attributes: { starts: [2], ends: [100], axes: [-1] } }),
      ],
    });
    await expectJvpMatchesFd(g);
  });

  it('Slice with inputs (opset 13): steps, negative axes, batch entry, and run-time starts', async () => {
    const g = buildGraph({
      inputs: [['x', ['N', 4, 6]]],
      outputs: ['y', 'z', 'w'],
      nodes: [
        makeNode('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y']),
        makeNode('Slice', ['x', 'st0', 'en0', 'ax0'], ['z']),
        // starts computed at run time from Shape(x): x[:, :, d-3:]
        makeNode('Shape', ['x'], ['shp']),
        makeNode('Gather', ['shp', 'two'], ['d'], { attributes: { axis: 0 } }),
        makeNode('Sub', ['d', 'three'], ['start']),
        makeNode('Slice', ['x', 'start', 'big', 'axl'], ['w']),
      ],
      initializers: [
        intInit('st', [5, 0]),
        intInit('en', [-7, 4]),
        intInit('ax', [-1, 1]),
        intInit('sp', [-2, 2]),
        intInit('st0', [0, 1]),
        intInit('en0', [1000, 3]),
        intInit('ax0', [0, 1]),
        intInit('two', [2]),
        intInit('three', [3]),
        intInit('big', [1000]),
        intInit('axl', [2]),
      ],
    });
    await expectJvpMatchesFd(g);
  });

  it('Slice to the end as torch exports it (opset 13, ends INT64_MAX): x[:, 1:], x[:, :, 2:] with steps', async () => {
    // 2^63 - 1 is not a double: the rule must write it back as int64 "to the end", not wrap to -2^63
    const g = buildGraph({
      inputs: [['x', ['N', 4, 6]]],
      outputs: ['y', 'z'],
      nodes: [makeNode('Slice', ['x', 'st', 'end', 'ax'], ['y']), makeNode('Slice', ['x', 'st2', 'end2', 'ax2', 'sp2'], ['z'])],
      initializers: [
        intInit('st', [1]),
        intInit('end', [9223372036854775807]),
        intInit('ax', [1]),
        intInit('st2', [0, 2]),
        intInit('end2', [9223372036854775807, 9223372036854775807]),
        intInit('ax2', [0, -1]),
        intInit('sp2', [1, 2]),
      ],
    });
    await expectJvpMatchesFd(g);
  });

  it('Pad: constant (opset 9 attributes, value 1.5), reflect and edge (opset 13), axes input (opset 18)', async () => {
    await expectJvpMatchesFd(
      buildGraph({
        opset: 9,
        inputs: [['x', ['N', 2, 3, 3]]],
        outputs: ['y'],
        nodes: [makeNode('Pad', ['x'], ['y'], { attributes: { pads: [0, 0, 1, 2, 0, 0, 2, 1], value: 1.5 }, floatAttributes: ['value'] })],
      }),
    );
    await expectJvpMatchesFd(
      buildGraph({
        opset: 13,
        inputs: [['x', ['N', 2, 3, 3]]],
        outputs: ['c', 'r', 'e'],
        nodes: [
          makeNode('Pad', ['x', 'p', 'v'], ['c']),
          makeNode('Pad', ['x', 'p'], ['r'], { attributes: { mode: 'reflect' } }),
          makeNode('Pad', ['x', 'p'], ['e'], { attributes: { mode: 'edge' } }),
        ],
        initializers: [intInit('p', [0, 0, 1, 2, 0, 0, 2, 1]), floatInit('v', [], [3])],
      }),
    );
    await expectJvpMatchesFd(
      buildGraph({
        opset: 18,
        inputs: [['x', ['N', 2, 3, 3]]],
        outputs: ['y'],
        nodes: [makeNode('Pad', ['x', 'p', '', 'a'], ['y'], { attributes: { mode: 'reflect' } })],
        initializers: [intInit('p', [1, 2, 2, 1]), intInit('a', [-2, -1])],
      }),
    );
  });

  it('Resize nearest and bilinear by scales (opset 13), Upsample (opset 9): the same Resize of the tangent', async () => {
    await expectJvpMatchesFd(
      buildGraph({
        opset: 13,
        inputs: [['x', ['N', 2, 3, 3]]],
        outputs: ['s', 'l'],
        nodes: [
          makeNode('Resize', ['x', '', 'scales'], ['s'], { attributes: { mode: 'nearest' } }),
          makeNode('Resize', ['x', '', 'scales'], ['l'], { attributes: { mode: 'linear' } }),
        ],
        initializers: [floatInit('scales', [4], [1, 1, 2, 2])],
      }),
    );
    await expectJvpMatchesFd(
      buildGraph({
        opset: 9,
        inputs: [['x', ['N', 2, 3, 3]]],
        outputs: ['u'],
        nodes: [makeNode('Upsample', ['x', 'scales'], ['u'])],
        initializers: [floatInit('scales', [4], [1, 1, 2, 3])],
      }),
    );
  });

  it('Resize by sizes (which name the batch of 1): the tangent takes its own batch, and equals the same Resize by scales', async () => {
    // finite differences cannot check it (the model runs at batch 1 only): against the scales form
    const net = (how: 'sizes' | 'scales') =>
      buildGraph({
        opset: 13,
        inputs: [['x', [1, 2, 3, 3]]],
        outputs: ['y'],
        nodes: [makeNode('Resize', how === 'sizes' ? ['x', '', '', 'sizes'] : ['x', '', 'scales'], ['y'], { attributes: { mode: 'nearest' } })],
        initializers: [floatInit('scales', [4], [1, 1, 2, 2]), intInit('sizes', [1, 2, 6, 6])],
      });
    const point = Float32Array.from({ length: 18 }, (_, i) => Math.sin(i));
    const J: Float64Array[] = [];
    for (const how of ['sizes', 'scales'] as const) {
      const e = await createJacobianEngine(net(how), { mode: 'jvp' });
      try {
        J.push(Float64Array.from((await e.jacobian(point)).J));
      } finally {
        await e.release();
      }
    }
    expect(J[0].length).toBe(72 * 18);
    expect([...J[0]]).toEqual([...J[1]]);
    expect(J[0].reduce((a, v) => a + v, 0)).toBe(72); // each output copies one input
  });

  it('Identity, Dropout (opset 9 and 12), Cast float -> float', async () => {
    await expectJvpMatchesFd(
      buildGraph({
        opset: 12,
        inputs: [['x', ['N', 5]]],
        outputs: ['i', 'd', 'c'],
        nodes: [
          makeNode('Identity', ['x'], ['i']),
          makeNode('Dropout', ['x', 'ratio'], ['d', 'mask']),
          makeNode('Cast', ['x'], ['c'], { attributes: { to: DataType.FLOAT } }),
        ],
        initializers: [floatInit('ratio', [], [0.3])],
      }),
    );
    await expectJvpMatchesFd(
      buildGraph({
        opset: 9,
        inputs: [['x', ['N', 5]]],
        outputs: ['d'],
        nodes: [makeNode('Dropout', ['x'], ['d'], { attributes: { ratio: 0.5 }, floatAttributes: ['ratio'] })],
      }),
    );
  });

  it('Gather along axis 1, Expand, Where on a primal condition', async () => {
    const r = rng(71);
    await expectJvpMatchesFd(
      buildGraph({
        inputs: [['x', ['N', 4, 1]]],
        outputs: ['g', 'e', 'w'],
        nodes: [
          makeNode('Gather', ['x', 'idx'], ['g'], { attributes: { axis: 1 } }),
          makeNode('Expand', ['x', 'shape'], ['e']),
          makeNode('Greater', ['x', 'zero'], ['cond']),
          makeNode('Mul', ['x', 'two'], ['x2']),
          makeNode('Where', ['cond', 'x2', 'k'], ['w']),
        ],
        initializers: [
          intInit('idx', [3, 0, 0]),
          intInit('shape', [1, 4, 3]),
          floatInit('zero', [], [0]),
          floatInit('two', [], [2]),
          randomInit(r, 'k', [4, 3]),
        ],
      }),
    );
  });

  it('Split (opset 11 attribute, opset 13 input, opset 18 num_outputs) and ReduceMean/ReduceSum (axes as attribute and as input)', async () => {
    await expectJvpMatchesFd(
      buildGraph({
        opset: 11,
        inputs: [['x', ['N', 5, 2]]],
        outputs: ['a', 'b', 'm'],
        nodes: [
          makeNode('Split', ['x'], ['a', 'b'], { attributes: { axis: 1, split: [2, 3] } }),
          makeNode('ReduceMean', ['x'], ['m'], { attributes: { axes: [1, 2], keepdims: 0 } }),
        ],
      }),
    );
    await expectJvpMatchesFd(
      buildGraph({
        opset: 13,
        inputs: [['x', ['N', 5, 2]]],
        outputs: ['a', 'b', 's', 'm'],
        nodes: [
          makeNode('Split', ['x', 'sp'], ['a', 'b'], { attributes: { axis: -2 } }),
          makeNode('ReduceSum', ['x', 'ax'], ['s'], { attributes: { keepdims: 1 } }),
          makeNode('ReduceMean', ['x'], ['m'], { attributes: { axes: [-1] } }),
        ],
        initializers: [intInit('sp', [4, 1]), intInit('ax', [2])],
      }),
    );
    await expectJvpMatchesFd(
      buildGraph({
        opset: 18,
        inputs: [['x', ['N', 5, 2]]],
        outputs: ['m', 'a', 'b'],
        nodes: [
          makeNode('ReduceMean', ['x', 'ax'], ['m'], { attributes: { keepdims: 0 } }),
          makeNode('Split', ['x'], ['a', 'b'], { attributes: { axis: 1, num_outputs: 2 } }),
        ],
        initializers: [intInit('ax', [-2])],
      }),
    );
  });
});
