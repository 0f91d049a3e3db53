/**
 * In-memory networks for the Jacobian tests (the fixtures' shapes, random weights): a LeNet in two
 * export styles (dynamic batch with Flatten, opset 13; torch-style fixed batch 1 with a
 * Shape/Gather/Unsqueeze/Concat/Reshape flatten chain, opset 11), and a torch-style residual block
 * (conv-bn-relu + skip, GlobalAveragePool, opset 12, batch 1).
 */
import { readFileSync } from 'node:fs';
import { parseNpy, npyToFloat32 } from '../../src/data/npy.js';
import type { Graph } from '../../src/onnx/graph.js';
import { DataType } from '../../src/onnx/proto.js';
import { buildGraph, floatInit, intInit, makeNode, randomInit, rng } from '../tangent/helpers.js';

const he = (fanIn: number) => Math.sqrt(2 / fanIn);

export function lenet(style: 'dynamic' | 'torch-batch1', seed = 5): Graph {
  const r = rng(seed);
  const flatten =
    style === 'dynamic'
      ? [makeNode('Flatten', ['p2'], ['flat'])]
      : [
          makeNode('Shape', ['p2'], ['shape']),
          makeNode('Constant', [], ['c0'], { attributes: { value: { name: 'c0', dataType: DataType.INT64, dims: [], int64Data: [0] } } }),
          makeNode('Gather', ['shape', 'c0'], ['n'], { attributes: { axis: 0 } }),
          makeNode('Unsqueeze', ['n'], ['n1'], { attributes: { axes: [0] } }),
          makeNode('Concat', ['n1', 'minus1'], ['target'], { attributes: { axis: 0 } }),
          makeNode('Reshape', ['p2', 'target'], ['flat']),
        ];
  return buildGraph({
    opset: style === 'dynamic' ? 13 : 11,
    inputs: [['input', [style === 'dynamic' ? 'N' : 1, 1, 28, 28]]],
    outputs: ['logits'],
    nodes: [
      makeNode('Conv', ['input', 'w1', 'b1'], ['c1'], { attributes: { kernel_shape: [5, 5], pads: [2, 2, 2, 2] } }),
      makeNode('Relu', ['c1'], ['r1']),
      makeNode('MaxPool', ['r1'], ['p1'], { attributes: { kernel_shape: [2, 2], strides: [2, 2] } }),
      makeNode('Conv', ['p1', 'w2', 'b2'], ['c2'], { attributes: { kernel_shape: [5, 5] } }),
      makeNode('Relu', ['c2'], ['r2']),
      makeNode('MaxPool', ['r2'], ['p2'], { attributes: { kernel_shape: [2, 2], strides: [2, 2] } }),
      ...flatten,
      makeNode('Gemm', ['flat', 'w3', 'b3'], ['f3'], { attributes: { transB: 1 } }),
      makeNode('Relu', ['f3'], ['r3']),
      makeNode('Gemm', ['r3', 'w4', 'b4'], ['f4'], { attributes: { transB: 1 } }),
      makeNode('Relu', ['f4'], ['r4']),
      makeNode('Gemm', ['r4', 'w5', 'b5'], ['logits'], { attributes: { transB: 1 } }),
    ],
    initializers: [
      randomInit(r, 'w1', [6, 1, 5, 5], he(25) / 127.5),
      randomInit(r, 'b1', [6], 0.1),
      randomInit(r, 'w2', [16, 6, 5, 5], he(150)),
      randomInit(r, 'b2', [16], 0.1),
      randomInit(r, 'w3', [120, 400], he(400)),
      randomInit(r, 'b3', [120], 0.1),
      randomInit(r, 'w4', [84, 120], he(120)),
      randomInit(r, 'b4', [84], 0.1),
      randomInit(r, 'w5', [10, 84], he(84)),
      randomInit(r, 'b5', [10], 0.1),
      intInit('minus1', [-1]),
    ],
  });
}

export function residualTorch(seed = 9): Graph {
  const r = rng(seed);
  const bn = (p: string, c: number) => [
    randomInit(r, `${p}_s`, [c], 0.5),
    randomInit(r, `${p}_b`, [c], 0.2),
    randomInit(r, `${p}_m`, [c], 0.2),
    floatInit(
      `${p}_v`,
      [c],
      Array.from({ length: c }, () => 0.5 + r.uniform()),
    ),
  ];
  return buildGraph({
    opset: 12,
    inputs: [['input', [1, 3, 8, 8]]],
    outputs: ['logits'],
    nodes: [
      makeNode('Conv', ['input', 'w0'], ['c0'], { attributes: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] } }),
      makeNode('BatchNormalization', ['c0', 'bn0_s', 'bn0_b', 'bn0_m', 'bn0_v'], ['n0']),
      makeNode('Relu', ['n0'], ['r0']),
      makeNode('Conv', ['r0', 'w1'], ['c1'], { attributes: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] } }),
      makeNode('BatchNormalization', ['c1', 'bn1_s', 'bn1_b', 'bn1_m', 'bn1_v'], ['n1']),
      makeNode('Relu', ['n1'], ['r1']),
      makeNode('Conv', ['r1', 'w2'], ['c2'], { attributes: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] } }),
      makeNode('BatchNormalization', ['c2', 'bn2_s', 'bn2_b', 'bn2_m', 'bn2_v'], ['n2']),
      makeNode('Add', ['n2', 'r0'], ['sum']),
      makeNode('Relu', ['sum'], ['r2']),
      makeNode('GlobalAveragePool', ['r2'], ['gap']),
      makeNode('Flatten', ['gap'], ['flat']),
      makeNode('Gemm', ['flat', 'wf', 'bf'], ['logits'], { attributes: { transB: 1 } }),
    ],
    initializers: [
      randomInit(r, 'w0', [8, 3, 3, 3], he(27)),
      randomInit(r, 'w1', [8, 8, 3, 3], he(72)),
      randomInit(r, 'w2', [8, 8, 3, 3], he(72)),
      ...bn('bn0', 8),
      ...bn('bn1', 8),
      ...bn('bn2', 8),
      randomInit(r, 'wf', [4, 8], he(8)),
      randomInit(r, 'bf', [4], 0.1),
    ],
  });
}

/** The bundled MNIST digit [1, 28, 28], in model units [-127.5, 127.5] (the paper's LeNet input range). */
export function digit(): Float32Array {
  return npyToFloat32(parseNpy(readFileSync(new URL('../../fixtures/mnist/digit-0.npy', import.meta.url))));
}
