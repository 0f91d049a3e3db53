/**
 * Tangent rules of the linear ops (Conv, ConvTranspose, Gemm, MatMul, pooling, BatchNormalization):
 * each on a tiny in-memory model, JVP Jacobian vs central finite differences at a random point
 * (float32 runs: |J_jvp - J_fd| <= 2e-3 * max(1, max |J|), FD step 1e-3).
 */
import { describe, it } from 'vitest';
import { buildGraph, expectJvpMatchesFd, floatInit, makeNode, randomInit, rng } from './helpers.js';

describe('Conv', () => {
  it('strides, asymmetric pads, dilations, bias (tangent has no bias)', async () => {
    const r = rng(11);
    const g = buildGraph({
      inputs: [['x', ['N', 2, 7, 7]]],
      outputs: ['y'],
      nodes: [makeNode('Conv', ['x', 'w', 'b'], ['y'], { attributes: { strides: [2, 2], pads: [1, 0, 1, 2], dilations: [1, 2] } })],
      initializers: [randomInit(r, 'w', [4, 2, 3, 3]), randomInit(r, 'b', [4], 3)],
    });
    await expectJvpMatchesFd(g);
  });

  it('groups and auto_pad SAME_UPPER, fixed batch 1', async () => {
    const r = rng(12);
    const g = buildGraph({
      inputs: [['x', [1, 4, 6, 5]]],
      outputs: ['y'],
      nodes: [makeNode('Conv', ['x', 'w'], ['y'], { attributes: { group: 2, strides: [2, 2], auto_pad: 'SAME_UPPER', kernel_shape: [3, 3] } })],
      initializers: [randomInit(r, 'w', [4, 2, 3, 3])],
    });
    await expectJvpMatchesFd(g);
  });

  it('depthwise with auto_pad SAME_LOWER, then Relu', async () => {
    const r = rng(13);
    const g = buildGraph({
      inputs: [['x', ['N', 3, 5, 5]]],
      outputs: ['y'],
      nodes: [makeNode('Conv', ['x', 'w', 'b'], ['c'], { attributes: { group: 3, auto_pad: 'SAME_LOWER' } }), makeNode('Relu', ['c'], ['y'])],
      initializers: [randomInit(r, 'w', [3, 1, 2, 2]), randomInit(r, 'b', [3])],
    });
    await expectJvpMatchesFd(g);
  });

  it('ConvTranspose with strides and output_padding', async () => {
    const r = rng(14);
    const g = buildGraph({
      inputs: [['x', ['N', 3, 4, 4]]],
      outputs: ['y'],
      nodes: [makeNode('ConvTranspose', ['x', 'w', 'b'], ['y'], { attributes: { strides: [2, 2], output_padding: [1, 1] } })],
      initializers: [randomInit(r, 'w', [3, 2, 3, 3]), randomInit(r, 'b', [2])],
    });
    await expectJvpMatchesFd(g);
  });
});

describe('Gemm and MatMul', () => {
  it('Gemm transB, alpha, beta with a constant C', async () => {
    const r = rng(21);
    const g = buildGraph({
      inputs: [['x', ['N', 6]]],
      outputs: ['y'],
      nodes: [makeNode('Gemm', ['x', 'w', 'c'], ['y'], { attributes: { transB: 1, alpha: 0.7, beta: 1.3 }, floatAttributes: ['alpha', 'beta'] })],
      initializers: [randomInit(r, 'w', [4, 6]), randomInit(r, 'c', [4])],
    });
    await expectJvpMatchesFd(g);
  });

  it('Gemm with a varying C (tangent of the C term) and beta', async () => {
    const r = rng(22);
    const g = buildGraph({
      inputs: [['x', ['N', 6]]],
      outputs: ['y'],
      nodes: [
        makeNode('MatMul', ['x', 'v'], ['c']),
        makeNode('Gemm', ['x', 'w', 'c'], ['y'], { attributes: { beta: 0.5, alpha: 2 }, floatAttributes: ['alpha', 'beta'] }),
      ],
      initializers: [randomInit(r, 'w', [6, 4]), randomInit(r, 'v', [6, 4])],
    });
    await expectJvpMatchesFd(g);
  });

  it('Gemm at opset 9 (C required) and without C at opset 13', async () => {
    const r = rng(23);
    for (const opset of [9, 13]) {
      const g = buildGraph({
        opset,
        inputs: [['x', ['N', 5]]],
        outputs: ['y'],
        nodes: [makeNode('Gemm', ['x', 'w', ...(opset === 9 ? ['c'] : [])], ['y'], { attributes: { transB: 1 } })],
        initializers: [randomInit(r, 'w', [3, 5]), randomInit(r, 'c', [1, 3])],
      });
      await expectJvpMatchesFd(g);
    }
  });

  it('MatMul 2-D and 3-D, and between two varying tensors (product rule)', async () => {
    const r = rng(24);
    const g = buildGraph({
      inputs: [['x', ['N', 2, 3]]],
      outputs: ['y2', 'y3', 'yp'],
      nodes: [
        makeNode('Flatten', ['x'], ['f']),
        makeNode('MatMul', ['f', 'w2'], ['y2']),
        makeNode('MatMul', ['x', 'w3'], ['y3']),
        makeNode('Transpose', ['x'], ['xt'], { attributes: { perm: [0, 2, 1] } }),
        makeNode('MatMul', ['x', 'xt'], ['yp']),
      ],
      initializers: [randomInit(r, 'w2', [6, 4]), randomInit(r, 'w3', [3, 5])],
    });
    await expectJvpMatchesFd(g);
  });
});

describe('pooling and BatchNormalization', () => {
  it('AveragePool with pads, count_include_pad 0 and 1, ceil_mode', async () => {
    for (const count_include_pad of [0, 1]) {
      const g = buildGraph({
        inputs: [['x', ['N', 2, 5, 5]]],
        outputs: ['y'],
        nodes: [
          makeNode('AveragePool', ['x'], ['y'], {
            attributes: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad, ceil_mode: 1 },
          }),
        ],
      });
      await expectJvpMatchesFd(g);
    }
  });

  it('GlobalAveragePool and GlobalMaxPool', async () => {
    const g = buildGraph({
      inputs: [['x', ['N', 3, 4, 5]]],
      outputs: ['a', 'm'],
      nodes: [makeNode('GlobalAveragePool', ['x'], ['a']), makeNode('GlobalMaxPool', ['x'], ['m'])],
    });
    await expectJvpMatchesFd(g);
  });

  it('BatchNormalization (inference) at opsets 9 and 15', async () => {
    const r = rng(31);
    for (const opset of [9, 15]) {
      const g = buildGraph({
        opset,
        inputs: [['x', ['N', 3, 4, 4]]],
        outputs: ['y'],
        nodes: [makeNode('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'], { attributes: { epsilon: 1e-3 }, floatAttributes: ['epsilon'] })],
        initializers: [randomInit(r, 's', [3], 2), randomInit(r, 'b', [3]), randomInit(r, 'm', [3]), floatInit('v', [3], [0.5, 2, 0.01])],
      });
      await expectJvpMatchesFd(g);
    }
  });

  it('BatchNormalization on [N, C] (BatchNorm1d)', async () => {
    const r = rng(32);
    const g = buildGraph({
      inputs: [['x', ['N', 4]]],
      outputs: ['y'],
      nodes: [makeNode('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'])],
      initializers: [randomInit(r, 's', [4]), randomInit(r, 'b', [4]), randomInit(r, 'm', [4]), floatInit('v', [4], [1, 2, 3, 4])],
    });
    await expectJvpMatchesFd(g);
  });
});
