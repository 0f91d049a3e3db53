/**
 * What netmoments knows about one ONNX op: its op definition. Every op has a file in src/onnx/ops/
 * (or shares one with ops that share its rules, e.g. reshape.ts for Flatten, Reshape, Squeeze and
 * Unsqueeze) exporting an OpDefinition, and registry.ts maps op types to definitions; nothing
 * outside the registry switches on op type names to learn what an op does.
 *
 * Fields:
 * - tangent: the forward-mode (JVP) rule the tangent-graph driver (src/onnx/tangent/build.ts)
 *   calls; its contract is src/onnx/tangent/types.ts.
 * - smooth: the op is curved everywhere (a linearization is only its tangent; trust warns).
 * - kinks: where the op's derivative jumps, for piecewise-linear ops (the layers whose expected
 *   state changes the linearizer counts). Absent: the op is smooth or linear where it is defined.
 *
 * - adjoint: the reverse-mode (VJP) rule the adjoint-graph driver (src/onnx/tangent/reverse.ts)
 *   calls (contract in src/onnx/tangent/types.ts, AdjointContext); absent: reverse mode is
 *   unavailable for a model part that uses the op, and its Jacobians are built forward.
 *
 * A later issue adds the moment rule (how the op maps the mean and covariance of a Gaussian input)
 * as a further optional field.
 */
import type { Graph, GraphNode } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import type { PoolWindows } from './poolWindows.js';

/**
 * Unit-wise kinks: every element of input 0 goes through the same piecewise-linear function, whose
 * slope changes at the sorted input values `at` (Relu, LeakyRelu, PRelu: [0]; Clip: [min, max]).
 */
export interface UnitKinks {
  kind: 'unit';
  at: readonly number[];
}

/**
 * Window kinks: each output element is the maximum of a window of input-0 elements; the derivative
 * jumps where a window's winner changes (MaxPool).
 */
export interface WindowKinks {
  kind: 'window';
  windows: PoolWindows;
}

export type Kinks = UnitKinks | WindowKinks;

/** Per-sample dims (no batch axis) of a tensor of the graph; may throw when they are unknown. */
export type TensorDims = (tensor: string) => readonly number[];

/**
 * Where a node's derivative jumps, or undefined when that cannot be known before running the graph
 * (a Clip bound computed at run time, a pooling rank the window geometry does not cover, window
 * kinks asked for without `dims`) or when there is none (a Clip without bounds).
 */
export type KinkRule = (graph: Graph, node: GraphNode, dims?: TensorDims) => Kinks | undefined;

export interface OpDefinition {
  /** The forward-mode (JVP) rule. */
  readonly tangent: TangentRule;
  /** The reverse-mode (VJP) rule, where there is one. */
  readonly adjoint?: AdjointRule;
  /** Where the derivative jumps (piecewise-linear ops only). */
  readonly kinks?: KinkRule;
  /** The op is curved: neither linear nor piecewise linear (Sigmoid, Tanh, Softmax); a linearization replaces it by its tangent. */
  readonly smooth?: boolean;
}
