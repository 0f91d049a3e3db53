/**
 * Adjoint (VJP) rules, each against its op's tangent rule on a tiny in-memory model at a random
 * point: <u, J v> = <J^T u, v> for random u, v (J v from the tangent model, J^T u from the adjoint
 * model), and the reverse-mode Jacobian equal to the forward one entry by entry (float32 runs:
 * within 1e-5 of max |J|). Ops or uses without an adjoint rule make reverse mode unavailable and
 * the engine falls back to forward mode, saying which op.
 */
import { describe, expect, it } from 'vitest';
import { createJacobianEngine } from '../../src/linearize/jacobian.js';
import { buildAdjointModel } from '../../src/onnx/tangent/reverse.js';
import { ModelSession } from '../../src/runtime/session.js';
import { adjointOps } from '../../src/onnx/ops/registry.js';
import { DataType } from '../../src/onnx/proto.js';
import type { Graph } from '../../src/onnx/graph.js';
import { buildGraph, floatInit, intInit, makeNode, maxAbs, maxAbsDiff, randomInit, rng } from './helpers.js';

/** <u, J v> = <J^T u, v> on 3 x 3 random pairs, and J by reverse mode equal to J by forward mode. */
async function expectAdjointMatchesTangent(g: Graph, o: { seed?: number; varying?: string[]; outputs?: string[] } = {}): Promise<void> {
  const r = rng(o.seed ?? 7);
  const fwd = await createJacobianEngine(g, { mode: 'forward', varying: o.varying, outputs: o.outputs });
  const rev = await createJacobianEngine(g, { mode: 'reverse', varying: o.varying, outputs: o.outputs });
  try {
    expect(await rev.reverseReady()).toBe(true);
    expect(rev.reverseFallback).toBeUndefined();
    const nPoint = fwd.primalInputs.reduce((a, s) => a + s.size, 0);
    const point = r.normals(nPoint);
    const n = fwd.inputSize;
    const m = fwd.outputSize;
    const k = 3;
    const V = r.normals(k * n);
    const U = r.normals(k * m);
    const JV = (await fwd.jvp(point, V, k)).tangents; // [k, m]
    const UJ = (await rev.vjp(point, U, k)).cotangents; // [k, n]
    let scale = 0;
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) {
        let lhs = 0;
        let rhs = 0;
        let mag = 0;
        for (let a = 0; a < m; a++) {
          lhs += U[i * m + a] * JV[j * m + a];
          mag += Math.abs(U[i * m + a] * JV[j * m + a]);
        }
        for (let b = 0; b < n; b++) rhs += UJ[i * n + b] * V[j * n + b];
        expect(Math.abs(lhs - rhs)).toBeLessThanOrEqual(1e-5 * Math.max(1, mag));
        scale = Math.max(scale, Math.abs(lhs));
      }
    }
    expect(scale).toBeGreaterThan(1e-3); // not trivially zero
    const Jf = await fwd.jacobian(point);
    const Jr = await rev.jacobian(point);
    expect(rev.description).toMatch(/reverse-mode/);
    expect([Jr.rows, Jr.cols]).toEqual([Jf.rows, Jf.cols]);
    expect(maxAbsDiff(Jr.J, Jf.J)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(Jf.J)));
    expect(maxAbsDiff(Jr.outputValue, Jf.outputValue)).toBe(0);
  } finally {
    await fwd.release();
    await rev.release();
  }
}

