/** Split along a non-batch axis: the same split of the tangent, one tangent per output. */
import { attrInt } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis, onlyData } from './tangentChecks.js';

const splitTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const axis = attrInt(c.node, 'axis', 0);
  if (isBatchAxis(c, axis, c.x(0))) c.unsupported('it splits along the batch axis');
  return c.b.emit('Split', [t, ...c.node.inputs.slice(1)], c.node.outputs.length, c.b.attrsOf(c.node));
};

export const split: OpDefinition = { tangent: splitTangent };
