/**
 * MatMul: d(A B) = T_A B + A T_B. A varying A must have rank >= 2 (its batch of 1 is a row axis);
 * a varying B must have rank >= 3 (its batch of 1 is a broadcast batch axis); checked when ranks are known.
 */
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { staticShape } from './adjointHelpers.js';
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

/** The last two axes of a rank-r tensor swapped. */
function swapLast(r: number): number[] {
  return [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
}

/**
 * MatMul's adjoint: A gets U B^T (B of rank 2, so that no axis of B broadcasts), B gets A^T U (A of
 * rank 2, B of rank >= 3 so its batch of 1 is a broadcast axis).
 */
const matmulAdjoint: AdjointRule = (c) => {
  const u = c.ct(0);
  const out: (string | undefined)[] = [undefined, undefined];
  if (!u) return out;
  const ra = staticShape(c, c.x(0)).length;
  const rb = staticShape(c, c.x(1)).length;
  if (c.varies(0)) {
    if (ra < 2 || rb !== 2) c.unsupported(`varying A of rank ${ra} times B of rank ${rb} (the adjoint covers rank >= 2 times rank 2)`);
    out[0] = c.b.op('MatMul', [u, c.b.op('Transpose', [c.x(1)], { perm: [1, 0] })]);
  }
  if (c.varies(1)) {
    if (ra !== 2 || rb < 3) c.unsupported(`A of rank ${ra} times varying B of rank ${rb} (the adjoint covers rank 2 times rank >= 3)`);
    out[1] = c.b.op('MatMul', [c.b.op('Transpose', [c.x(0)], { perm: swapLast(2) }), u]);
  }
  return out;
};

export const matmul: OpDefinition = { tangent: matmulTangent, adjoint: matmulAdjoint };
