/**
 * The ops the linearizer has tangent (JVP) rules for. One registry: `inspect` reads it to say
 * whether a split is supported, the tangent-graph builder reads the rules from it.
 */
const LINEARIZABLE_OPS = [
  'Conv', 'Gemm', 'MatMul', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'LeakyRelu', 'PRelu', 'Clip', 'MaxPool',
  'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Flatten', 'Reshape', 'Transpose', 'Squeeze',
  'Unsqueeze', 'Concat', 'Slice', 'Pad', 'Identity', 'Dropout', 'Sigmoid', 'Tanh', 'Softmax',
  // integer shape computations carry no tangent
  'Shape', 'Gather', 'Constant', 'ConstantOfShape', 'Cast',
];

const set = new Set(LINEARIZABLE_OPS);

export function isLinearizable(opType: string): boolean {
  return set.has(opType);
}

export function linearizableOps(): string[] {
  return [...LINEARIZABLE_OPS];
}
