/** Div: d(a / b) = (T_a - y T_b) / b with y = a / b (quotient rule). */
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { unbroadcast } from './adjointHelpers.js';
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

/** Div's adjoint: a gets u / b, b gets -u y / b (y = a / b), each un-broadcast to its operand's shape. */
const divAdjoint: AdjointRule = (c) => {
  const u = c.ct(0);
  if (!u) return [undefined, undefined];
  const ua = c.varies(0) ? unbroadcast(c, c.b.op('Div', [u, c.x(1)]), c.x(0), c.y(0)) : undefined;
  const ub = c.varies(1) ? unbroadcast(c, c.b.op('Neg', [c.b.op('Div', [c.b.op('Mul', [u, c.y(0)]), c.x(1)])]), c.x(1), c.y(0)) : undefined;
  return [ua, ub];
};

export const div: OpDefinition = { tangent: divTangent, adjoint: divAdjoint };
