/**
 * Ops that only relabel the row-major data (Reshape, Flatten, Squeeze, Unsqueeze): the tangent is
 * the tangent reshaped to [k, ...shape(y)[1:]]. This works whatever form the shape or axes take
 * (attributes, constants, or Shape/Gather/Unsqueeze/Concat chains computed on the primal, including
 * models exported with a fixed batch of 1), as long as the primal output keeps the batch of 1 in
 * front, which is checked when shapes are known and otherwise fails loudly at run time (the element
 * counts differ).
 */
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { reshapeAdjoint } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { onlyData, requireBatchOne } from './tangentChecks.js';

const reshapeLikeTangent: TangentRule = (c) => {
  const t = onlyData(c);
  requireBatchOne(c, c.y(0));
  return [c.b.reshapeLike(t, c.y(0))];
};

/** The adjoint: the cotangent reshaped back to the input (the output must keep the batch of 1 in front). */
const reshapeLikeAdjoint: AdjointRule = (c) => {
  const s = c.b.shape(c.y(0));
  if (s && (s.length === 0 || s[0] !== 1)) c.unsupported(`its output '${c.y(0)}' does not keep the batch of 1 in front`);
  return reshapeAdjoint(c);
};

export const reshapeLike: OpDefinition = { tangent: reshapeLikeTangent, adjoint: reshapeLikeAdjoint };
