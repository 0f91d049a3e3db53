/** Gather of a varying (float) tensor along a non-batch axis: the same gather of the tangent. */
import { attrInt } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis, onlyData } from './tangentChecks.js';

const gatherTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const axis = attrInt(c.node, 'axis', 0);
  if (isBatchAxis(c, axis, c.x(0))) c.unsupported('it gathers along the batch axis');
  return [c.b.op('Gather', [t, c.x(1)], { axis })];
};

export const gather: OpDefinition = { tangent: gatherTangent };
