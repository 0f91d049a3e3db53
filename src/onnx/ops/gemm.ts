/**
 * Gemm: Y = alpha * A' B' + beta * C. The tangent is alpha * T_A' B' + beta * T_C. A is [1, K]
 * (batch 1) and its tangent [k, K]; a varying B, or a varying A with transA = 1 (where the batch
 * would be A's column axis), is not covered.
 */
import { attrFloat, attrInt } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { unbroadcast } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { requireSameRank } from './tangentChecks.js';

const gemmTangent: TangentRule = (c) => {
  if (c.t(1)) c.unsupported('input B varies (only A and C may)');
  const alpha = attrFloat(c.node, 'alpha', 1);
  const beta = attrFloat(c.node, 'beta', 1);
  const transA = attrInt(c.node, 'transA', 0);
  const transB = attrInt(c.node, 'transB', 0);
  const terms: string[] = [];
  const ta = c.t(0);
  if (ta) {
    if (transA) c.unsupported('input A varies and transA = 1 (the batch axis would be a column axis)');
    const inputs = [ta, c.x(1)];
    // C is optional from opset 11 on; before that a broadcastable zero stands in for it.
    if (c.opset < 11) inputs.push(c.b.floats([0], [1]));
    terms.push(c.b.op('Gemm', inputs, { alpha, beta: c.opset < 11 ? 0 : undefined, transB }, ['alpha', 'beta']));
  }
  const tc = c.t(2);
  if (tc) {
    requireSameRank(c, c.x(2), c.y(0));
    const scaled = beta === 1 ? tc : c.b.op('Mul', [tc, c.b.scalar(beta)]);
    terms.push(ta ? scaled : c.b.expandLike(scaled, c.x(2), c.y(0)));
  }
  return [terms.length === 1 ? terms[0] : c.b.op('Add', terms)];
};

/**
 * Gemm's adjoint: A gets alpha U B'^T (a Gemm of U and B with transB flipped), C gets beta U summed
 * over the axes C broadcasts along.
 */
const gemmAdjoint: AdjointRule = (c) => {
  if (c.varies(1)) c.unsupported('input B varies (only A and C may)');
  const u = c.ct(0);
  const out: (string | undefined)[] = c.node.inputs.map(() => undefined);
  if (!u) return out;
  const alpha = attrFloat(c.node, 'alpha', 1);
  const beta = attrFloat(c.node, 'beta', 1);
  if (c.varies(0)) {
    if (attrInt(c.node, 'transA', 0)) c.unsupported('input A varies and transA = 1 (the batch axis would be a column axis)');
    const inputs = [u, c.x(1)];
    if (c.opset < 11) inputs.push(c.b.floats([0], [1]));
    const transB = attrInt(c.node, 'transB', 0) ? 0 : 1;
    out[0] = c.b.op('Gemm', inputs, { alpha, beta: c.opset < 11 ? 0 : undefined, transB }, ['alpha', 'beta']);
  }
  if (c.varies(2)) out[2] = unbroadcast(c, beta === 1 ? u : c.b.op('Mul', [u, c.b.scalar(beta)]), c.x(2), c.y(0));
  return out;
};

export const gemm: OpDefinition = { tangent: gemmTangent, adjoint: gemmAdjoint };
