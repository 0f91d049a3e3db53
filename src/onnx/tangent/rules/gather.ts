/** Gather of a varying (float) tensor along a non-batch axis: the same gather of the tangent. */
import { attrInt } from '../../graph.js';
import type { TangentRule } from '../types.js';
import { isBatchAxis, onlyData } from './util.js';

export const gather: TangentRule = (c) => {
  const t = onlyData(c);
  const axis = attrInt(c.node, 'axis', 0);
  if (isBatchAxis(c, axis, c.x(0))) c.unsupported('it gathers along the batch axis');
  return [c.b.op('Gather', [t, c.x(1)], { axis })];
};
