/** Split along a non-batch axis: the same split of the tangent, one tangent per output. */
import { attrInt } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { onlyDataVaries, staticShape } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis, onlyData } from './tangentChecks.js';

const splitTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const axis = attrInt(c.node, 'axis', 0);
  if (isBatchAxis(c, axis, c.x(0))) c.unsupported('it splits along the batch axis');
  return c.b.emit('Split', [t, ...c.node.inputs.slice(1)], c.node.outputs.length, c.b.attrsOf(c.node));
};

/** Split's adjoint: the outputs' cotangents (zeros where an output has none) concatenated back along the axis. */
const splitAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const none = c.node.inputs.map(() => undefined);
  if (!c.node.outputs.some((_, i) => c.ct(i))) return none;
  const rank = staticShape(c, c.x(0)).length;
  const raw = attrInt(c.node, 'axis', 0);
  const axis = raw < 0 ? raw + rank : raw;
  if (axis === 0) c.unsupported('it splits along the batch axis');
  const parts = c.node.outputs.map((y, i) => c.ct(i) ?? c.b.zerosLike(y));
  return [c.b.op('Concat', parts, { axis }), ...none.slice(1)];
};

export const split: OpDefinition = { tangent: splitTangent, adjoint: splitAdjoint };
