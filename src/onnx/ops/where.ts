/** Where: the tangent of the chosen branch (zero for a constant branch), selected by the primal condition. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { requireSameRank } from './tangentChecks.js';

const whereTangent: TangentRule = (c) => {
  if (c.t(0)) c.unsupported('its condition varies');
  const ta = c.t(1);
  const tb = c.t(2);
  if (ta) requireSameRank(c, c.x(1), c.y(0));
  if (tb) requireSameRank(c, c.x(2), c.y(0));
  const r = c.b.op('Where', [c.x(0), ta ?? c.b.scalar(0), tb ?? c.b.scalar(0)]);
  return [c.b.expandLike(r, [c.x(0), ...(ta ? [c.x(1)] : []), ...(tb ? [c.x(2)] : [])], c.y(0))];
};

export const where: OpDefinition = { tangent: whereTangent };
