/** Mul: d(a b) = T_a b + a T_b (product rule); the other operand broadcasts the tangent to the output. */
import type { TangentRule } from '../tangent/types.js';
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

export const mul: OpDefinition = { tangent: mulTangent };
