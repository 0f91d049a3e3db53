/**
 * MatMul: d(A B) = T_A B + A T_B. A varying A must have rank >= 2 (its batch of 1 is a row axis);
 * a varying B must have rank >= 3 (its batch of 1 is a broadcast batch axis); checked when ranks are known.
 */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';

const matmulTangent: TangentRule = (c) => {
  const terms: string[] = [];
  const ta = c.t(0);
  const tb = c.t(1);
  if (ta) {
    const r = c.b.rank(c.x(0));
    if (r !== undefined && r < 2) c.unsupported(`varying input A has rank ${r}, so it has no batch axis`);
    terms.push(c.b.op('MatMul', [ta, c.x(1)]));
  }
  if (tb) {
    const r = c.b.rank(c.x(1));
    const ra = c.b.rank(c.x(0));
    // Unknown ranks are trusted: a rank-2 B would put the batch on the contraction axis, and the
    // run would then fail on mismatched dims rather than give a wrong answer.
    if ((r !== undefined && r < 3) || (r !== undefined && ra !== undefined && ra > r)) {
      c.unsupported(`varying input B needs rank >= 3 (at least that of A) so that its batch axis is a broadcast axis`);
    }
    terms.push(c.b.op('MatMul', [c.x(0), tb]));
  }
  return [terms.length === 1 ? terms[0] : c.b.op('Add', terms)];
};

export const matmul: OpDefinition = { tangent: matmulTangent };
