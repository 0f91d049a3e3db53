/** Div: d(a / b) = (T_a - y T_b) / b with y = a / b (quotient rule). */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { requireSameRank } from './tangentChecks.js';

const divTangent: TangentRule = (c) => {
  const ta = c.t(0);
  const tb = c.t(1);
  if (ta) requireSameRank(c, c.x(0), c.y(0));
  if (tb) requireSameRank(c, c.x(1), c.y(0));
  if (!tb) return [c.b.op('Div', [ta!, c.x(1)])];
  const ytb = c.b.op('Mul', [c.y(0), tb]);
  const num = ta ? c.b.op('Sub', [ta, ytb]) : c.b.op('Neg', [ytb]);
  return [c.b.op('Div', [num, c.x(1)])];
};

export const div: OpDefinition = { tangent: divTangent };
