/** Expand: the same broadcast of the tangent (the target shape keeps the batch of 1 in front). */
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { onlyDataVaries, unbroadcast } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { onlyData, requireBatchOne, requireSameRank } from './tangentChecks.js';

const expandTangent: TangentRule = (c) => {
  const t = onlyData(c);
  requireBatchOne(c, c.y(0));
  requireSameRank(c, c.x(0), c.y(0));
  if (c.b.rank(c.x(0)) === undefined || c.b.rank(c.y(0)) === undefined) {
    const target = c.b.constantInts(c.x(1));
    if (!target || target[0] !== 1) c.unsupported('its target shape is not known to keep the batch axis first');
  }
  return [c.b.op('Expand', [t, c.x(1)])];
};

/** Expand's adjoint: the cotangent summed over the broadcast axes. */
const expandAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  return [u ? unbroadcast(c, u, c.x(0), c.y(0)) : undefined, undefined];
};

export const expand: OpDefinition = { tangent: expandTangent, adjoint: expandAdjoint };
