/** Concat along a non-batch axis: concatenate the tangents, zeros for the inputs that do not vary. */
import { attrInt } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis } from './tangentChecks.js';

const concatTangent: TangentRule = (c) => {
  const axis = attrInt(c.node, 'axis', c.opset < 4 ? 1 : 0);
  if (isBatchAxis(c, axis, c.y(0))) c.unsupported('it concatenates along the batch axis');
  const parts = c.node.inputs.map((x, i) => c.t(i) ?? c.b.zerosLike(x));
  return [c.b.op('Concat', parts, { axis })];
};

export const concat: OpDefinition = { tangent: concatTangent };
