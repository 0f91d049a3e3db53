/** Concat along a non-batch axis: concatenate the tangents, zeros for the inputs that do not vary. */
import { attrInt } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { sliceConst, staticShape } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis } from './tangentChecks.js';

const concatTangent: TangentRule = (c) => {
  const axis = attrInt(c.node, 'axis', c.opset < 4 ? 1 : 0);
  if (isBatchAxis(c, axis, c.y(0))) c.unsupported('it concatenates along the batch axis');
  const parts = c.node.inputs.map((x, i) => c.t(i) ?? c.b.zerosLike(x));
  return [c.b.op('Concat', parts, { axis })];
};

/** Concat's adjoint: each varying input gets its slice of the cotangent along the axis. */
const concatAdjoint: AdjointRule = (c) => {
  const u = c.ct(0);
  if (!u) return c.node.inputs.map(() => undefined);
  const rank = staticShape(c, c.y(0)).length;
  const raw = attrInt(c.node, 'axis', c.opset < 4 ? 1 : 0);
  const axis = raw < 0 ? raw + rank : raw;
  if (axis === 0) c.unsupported('it concatenates along the batch axis');
  let offset = 0;
  return c.node.inputs.map((x, i) => {
    const size = staticShape(c, x)[axis];
    const start = offset;
    offset += size;
    return c.varies(i) ? sliceConst(c, u, [start], [start + size], [axis]) : undefined;
  });
};

export const concat: OpDefinition = { tangent: concatTangent, adjoint: concatAdjoint };
