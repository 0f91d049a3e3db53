/**
 * Small in-memory ONNX models for the model-layer tests (seeded Gaussian weights), built with the
 * proto builders: FC nets, a conv net with a residual Add across a ReLU, a net whose top reads the
 * model input directly, batch-1 exports (constant Reshape shapes and a torch-style
 * Shape/Gather/Concat chain), a net without ReLU, a ReLU inside an If body.
 */
import {
  DataType,
  encodeModel,
  makeModel,
  makeNode,
  makeTensor,
  makeValueInfo,
  type GraphProto,
  type ModelSpec,
  type NodeProto,
  type TensorProto,
} from '../../src/onnx/proto.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export function randn(r: () => number, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => r() * scale);
}

function w(name: string, dims: number[], r: () => number, scale = 0.5): TensorProto {
  return makeTensor(
    name,
    DataType.FLOAT,
    dims,
    randn(
      r,
      dims.reduce((a, b) => a * b, 1),
      scale,
    ),
  );
}

function model(g: GraphProto, spec: ModelSpec = {}): Uint8Array {
  return encodeModel(makeModel(g, spec));
}

/** x [N, n] -> (Gemm, Relu) per hidden layer -> Gemm -> y [N, out]. */
export function fcNet(n = 6, hidden: number[] = [5, 4], out = 3, seed = 1): Uint8Array {
  const r = rng(seed);
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  let prev = 'x';
  let width = n;
  hidden.forEach((h, i) => {
    inits.push(w(`W${i}`, [h, width], r), w(`b${i}`, [h], r));
    nodes.push(makeNode('Gemm', [prev, `W${i}`, `b${i}`], [`h${i}`], { name: `fc${i}`, attributes: { transB: 1 } }));
    nodes.push(makeNode('Relu', [`h${i}`], [`r${i}`], { name: `relu${i}` }));
    prev = `r${i}`;
    width = h;
  });
  inits.push(w('Wout', [out, width], r), w('bout', [out], r));
  nodes.push(makeNode('Gemm', [prev, 'Wout', 'bout'], ['y'], { name: 'fcout', attributes: { transB: 1 } }));
  return model({
    name: 'fc',
    node: nodes,
    input: [makeValueInfo('x', DataType.FLOAT, ['N', n])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', out])],
    initializer: inits,
  });
}

/**
 * Residual conv net: x [N,1,6,6] -> conv1 -> a; relu(a) -> r1; conv2(r1) -> b; s = conv_skip(x);
 * c = b + a + s (a is ReLU 0's own input, s comes from below the cut); relu(c) -> r2; flatten -> fc -> y.
 */
export function residualNet(seed = 2): Uint8Array {
  const r = rng(seed);
  const conv = { kernel_shape: [3, 3], pads: [1, 1, 1, 1] };
  return model(
    {
      name: 'residual',
      node: [
        makeNode('Conv', ['x', 'W1', 'B1'], ['a'], { name: 'conv1', attributes: conv }),
        makeNode('Relu', ['a'], ['r1'], { name: 'relu1' }),
        makeNode('Conv', ['r1', 'W2', 'B2'], ['b'], { name: 'conv2', attributes: conv }),
        makeNode('Conv', ['x', 'Ws'], ['s'], { name: 'conv_skip', attributes: { kernel_shape: [1, 1] } }),
        makeNode('Add', ['b', 'a'], ['ba'], { name: 'add1' }),
        makeNode('Add', ['ba', 's'], ['c'], { name: 'add2' }),
        makeNode('Relu', ['c'], ['r2'], { name: 'relu2' }),
        makeNode('MaxPool', ['r2'], ['p'], { name: 'pool', attributes: { kernel_shape: [2, 2], strides: [2, 2] } }),
        makeNode('Flatten', ['p'], ['f'], { name: 'flatten', attributes: { axis: 1 } }),
        makeNode('Gemm', ['f', 'Wf', 'Bf'], ['y'], { name: 'fc', attributes: { transB: 1 } }),
      ],
      input: [makeValueInfo('x', DataType.FLOAT, ['N', 1, 6, 6])],
      output: [makeValueInfo('y', DataType.FLOAT, ['N', 4])],
      initializer: [
        w('W1', [2, 1, 3, 3], r),
        w('B1', [2], r),
        w('W2', [2, 2, 3, 3], r),
        w('B2', [2], r),
        w('Ws', [2, 1, 1, 1], r),
        w('Wf', [4, 18], r),
        w('Bf', [4], r),
        makeTensor('unused', DataType.FLOAT, [3], [1, 2, 3]),
      ],
    },
    { metadata: { 'netmoments.preprocess': 'x - 127.5', author: 'test' } },
  );
}

/** x [N,4] -> Gemm -> relu -> Gemm -> z; y = z + x (the top reads the model input directly). */
export function inputSkipNet(seed = 3): Uint8Array {
  const r = rng(seed);
  return model({
    name: 'inputskip',
    node: [
      makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['z'], { name: 'fc2', attributes: { transB: 1 } }),
      makeNode('Add', ['z', 'x'], ['y'], { name: 'add' }),
    ],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 4])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 4])],
    initializer: [w('W1', [5, 4], r), w('b1', [5], r), w('W2', [4, 5], r), w('b2', [4], r)],
  });
}

