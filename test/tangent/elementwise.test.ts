/**
 * Tangent rules of the elementwise ops: Add/Sub/Mul/Div with constants (broadcasting) and between
 * two varying tensors (product and quotient rules), Sum/Mean/Neg, the piecewise-linear activations
 * (masks from the primal, ReLU'(0) = 0) and the smooth ones (Sigmoid, Tanh, Softmax, LogSoftmax,
 * Exp, Erf, Softplus, Sin, Cos, Elu, Selu, Celu, Softsign, HardSigmoid, HardSwish, Mish, Gelu).
 * JVP vs central finite differences (float32: |diff| <= 2e-3 * max(1, max |J|), step 1e-3).
 */
import { describe, expect, it } from 'vitest';
import { createJacobianEngine } from '../../src/linearize/jacobian.js';
import { buildGraph, expectJvpMatchesFd, floatInit, makeNode, randomInit, rng } from './helpers.js';

describe('binary ops', () => {
  it('Add/Sub/Mul/Div with constants, broadcasting the tangent to a wider output', async () => {
    const r = rng(41);
    const g = buildGraph({
      inputs: [['x', ['N', 3, 1]]],
      outputs: ['add', 'sub', 'mul', 'div', 'rdiv'],
      nodes: [
        makeNode('Add', ['x', 'c'], ['add']), // [1,3,1] + [1,3,4] -> [1,3,4]
        makeNode('Sub', ['c', 'x'], ['sub']),
        makeNode('Mul', ['x', 'c'], ['mul']),
        makeNode('Div', ['x', 'c'], ['div']),
        makeNode('Mul', ['x', 'x'], ['xx']),
        makeNode('Add', ['xx', 'one'], ['den']),
        makeNode('Div', ['c', 'den'], ['rdiv']), // c / (x^2 + 1): quotient rule with a varying denominator
      ],
      initializers: [randomInit(r, 'c', [1, 3, 4], 2), floatInit('one', [], [1])],
    });
    await expectJvpMatchesFd(g);
  });

  it('Add/Sub/Mul/Div between two varying tensors', async () => {
    const r = rng(42);
    const g = buildGraph({
      inputs: [['x', ['N', 5]]],
      outputs: ['add', 'sub', 'mul', 'div'],
      nodes: [
        makeNode('MatMul', ['x', 'w1'], ['a']),
        makeNode('MatMul', ['x', 'w2'], ['b0']),
        makeNode('Mul', ['b0', 'b0'], ['b1']),
        makeNode('Add', ['b1', 'c'], ['b']), // b >= 1.5
        makeNode('Add', ['a', 'b'], ['add']),
        makeNode('Sub', ['a', 'b'], ['sub']),
        makeNode('Mul', ['a', 'b'], ['mul']),
        makeNode('Div', ['a', 'b'], ['div']),
      ],
      initializers: [randomInit(r, 'w1', [5, 4]), randomInit(r, 'w2', [5, 4]), floatInit('c', [4], [1.5, 1.5, 1.5, 1.5])],
    });
    await expectJvpMatchesFd(g);
  });

  it('Sum, Mean and Neg with a constant operand that widens the output', async () => {
    const r = rng(43);
    const g = buildGraph({
      inputs: [['x', ['N', 2, 1]]],
      outputs: ['s', 'm', 'n'],
      nodes: [makeNode('Relu', ['x'], ['rx']), makeNode('Sum', ['x', 'rx', 'c'], ['s']), makeNode('Mean', ['x', 'c'], ['m']), makeNode('Neg', ['x'], ['n'])],
      initializers: [randomInit(r, 'c', [2, 3])],
    });
    await expectJvpMatchesFd(g);
  });
});