describe('adjoint rules: <u, J v> = <J^T u, v> against the tangent rules', () => {
  it('Conv: strides, asymmetric pads, dilations, bias; groups with SAME_UPPER; depthwise SAME_LOWER', async () => {
    const r = rng(11);
    await expectAdjointMatchesTangent(
      buildGraph({
        inputs: [['x', ['N', 2, 7, 7]]],
        outputs: ['y'],
        nodes: [makeNode('Conv', ['x', 'w', 'b'], ['y'], { attributes: { strides: [2, 2], pads: [1, 0, 1, 2], dilations: [1, 2] } })],
        initializers: [randomInit(r, 'w', [4, 2, 3, 3]), randomInit(r, 'b', [4], 3)],
      }),
    );
    await expectAdjointMatchesTangent(
      buildGraph({
        inputs: [['x', [1, 4, 6, 5]]],
        outputs: ['y'],
        nodes: [makeNode('Conv', ['x', 'w'], ['y'], { attributes: { group: 2, strides: [2, 2], auto_pad: 'SAME_UPPER', kernel_shape: [3, 3] } })],
        initializers: [randomInit(r, 'w', [4, 2, 3, 3])],
      }),
    );
    await expectAdjointMatchesTangent(
      buildGraph({
        inputs: [['x', ['N', 3, 5, 5]]],
        outputs: ['y'],
        nodes: [makeNode('Conv', ['x', 'w', 'b'], ['c'], { attributes: { group: 3, auto_pad: 'SAME_LOWER' } }), makeNode('Relu', ['c'], ['y'])],
        initializers: [randomInit(r, 'w', [3, 1, 2, 2]), randomInit(r, 'b', [3])],
      }),
    );
  });

  it('ConvTranspose with strides, pads and output_padding', async () => {
    const r = rng(14);
    await expectAdjointMatchesTangent(
      buildGraph({
        inputs: [['x', ['N', 3, 4, 4]]],
        outputs: ['y'],
        nodes: [makeNode('ConvTranspose', ['x', 'w', 'b'], ['y'], { attributes: { strides: [2, 2], pads: [1, 0, 0, 1], output_padding: [1, 1] } })],
        initializers: [randomInit(r, 'w', [3, 2, 3, 3]), randomInit(r, 'b', [2])],
      }),
    );
  });

  it('Gemm (transB, alpha, beta, a varying C) and MatMul (varying A; varying B of rank 3)', async () => {
    const r = rng(21);
    await expectAdjointMatchesTangent(
      buildGraph({
        inputs: [['x', ['N', 6]]],
        outputs: ['y'],
        nodes: [
          makeNode('Gemm', ['x', 'w', 'c'], ['h'], { attributes: { transB: 1, alpha: 0.7, beta: 1.3 }, floatAttributes: ['alpha', 'beta'] }),
          makeNode('Relu', ['h'], ['rh']),
          makeNode('Gemm', ['rh', 'w2', 'rh'], ['y'], { attributes: { beta: 0.5 }, floatAttributes: ['beta'] }),
        ],
        initializers: [randomInit(r, 'w', [5, 6]), randomInit(r, 'c', [5]), randomInit(r, 'w2', [5, 5])],
      }),
    );
    await expectAdjointMatchesTangent(
      buildGraph({
        inputs: [['x', ['N', 3, 4]]],
        outputs: ['y'],
        nodes: [makeNode('MatMul', ['x', 'w'], ['h']), makeNode('MatMul', ['a', 'h'], ['y'])],
        initializers: [randomInit(r, 'w', [4, 5]), randomInit(r, 'a', [2, 3])],
      }),
    );
  });

  it('MaxPool: non-overlapping, overlapping with strides and pads (phases), ceil_mode, and GlobalMaxPool', async () => {
    for (const attributes of [
      { kernel_shape: [2, 2], strides: [2, 2] },
      { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
      { kernel_shape: [3, 2], strides: [1, 1] },
      { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 },
    ]) {
      await expectAdjointMatchesTangent(
        buildGraph({ inputs: [['x', ['N', 2, 7, 6]]], outputs: ['y'], nodes: [makeNode('MaxPool', ['x'], ['y'], { attributes })] }),
      );
    }
    await expectAdjointMatchesTangent(buildGraph({ inputs: [['x', ['N', 3, 4, 5]]], outputs: ['y'], nodes: [makeNode('GlobalMaxPool', ['x'], ['y'])] }));
  });

  it('MaxPool ties go where the tangent rule sends them (a constant input region)', async () => {
    const g = buildGraph({
      inputs: [['x', ['N', 1, 4, 4]]],
      outputs: ['y'],
      nodes: [makeNode('Relu', ['x'], ['h']), makeNode('MaxPool', ['h'], ['y'], { attributes: { kernel_shape: [3, 3], strides: [1, 1] } })],
    });
    const fwd = await createJacobianEngine(g, { mode: 'forward' });
    const rev = await createJacobianEngine(g, { mode: 'reverse' });
    try {
      const point = Float32Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : -1)); // ties among the zeros of the Relu
      expect(maxAbsDiff((await rev.jacobian(point)).J, (await fwd.jacobian(point)).J)).toBe(0);
    } finally {
      await fwd.release();
      await rev.release();
    }
  });

  it('AveragePool (with and without count_include_pad, strides) and GlobalAveragePool', async () => {
    for (const attributes of [
      { kernel_shape: [2, 2], strides: [2, 2] },
      { kernel_shape: [3, 3], strides: [2, 1], pads: [1, 1, 0, 1] },
      { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1 },
    ]) {
      await expectAdjointMatchesTangent(
        buildGraph({ inputs: [['x', ['N', 2, 6, 5]]], outputs: ['y'], nodes: [makeNode('AveragePool', ['x'], ['y'], { attributes })] }),
      );
    }
    await expectAdjointMatchesTangent(buildGraph({ inputs: [['x', ['N', 3, 4, 5]]], outputs: ['y'], nodes: [makeNode('GlobalAveragePool', ['x'], ['y'])] }));
  });

  it('BatchNormalization, Mul, Add, Sub, Div with broadcasting, ReduceSum, and both operands varying', async () => {
    const r = rng(31);
    await expectAdjointMatchesTangent(
      buildGraph({
        inputs: [['x', ['N', 3, 2, 2]]],
        outputs: ['y'],
        nodes: [
          makeNode('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['n']),
          makeNode('Mul', ['n', 'k'], ['a']),
          makeNode('Add', ['a', 'c'], ['a2']),
          makeNode('Sub', ['k', 'a2'], ['a3']),
          makeNode('Div', ['a3', 'd'], ['a4']),
          makeNode('ReduceSum', ['n', 'ax'], ['ns'], { attributes: { keepdims: 1 } }),
          makeNode('Mul', ['a4', 'ns'], ['a5']),
          makeNode('Add', ['a5', 'n'], ['a6']),
          makeNode('Div', ['a6', 'den'], ['y']),
          makeNode('Add', ['x', 'x'], ['den0']),
          makeNode('Mul', ['den0', 'den0'], ['den1']),
          makeNode('Add', ['den1', 'one'], ['den']),
        ],
        initializers: [
          randomInit(r, 's', [3]),
          randomInit(r, 'b', [3]),
          randomInit(r, 'm', [3]),
          floatInit('v', [3], [0.5, 1, 2]),
          randomInit(r, 'k', [3, 1, 1]),
          randomInit(r, 'c', [1, 2]),
          floatInit('d', [1, 1, 1, 2], [1.5, -2]),
          floatInit('one', [], [1]),
          intInit('ax', [1]),
        ],
      }),
    );
  });

  it('Reshape, Flatten, Transpose, Concat, Slice, Split, Pad, Identity, Dropout, Squeeze/Unsqueeze', async () => {
    const r = rng(41);
    await expectAdjointMatchesTangent(
      buildGraph({
        opset: 13,
        inputs: [['x', ['N', 2, 4, 3]]],
        outputs: ['y', 'z'],
        nodes: [
          makeNode('Transpose', ['x'], ['t'], { attributes: { perm: [0, 3, 1, 2] } }), // [1, 3, 2, 4]
          makeNode('Slice', ['t', 'st', 'en', 'ax'], ['s']), // [1, 3, 1, 2]
          makeNode('Pad', ['s', 'pads'], ['p']), // [1, 3, 2, 5]
          makeNode('Split', ['p', 'sp'], ['p1', 'p2'], { attributes: { axis: 3 } }), // [1, 3, 2, 2], [1, 3, 2, 3]
          makeNode('Concat', ['p2', 'k', 'p1'], ['c'], { attributes: { axis: 3 } }), // [1, 3, 2, 6]
          makeNode('Identity', ['c'], ['i']),
          makeNode('Dropout', ['i'], ['dr']),
          makeNode('Flatten', ['dr'], ['f']),
          makeNode('Unsqueeze', ['f', 'ua'], ['u']),
          makeNode('Squeeze', ['u', 'ua'], ['q']),
          makeNode('Reshape', ['q', 'shape'], ['rs']),
          makeNode('Relu', ['rs'], ['y']),
          makeNode('Mul', ['p1', 'p1'], ['z']),
        ],
        initializers: [
          intInit('st', [1, -3]),
          intInit('en', [100, -1]),
          intInit('ax', [2, 3]),
          intInit('pads', [0, 0, 1, 2, 0, 0, 0, 1]),
          intInit('sp', [2, 3]),
          randomInit(r, 'k', [1, 3, 2, 1]),
          intInit('ua', [2]),
          intInit('shape', [-1, 6, 6]),
        ],
      }),
    );
  });

  it('LeakyRelu, PRelu, Clip, Neg, Sigmoid, Tanh, Softmax, Cast to float', async () => {
    const r = rng(51);
    await expectAdjointMatchesTangent(
      buildGraph({
        opset: 13,
        inputs: [['x', ['N', 3, 4]]],
        outputs: ['y'],
        nodes: [
          makeNode('LeakyRelu', ['x'], ['a'], { attributes: { alpha: 0.2 }, floatAttributes: ['alpha'] }),
          makeNode('PRelu', ['a', 'slope'], ['b']),
          makeNode('Clip', ['b', 'lo', 'hi'], ['c']),
          makeNode('Neg', ['c'], ['d']),
          makeNode('Sigmoid', ['d'], ['e']),
          makeNode('Tanh', ['x'], ['f']),
          makeNode('Add', ['e', 'f'], ['g']),
          makeNode('Cast', ['g'], ['h'], { attributes: { to: DataType.FLOAT } }),
          makeNode('Softmax', ['h'], ['y'], { attributes: { axis: -1 } }),
        ],
        initializers: [randomInit(r, 'slope', [3, 1]), floatInit('lo', [], [-0.5]), floatInit('hi', [], [0.6])],
      }),
    );
  });
});