/**
 * Batch fixed at 1: x [1,1,4,4] -> conv -> relu -> Reshape by the constant [1, -1] (an initializer)
 * -> fc -> relu -> Reshape by a Constant node [1, 2, 3] -> Reshape by [1, 6] -> y [1, 6].
 */
export function batch1Net(seed = 4): Uint8Array {
  const r = rng(seed);
  return model({
    name: 'batch1',
    node: [
      makeNode('Conv', ['x', 'W1', 'B1'], ['a'], { name: 'conv', attributes: { kernel_shape: [3, 3] } }),
      makeNode('Relu', ['a'], ['r1'], { name: 'relu1' }),
      makeNode('Reshape', ['r1', 'shape_flat'], ['f'], { name: 'reshape1' }),
      makeNode('Gemm', ['f', 'W2', 'B2'], ['h'], { name: 'fc', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r2'], { name: 'relu2' }),
      makeNode('Constant', [], ['shape3'], { name: 'const3', attributes: { value: makeTensor('', DataType.INT64, [3], [1, 2, 3]) } }),
      makeNode('Reshape', ['r2', 'shape3'], ['g'], { name: 'reshape2' }),
      makeNode('Reshape', ['g', 'shape_out'], ['y'], { name: 'reshape3' }),
    ],
    input: [makeValueInfo('x', DataType.FLOAT, [1, 1, 4, 4])],
    output: [makeValueInfo('y', DataType.FLOAT, [1, 6])],
    initializer: [
      w('W1', [2, 1, 3, 3], r),
      w('B1', [2], r),
      makeTensor('shape_flat', DataType.INT64, [2], [1, -1]),
      w('W2', [6, 8], r),
      w('B2', [6], r),
      makeTensor('shape_out', DataType.INT64, [2], [1, 6]),
    ],
    valueInfo: [makeValueInfo('f', DataType.FLOAT, [1, 8]), makeValueInfo('g', DataType.FLOAT, [1, 2, 3])],
  });
}

/** Torch-style batch-1 export: flatten through Shape -> Gather -> Unsqueeze -> Concat -> Reshape. */
export function torchBatch1Net(seed = 5): Uint8Array {
  const r = rng(seed);
  return model(
    {
      name: 'torch_batch1',
      node: [
        makeNode('Conv', ['input', 'conv.weight', 'conv.bias'], ['/conv/Conv_output_0'], { name: '/conv/Conv', attributes: { kernel_shape: [3, 3] } }),
        makeNode('Relu', ['/conv/Conv_output_0'], ['/relu/Relu_output_0'], { name: '/relu/Relu' }),
        makeNode('Shape', ['/relu/Relu_output_0'], ['/Shape_output_0'], { name: '/Shape' }),
        makeNode('Constant', [], ['/Constant_output_0'], { name: '/Constant', attributes: { value: makeTensor('', DataType.INT64, [], [0]) } }),
        makeNode('Gather', ['/Shape_output_0', '/Constant_output_0'], ['/Gather_output_0'], { name: '/Gather', attributes: { axis: 0 } }),
        makeNode('Constant', [], ['/Constant_1_output_0'], { name: '/Constant_1', attributes: { value: makeTensor('', DataType.INT64, [1], [0]) } }),
        makeNode('Unsqueeze', ['/Gather_output_0', '/Constant_1_output_0'], ['/Unsqueeze_output_0'], { name: '/Unsqueeze' }),
        makeNode('Constant', [], ['/Constant_2_output_0'], { name: '/Constant_2', attributes: { value: makeTensor('', DataType.INT64, [1], [-1]) } }),
        makeNode('Concat', ['/Unsqueeze_output_0', '/Constant_2_output_0'], ['/Concat_output_0'], { name: '/Concat', attributes: { axis: 0 } }),
        makeNode('Reshape', ['/relu/Relu_output_0', '/Concat_output_0'], ['/Reshape_output_0'], { name: '/Reshape' }),
        makeNode('Gemm', ['/Reshape_output_0', 'fc.weight', 'fc.bias'], ['/fc/Gemm_output_0'], { name: '/fc/Gemm', attributes: { transB: 1 } }),
        makeNode('Relu', ['/fc/Gemm_output_0'], ['/relu_1/Relu_output_0'], { name: '/relu_1/Relu' }),
        makeNode('Gemm', ['/relu_1/Relu_output_0', 'out.weight', 'out.bias'], ['output'], { name: '/out/Gemm', attributes: { transB: 1 } }),
      ],
      input: [makeValueInfo('input', DataType.FLOAT, [1, 1, 5, 5])],
      output: [makeValueInfo('output', DataType.FLOAT, [1, 3])],
      initializer: [
        w('conv.weight', [3, 1, 3, 3], r),
        w('conv.bias', [3], r),
        w('fc.weight', [7, 27], r),
        w('fc.bias', [7], r),
        w('out.weight', [3, 7], r),
        w('out.bias', [3], r),
      ],
    },
    { producerName: 'pytorch', producerVersion: '2.1.0', opset: 13 },
  );
}

/** Two outputs: one above the cut, one below it (an auxiliary head). */
export function twoHeadNet(seed = 6): Uint8Array {
  const r = rng(seed);
  return model({
    name: 'twohead',
    node: [
      makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
      makeNode('Gemm', ['h', 'W3', 'b3'], ['aux'], { name: 'fc3', attributes: { transB: 1 } }),
    ],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 4])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 2]), makeValueInfo('aux', DataType.FLOAT, ['N', 3])],
    initializer: [w('W1', [5, 4], r), w('b1', [5], r), w('W2', [2, 5], r), w('b2', [2], r), w('W3', [3, 5], r), w('b3', [3], r)],
  });
}