describe('activations', () => {
  const act = (opset: number, nodes: ReturnType<typeof makeNode>[], outputs: string[], initializers = [] as ReturnType<typeof floatInit>[]) =>
    buildGraph({ opset, inputs: [['x', ['N', 3, 4]]], outputs, nodes, initializers });

  it('Relu, LeakyRelu, PRelu', async () => {
    const g = act(
      13,
      [
        makeNode('Relu', ['x'], ['relu']),
        makeNode('LeakyRelu', ['x'], ['leaky'], { attributes: { alpha: 0.2 }, floatAttributes: ['alpha'] }),
        makeNode('PRelu', ['x', 'slope'], ['prelu']),
      ],
      ['relu', 'leaky', 'prelu'],
      [floatInit('slope', [3, 1], [0.1, -0.5, 2])],
    );
    await expectJvpMatchesFd(g);
  });

  it("Relu'(0) = 0 and LeakyRelu'(0) = alpha", async () => {
    const g = act(
      13,
      [makeNode('Relu', ['x'], ['relu']), makeNode('LeakyRelu', ['x'], ['leaky'], { attributes: { alpha: 0.25 }, floatAttributes: ['alpha'] })],
      ['relu', 'leaky'],
    );
    const e = await createJacobianEngine(g, { mode: 'jvp' });
    try {
      const point = Float32Array.from({ length: 12 }, (_, i) => (i % 3) - 1); // -1, 0, 1, ...
      const { J, cols } = await e.jacobian(point);
      for (let i = 0; i < 12; i++) {
        expect(J[i * cols + i]).toBe(point[i] > 0 ? 1 : 0);
        expect(J[(12 + i) * cols + i]).toBeCloseTo(point[i] > 0 ? 1 : 0.25, 6);
      }
    } finally {
      await e.release();
    }
  });

  it('Clip with min/max inputs (opset 13), only min, and attributes (opset 9)', async () => {
    await expectJvpMatchesFd(
      act(
        13,
        [makeNode('Clip', ['x', 'lo', 'hi'], ['both']), makeNode('Clip', ['x', 'lo'], ['min']), makeNode('Clip', ['x', '', 'hi'], ['max'])],
        ['both', 'min', 'max'],
        [floatInit('lo', [], [-0.5]), floatInit('hi', [], [0.7])],
      ),
    );
    await expectJvpMatchesFd(act(9, [makeNode('Clip', ['x'], ['y'], { attributes: { min: -0.5, max: 0.7 }, floatAttributes: ['min', 'max'] })], ['y']));
  });

  it('Clip at its bounds has derivative 0 (open interval)', async () => {
    const g = act(13, [makeNode('Clip', ['x', 'lo', 'hi'], ['y'])], ['y'], [floatInit('lo', [], [-0.5]), floatInit('hi', [], [0.5])]);
    const e = await createJacobianEngine(g, { mode: 'jvp' });
    try {
      const point = Float32Array.from({ length: 12 }, (_, i) => [-0.5, 0.5, 0.25, -1][i % 4]);
      const { J, cols } = await e.jacobian(point);
      for (let i = 0; i < 12; i++) expect(J[i * cols + i]).toBe(point[i] === 0.25 ? 1 : 0);
    } finally {
      await e.release();
    }
  });

  it('Sigmoid and Tanh', async () => {
    await expectJvpMatchesFd(act(13, [makeNode('Sigmoid', ['x'], ['s']), makeNode('Tanh', ['x'], ['t'])], ['s', 't']));
  });

  it('Exp, Erf, Softplus, Sin, Cos, Elu, Selu, Celu, Softsign (opset 13)', async () => {
    const ops: [string, Record<string, number>][] = [
      ['Exp', {}],
      ['Erf', {}],
      ['Softplus', {}],
      ['Sin', {}],
      ['Cos', {}],
      ['Elu', { alpha: 0.7 }],
      ['Selu', {}],
      ['Celu', { alpha: 1.5 }],
      ['Softsign', {}],
    ];
    await expectJvpMatchesFd(
      act(
        13,
        ops.map(([op, attributes]) => makeNode(op, ['x'], [op], { attributes, floatAttributes: Object.keys(attributes) })),
        ops.map(([op]) => op),
      ),
    );
  });

  it('HardSigmoid and HardSwish across their corners (opset 14), Mish (opset 18), Gelu and its tanh form (opset 20)', async () => {
    // x spread to sd 3, so that the corners at -3 and 3 (HardSwish) and -2.5, 2.5 (HardSigmoid) lie among the points
    const spread = (opset: number, nodes: ReturnType<typeof makeNode>[], outputs: string[]) =>
      act(opset, [makeNode('Mul', ['x', 'three'], ['x3']), ...nodes], outputs, [floatInit('three', [], [3])]);
    await expectJvpMatchesFd(
      spread(
        14,
        [
          makeNode('HardSigmoid', ['x3'], ['hs']),
          makeNode('HardSigmoid', ['x3'], ['hs2'], { attributes: { alpha: -0.3, beta: 0.4 }, floatAttributes: ['alpha', 'beta'] }),
          makeNode('HardSwish', ['x3'], ['hw']),
        ],
        ['hs', 'hs2', 'hw'],
      ),
    );
    await expectJvpMatchesFd(spread(18, [makeNode('Mish', ['x3'], ['m'])], ['m']));
    await expectJvpMatchesFd(
      spread(20, [makeNode('Gelu', ['x3'], ['g']), makeNode('Gelu', ['x3'], ['gt'], { attributes: { approximate: 'tanh' } })], ['g', 'gt']),
    );
  });

  it('Softmax and LogSoftmax at opset 13 (axis -1, axis 1)', async () => {
    await expectJvpMatchesFd(
      act(
        13,
        [makeNode('Softmax', ['x'], ['s']), makeNode('Softmax', ['x'], ['s1'], { attributes: { axis: 1 } }), makeNode('LogSoftmax', ['x'], ['l'])],
        ['s', 's1', 'l'],
      ),
    );
  });

  it('Softmax and LogSoftmax at opset 11 (coerced to 2-D at axis 1 and axis 2)', async () => {
    await expectJvpMatchesFd(
      act(
        11,
        [
          makeNode('Softmax', ['x'], ['s']),
          makeNode('Softmax', ['x'], ['s2'], { attributes: { axis: 2 } }),
          makeNode('LogSoftmax', ['x'], ['l'], { attributes: { axis: 1 } }),
        ],
        ['s', 's2', 'l'],
      ),
    );
  });
});