describe('the unit-wise smooth ops', () => {
  it('Elu, Selu, Celu, Softsign, Softplus, Erf, Exp, Sin, Cos, HardSigmoid, HardSwish (opset 14)', async () => {
    const ops = ['Elu', 'Selu', 'Celu', 'Softsign', 'Softplus', 'Erf', 'Sin', 'Cos', 'HardSigmoid', 'HardSwish', 'Exp'];
    const names = ['x', ...ops.map((op) => op.toLowerCase())];
    await expectAdjointMatchesTangent(
      buildGraph({
        opset: 14,
        inputs: [['x', ['N', 3, 4]]],
        outputs: ['y'],
        nodes: [...ops.map((op, i) => makeNode(op, [names[i]], [names[i + 1]])), makeNode('Identity', [names.at(-1)!], ['y'])],
      }),
    );
  });
});

describe('an adjoint model without primal outputs (what an affine segment of moment propagation runs)', () => {
  it('drops the primal Gemm and Conv, so their weights are loaded once, and gives the same cotangents', async () => {
    const r = rng(19);
    const g = buildGraph({
      inputs: [['x', ['N', 2, 5, 5]]],
      outputs: ['y'],
      nodes: [
        makeNode('Conv', ['x', 'w', 'b'], ['c'], { attributes: { pads: [1, 1, 1, 1] } }),
        makeNode('Flatten', ['c'], ['f']),
        makeNode('Gemm', ['f', 'W', 'B'], ['y'], { attributes: { transB: 1 } }),
      ],
      initializers: [randomInit(r, 'w', [3, 2, 3, 3]), randomInit(r, 'b', [3]), randomInit(r, 'W', [4, 75]), randomInit(r, 'B', [4])],
    });
    const shapes = new Map<string, number[]>([
      ['x', [1, 2, 5, 5]],
      ['c', [1, 3, 5, 5]],
      ['f', [1, 75]],
      ['y', [1, 4]],
    ]);
    const full = buildAdjointModel(g, { varying: ['x'], outputs: ['y'], shapes });
    const lean = buildAdjointModel(g, { varying: ['x'], outputs: ['y'], shapes, primalOutputs: false });
    const count = (m: typeof full, op: string) => m.graph.nodes.filter((n) => n.opType === op).length;
    expect(count(full, 'Gemm')).toBe(2); // the primal and its adjoint
    expect(count(lean, 'Gemm')).toBe(1);
    expect(count(lean, 'Conv')).toBe(0); // the Conv's adjoint is a ConvTranspose
    expect(lean.primalOutputs).toEqual({});
    expect(lean.graph.outputs.map((o) => o.name)).toEqual([lean.cotangentOutputs.x]);
    const k = 3;
    const u = Float32Array.from(r.normals(k * 4));
    const run = async (m: typeof full) => {
      const s = await ModelSession.create(m.bytes);
      try {
        const out = await s.run(
          {
            x: { type: 'float32', data: Float32Array.from(r.normals(50)), dims: [1, 2, 5, 5] },
            [m.cotangentInputs.y]: { type: 'float32', data: u, dims: [k, 4] },
          },
          [m.cotangentOutputs.x],
        );
        return out[m.cotangentOutputs.x].data as Float32Array;
      } finally {
        await s.release();
      }
    };
    const a = await run(full);
    const b = await run(lean);
    expect(b.length).toBe(k * 50);
    expect(maxAbs(Array.from(a))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(Array.from(a), Array.from(b))).toBe(0);
  });
});

