/** AveragePool is linear: the same pooling (same pads, count_include_pad, ceil_mode) of the tangent. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { onlyData } from './tangentChecks.js';

const averagePoolTangent: TangentRule = (c) => [c.b.op('AveragePool', [onlyData(c)], c.b.attrsOf(c.node))];

/** GlobalAveragePool is linear. */
const globalAveragePoolTangent: TangentRule = (c) => [c.b.op('GlobalAveragePool', [onlyData(c)])];

export const averagePool: OpDefinition = { tangent: averagePoolTangent };
export const globalAveragePool: OpDefinition = { tangent: globalAveragePoolTangent };
