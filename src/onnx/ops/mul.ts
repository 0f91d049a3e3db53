/** Mul: d(a b) = T_a b + a T_b (product rule); the other operand broadcasts the tangent to the output. */
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { unbroadcast } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { requireSameRank } from './tangentChecks.js';

const mulTangent: TangentRule = (c) => {
  const ta = c.t(0);
  const tb = c.t(1);
  if (ta) requireSameRank(c, c.x(0), c.y(0));
  if (tb) requireSameRank(c, c.x(1), c.y(0));
  const terms: string[] = [];
  if (ta) terms.push(c.b.op('Mul', [ta, c.x(1)]));
  if (tb) terms.push(c.b.op('Mul', [c.x(0), tb]));
  return [terms.length === 1 ? terms[0] : c.b.op('Add', terms)];
};

/** Mul's adjoint: a gets u b, b gets u a, each un-broadcast to its operand's shape. */
const mulAdjoint: AdjointRule = (c) => {
  const u = c.ct(0);
  return [0, 1].map((i) => (u && c.varies(i) ? unbroadcast(c, c.b.op('Mul', [u, c.x(1 - i)]), c.x(i), c.y(0)) : undefined));
};

export const mul: OpDefinition = { tangent: mulTangent, adjoint: mulAdjoint };