/** No ReLU at all: x -> Gemm -> Tanh -> y. */
export function noReluNet(seed = 7): Uint8Array {
  const r = rng(seed);
  return model({
    name: 'norelu',
    node: [makeNode('Gemm', ['x', 'W', 'b'], ['h'], { name: 'fc', attributes: { transB: 1 } }), makeNode('Tanh', ['h'], ['y'], { name: 'tanh' })],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 3])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 2])],
    initializer: [w('W', [2, 3], r), w('b', [2], r)],
  });
}

/** The only ReLU lives in the then-branch of an If node. */
export function reluInIfNet(): Uint8Array {
  const branch = (name: string, op: string): GraphProto => ({
    name,
    node: [makeNode(op, ['x'], [`${name}_out`], { name: `${name}_${op}` })],
    input: [],
    output: [makeValueInfo(`${name}_out`, DataType.FLOAT, ['N', 3])],
    initializer: [],
  });
  return model({
    name: 'ifnet',
    node: [
      makeNode('ReduceSum', ['x'], ['sum'], { name: 'sum', attributes: { keepdims: 0 } }),
      makeNode('Constant', [], ['zero'], { name: 'zero', attributes: { value: makeTensor('', DataType.FLOAT, [], [0]) } }),
      makeNode('Greater', ['sum', 'zero'], ['cond'], { name: 'gt' }),
      makeNode('If', ['cond'], ['y'], { name: 'branch', attributes: { then_branch: branch('then', 'Relu'), else_branch: branch('else', 'Neg') } }),
    ],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 3])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 3])],
    initializer: [],
  });
}