describe('reverse mode where an op has no adjoint rule', () => {
  it('falls back to forward mode, naming the op in the description and a warning', async () => {
    const warnings: string[] = [];
    const g = buildGraph({
      inputs: [['x', ['N', 4]]],
      outputs: ['y'],
      nodes: [makeNode('LogSoftmax', ['x'], ['y'], { attributes: { axis: 1 } })],
    });
    const e = await createJacobianEngine(g, { mode: 'reverse', onWarning: (m) => warnings.push(m) });
    try {
      expect(await e.reverseReady()).toBe(false);
      expect(e.reverseFallback?.opType).toBe('LogSoftmax');
      const J = await e.jacobian(rng(3).normals(4));
      expect(J.rows).toBe(4);
      expect(e.description).toMatch(/forward-mode JVPs; reverse mode unavailable: no adjoint \(VJP\) rule for LogSoftmax/);
      expect(warnings.join('\n')).toMatch(/LogSoftmax.*forward mode instead/);
    } finally {
      await e.release();
    }
  });

  it('the ops with adjoint rules include every op issue 15 names', () => {
    const ops = adjointOps();
    for (const op of [
      'Conv',
      'Gemm',
      'MatMul',
      'MaxPool',
      'AveragePool',
      'GlobalAveragePool',
      'BatchNormalization',
      'Mul',
      'Add',
      'Sub',
      'Div',
      'Reshape',
      'Flatten',
      'Transpose',
      'Concat',
      'Slice',
      'Split',
      'Pad',
      'Identity',
      'Dropout',
      'Relu',
      'LeakyRelu',
      'PRelu',
      'Clip',
    ]) {
      expect(ops).toContain(op);
    }
  });
});
