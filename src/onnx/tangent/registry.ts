/**
 * The ops the linearizer has tangent (JVP) rules for: one registry, opType -> rule. `inspect` reads
 * it (isLinearizable) to say whether a split is supported; the tangent-graph driver (build.ts)
 * reads the rules from it. A rule can still decline a particular use of its op (a varying weight,
 * a permutation that moves the batch axis); the driver then reports the op as unsupported.
 */
import type { TangentRule } from './types.js';
import { add, mean, sub, sum } from './rules/add.js';
import { averagePool, globalAveragePool } from './rules/averagePool.js';
import { batchNormalization } from './rules/batchNormalization.js';
import { cast } from './rules/cast.js';
import { clip } from './rules/clip.js';
import { concat } from './rules/concat.js';
import { conv, convTranspose } from './rules/conv.js';
import { div } from './rules/div.js';
import { expand } from './rules/expand.js';
import { gather } from './rules/gather.js';
import { gemm } from './rules/gemm.js';
import { globalMaxPool } from './rules/globalMaxPool.js';
import { dropout, identity } from './rules/identity.js';
import { leakyRelu } from './rules/leakyRelu.js';
import { matmul } from './rules/matmul.js';
import { maxPool } from './rules/maxPool.js';
import { mul } from './rules/mul.js';
import { neg } from './rules/neg.js';
import { NO_TANGENT_OPS, noTangent } from './rules/noTangent.js';
import { pad } from './rules/pad.js';
import { prelu } from './rules/prelu.js';
import { reduceMean, reduceSum } from './rules/reduce.js';
import { relu } from './rules/relu.js';
import { reshapeLike } from './rules/reshape.js';
import { sigmoid } from './rules/sigmoid.js';
import { slice } from './rules/slice.js';
import { logSoftmax, softmax } from './rules/softmax.js';
import { split } from './rules/split.js';
import { tanh } from './rules/tanh.js';
import { transpose } from './rules/transpose.js';
import { where } from './rules/where.js';

const RULES: Record<string, TangentRule> = {
  Conv: conv,
  ConvTranspose: convTranspose,
  Gemm: gemm,
  MatMul: matmul,
  Add: add,
  Sub: sub,
  Sum: sum,
  Mean: mean,
  Mul: mul,
  Div: div,
  Neg: neg,
  Relu: relu,
  LeakyRelu: leakyRelu,
  PRelu: prelu,
  Clip: clip,
  MaxPool: maxPool,
  GlobalMaxPool: globalMaxPool,
  AveragePool: averagePool,
  GlobalAveragePool: globalAveragePool,
  BatchNormalization: batchNormalization,
  Flatten: reshapeLike,
  Reshape: reshapeLike,
  Squeeze: reshapeLike,
  Unsqueeze: reshapeLike,
  Transpose: transpose,
  Concat: concat,
  Slice: slice,
  Pad: pad,
  Identity: identity,
  Dropout: dropout,
  Sigmoid: sigmoid,
  Tanh: tanh,
  Softmax: softmax,
  LogSoftmax: logSoftmax,
  Cast: cast,
  Gather: gather,
  Expand: expand,
  Where: where,
  ReduceSum: reduceSum,
  ReduceMean: reduceMean,
  Split: split,
  ...Object.fromEntries(NO_TANGENT_OPS.map((op) => [op, noTangent])),
};

/** The rule for an op of the default ONNX domain, if there is one. */
export function tangentRule(opType: string, domain = ''): TangentRule | undefined {
  if (domain !== '' && domain !== 'ai.onnx') return undefined;
  return Object.prototype.hasOwnProperty.call(RULES, opType) ? RULES[opType] : undefined;
}

export function isLinearizable(opType: string): boolean {
  return tangentRule(opType) !== undefined;
}

export function linearizableOps(): string[] {
  return Object.keys(RULES).sort();
}

/** Ops whose outputs never carry a tangent (shape and index computations). */
export function hasNoTangent(opType: string): boolean {
  return RULES[opType] === noTangent;
}