/** Generic builder for malformed-model tests: one Relu over x [N, n] with the given initializers. */
export function reluNetWith(inits: TensorProto[], extraNodes: NodeProto[] = [], n = 3): Uint8Array {
  return model({
    name: 'tiny',
    node: [makeNode('Relu', ['x'], ['r'], { name: 'relu' }), ...extraNodes],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', n])],
    output: [makeValueInfo(extraNodes.length > 0 ? extraNodes[extraNodes.length - 1].output![0] : 'r', DataType.FLOAT, ['N', n])],
    initializer: inits,
  });
}

/** float64 throughout: x [N,3] float64 -> Gemm -> Relu -> Gemm -> y float64. */
export function float64Net(seed = 8): Uint8Array {
  const r = rng(seed);
  const d = (name: string, dims: number[]): TensorProto =>
    makeTensor(
      name,
      DataType.DOUBLE,
      dims,
      Array.from(
        randn(
          r,
          dims.reduce((a, b) => a * b, 1),
        ),
      ),
    );
  return model({
    name: 'f64',
    node: [
      makeNode('Gemm', ['x', 'W1', 'b1'], ['h'], { name: 'fc1', attributes: { transB: 1 } }),
      makeNode('Relu', ['h'], ['r'], { name: 'relu' }),
      makeNode('Gemm', ['r', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
    ],
    input: [makeValueInfo('x', DataType.DOUBLE, ['N', 3])],
    output: [makeValueInfo('y', DataType.DOUBLE, ['N', 2])],
    initializer: [d('W1', [4, 3]), d('b1', [4]), d('W2', [2, 4]), d('b2', [2])],
  });
}

export const ALL_MODELS: Record<string, () => Uint8Array> = {
  float64: () => float64Net(),
  fc: () => fcNet(),
  fcDeep: () => fcNet(8, [6, 5, 4, 3], 2, 11),
  residual: () => residualNet(),
  inputSkip: () => inputSkipNet(),
  twoHead: () => twoHeadNet(),
  torchBatch1: () => torchBatch1Net(),
  batch1: () => batch1Net(),
};

/**
 * Two data inputs: x [N, 4] (noisy) and c [N, 3] (a condition), each through a Gemm, concatenated
 * on axis 1, Relu, Gemm -> y [N, 2]. A fixed value for c must reach every row of a batch of x.
 */
export function twoInputNet(seed = 9): Uint8Array {
  const r = rng(seed);
  return model({
    name: 'twoinput',
    node: [
      makeNode('Gemm', ['x', 'Wx', 'bx'], ['hx'], { name: 'fcx', attributes: { transB: 1 } }),
      makeNode('Gemm', ['c', 'Wc', 'bc'], ['hc'], { name: 'fcc', attributes: { transB: 1 } }),
      makeNode('Concat', ['hx', 'hc'], ['h'], { name: 'cat', attributes: { axis: 1 } }),
      makeNode('Relu', ['h'], ['a'], { name: 'relu' }),
      makeNode('Gemm', ['a', 'W2', 'b2'], ['y'], { name: 'fc2', attributes: { transB: 1 } }),
    ],
    input: [makeValueInfo('x', DataType.FLOAT, ['N', 4]), makeValueInfo('c', DataType.FLOAT, ['N', 3])],
    output: [makeValueInfo('y', DataType.FLOAT, ['N', 2])],
    initializer: [w('Wx', [5, 4], r), w('bx', [5], r), w('Wc', [5, 3], r), w('bc', [5], r), w('W2', [2, 10], r), w('b2', [2], r)],
  });
}
