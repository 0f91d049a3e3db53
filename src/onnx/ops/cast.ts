/** Cast: between floating types the tangent is cast alike; to integer or bool types there is none. */
import { attrInt } from '../graph.js';
import { DataType } from '../proto.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const FLOATS = new Set<number>([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);

const castTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const to = attrInt(c.node, 'to', 0);
  if (!FLOATS.has(to)) return [undefined];
  // Tangent runs are float32: a cast to another float type keeps the float32 tangent.
  return [t];
};

export const cast: OpDefinition = { tangent: castTangent, adjoint: selfAdjoint(castTangent) };
