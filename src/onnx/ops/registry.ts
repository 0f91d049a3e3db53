/**
 * The op registry: op type -> op definition (types.ts), one definition per file of this folder.
 * The tangent-graph driver (src/onnx/tangent/build.ts) reads the tangent rules from it; `inspect`
 * asks it whether a split is supported (isLinearizable); the linearizer asks it where an op's
 * derivative jumps (kinksOf) to count expected state changes. A tangent rule can still decline a
 * particular use of its op (a varying weight, a permutation that moves the batch axis); the driver
 * then reports the op as unsupported. Only ops of the default ONNX domain are known.
 */
import type { Graph, GraphNode } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { isDefaultDomain } from './domain.js';
import type { Kinks, OpDefinition, TensorDims } from './types.js';
import { add, mean, sub, sum } from './add.js';
import { averagePool, globalAveragePool } from './averagePool.js';
import { batchNormalization } from './batchNormalization.js';
import { cast } from './cast.js';
import { clip } from './clip.js';
import { concat } from './concat.js';
import { conv, convTranspose } from './conv.js';
import { div } from './div.js';
import { expand } from './expand.js';
import { gather } from './gather.js';
import { gemm } from './gemm.js';
import { globalMaxPool } from './globalMaxPool.js';
import { dropout, identity } from './identity.js';
import { leakyRelu } from './leakyRelu.js';
import { matmul } from './matmul.js';
import { maxPool } from './maxPool.js';
import { mul } from './mul.js';
import { neg } from './neg.js';
import { NO_TANGENT_OPS, noTangent } from './noTangent.js';
import { pad } from './pad.js';
import { prelu } from './prelu.js';
import { reduceMean, reduceSum } from './reduce.js';
import { relu } from './relu.js';
import { reshapeLike } from './reshape.js';
import { sigmoid } from './sigmoid.js';
import { slice } from './slice.js';
import { logSoftmax, softmax } from './softmax.js';
import { split } from './split.js';
import { tanh } from './tanh.js';
import { resize } from './resize.js';
import { celu, cos, elu, erf, exp, gelu, hardSigmoid, hardSwish, mish, selu, sin, softplus, softsign } from './smoothUnits.js';
import { transpose } from './transpose.js';
import { where } from './where.js';

const OPS: Readonly<Record<string, OpDefinition>> = {
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
  Resize: resize,
  Upsample: resize,
  Exp: exp,
  Erf: erf,
  Softplus: softplus,
  Sin: sin,
  Cos: cos,
  Elu: elu,
  Selu: selu,
  Celu: celu,
  Softsign: softsign,
  HardSigmoid: hardSigmoid,
  HardSwish: hardSwish,
  Mish: mish,
  Gelu: gelu,
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

export { isDefaultDomain } from './domain.js';
export { isSplitPoint } from './splitPoint.js';

/** The definition of an op, if the registry knows it (ops of other domains: never). */
export function opDefinition(opType: string, domain = ''): OpDefinition | undefined {
  if (!isDefaultDomain(domain)) return undefined;
  return Object.prototype.hasOwnProperty.call(OPS, opType) ? OPS[opType] : undefined;
}

/** The tangent (JVP) rule for an op, if there is one. */
export function tangentRule(opType: string, domain = ''): TangentRule | undefined {
  return opDefinition(opType, domain)?.tangent;
}

/** The adjoint (VJP) rule for an op, if there is one (reverse mode is unavailable for parts with an op without one). */
export function adjointRule(opType: string, domain = ''): AdjointRule | undefined {
  return opDefinition(opType, domain)?.adjoint;
}

/** Every op type with an adjoint rule, sorted. */
export function adjointOps(): string[] {
  return Object.keys(OPS)
    .filter((op) => OPS[op].adjoint !== undefined)
    .sort();
}

/** Does the op (of the default domain) have a tangent rule? */
export function isLinearizable(opType: string): boolean {
  return tangentRule(opType) !== undefined;
}

/** Every op type with a tangent rule, sorted. */
export function linearizableOps(): string[] {
  return Object.keys(OPS).sort();
}

/** Ops whose outputs never carry a tangent (shape and index computations). */
export function hasNoTangent(opType: string): boolean {
  return opDefinition(opType) === noTangent;
}

/** Does the derivative of the op (of the default domain) jump somewhere (Relu, LeakyRelu, PRelu, Clip, MaxPool)? */
export function isKinked(opType: string, domain = ''): boolean {
  return opDefinition(opType, domain)?.kinks !== undefined;
}

/** Is the op (of the default domain) curved, neither linear nor piecewise linear (Sigmoid, Tanh, Softmax, LogSoftmax)? */
export function isSmooth(opType: string, domain = ''): boolean {
  return opDefinition(opType, domain)?.smooth === true;
}

/**
 * Where the derivative of `node` (a node of `graph`) jumps: unit-wise kinks of input 0 at constant
 * values, or the windows of a max pooling (which need `dims`, the per-sample dims of a tensor).
 * Undefined for smooth or linear ops, and where the kinks cannot be known before a run.
 */
export function kinksOf(graph: Graph, node: GraphNode, dims?: TensorDims): Kinks | undefined {
  return opDefinition(node.opType, node.domain)?.kinks?.(graph, node, dims);
}
