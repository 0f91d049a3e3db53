/**
 * The contract between the tangent-graph driver (build.ts) and the per-op tangent rules (src/onnx/ops/*.ts).
 *
 * A rule sees one primal node and the tangent names of its varying inputs, emits ONNX nodes that
 * compute the tangents of the node's outputs for a batch of k directions, and returns one tangent
 * name per primal output (undefined: that output has no tangent, e.g. integer or boolean outputs).
 *
 * Convention: a primal tensor of shape [1, d1, ..., dr] (the primal branch runs with batch 1) has a
 * tangent of shape [k, d1, ..., dr]. Primal-derived tensors (masks, scales, indices) keep their
 * batch of 1 and broadcast against the tangents.
 */
import { NetmomentsError } from '../../errors.js';
import type { GraphNode } from '../graph.js';
import type { TangentBuilder } from './builder.js';

export interface RuleContext {
  /** The primal node (emitted unchanged into the tangent model). */
  readonly node: GraphNode;
  /** Opset of the default domain (the emitted graph keeps the model's opset). */
  readonly opset: number;
  readonly b: TangentBuilder;
  /** Tangent name of primal input i, or undefined when that input does not vary (or is omitted). */
  t(i: number): string | undefined;
  /** Primal name of input i ('' when omitted or absent). */
  x(i: number): string;
  /** Primal name of output i. */
  y(i: number): string;
  /** Throw the error that makes `auto` mode fall back to finite differences. */
  unsupported(reason: string): never;
}

export type TangentRule = (ctx: RuleContext) => (string | undefined)[];

/**
 * No tangent rule for an op (or a rule that does not cover this use of it). Carries the op so that
 * `--jacobian auto` can name it when it falls back to finite differences.
 */
export class MissingTangentRuleError extends NetmomentsError {
  readonly opType: string;
  readonly nodeName: string;
  readonly reason: string;

  constructor(opType: string, nodeName: string, reason: string) {
    super(`no tangent (JVP) rule for ${opType} node '${nodeName}': ${reason}`, { code: 'UNSUPPORTED' });
    this.name = 'MissingTangentRuleError';
    this.opType = opType;
    this.nodeName = nodeName;
    this.reason = reason;
  }
}
