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

/**
 * The contract between the reverse (adjoint, VJP) graph driver (reverse.ts) and the per-op adjoint
 * rules. A rule sees one primal node and the cotangents of its outputs (a batch of k cotangent rows
 * U, one per output, shaped like the tangents: [k, ...shape(y)[1:]]) and emits ONNX nodes that
 * compute U J for each input that varies, J the node's Jacobian at the primal values. It returns one
 * cotangent name per primal input (undefined for inputs that do not vary). The check of every rule
 * is <u, J v> = <J^T u, v> against its tangent rule (test/tangent/adjoint.test.ts).
 */
export interface AdjointContext {
  readonly node: GraphNode;
  readonly opset: number;
  readonly b: TangentBuilder;
  /** Cotangent of primal output i, or undefined when that output does not reach the requested outputs. */
  ct(i: number): string | undefined;
  /** Whether primal input i varies (needs a cotangent). */
  varies(i: number): boolean;
  x(i: number): string;
  y(i: number): string;
  /** Throw the error that makes reverse mode unavailable for the part (the forward path is used). */
  unsupported(reason: string): never;
}

export type AdjointRule = (ctx: AdjointContext) => (string | undefined)[];

/** No adjoint rule for an op (or for this use of it): reverse mode is unavailable for the model part. */
export class MissingAdjointRuleError extends NetmomentsError {
  readonly opType: string;
  readonly nodeName: string;
  readonly reason: string;

  constructor(opType: string, nodeName: string, reason: string) {
    super(`no adjoint (VJP) rule for ${opType} node '${nodeName}': ${reason}`, { code: 'UNSUPPORTED' });
    this.name = 'MissingAdjointRuleError';
    this.opType = opType;
    this.nodeName = nodeName;
    this.reason = reason;
  }
}
