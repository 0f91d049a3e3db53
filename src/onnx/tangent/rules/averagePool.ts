/** AveragePool is linear: the same pooling (same pads, count_include_pad, ceil_mode) of the tangent. */
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const averagePool: TangentRule = (c) => [c.b.op('AveragePool', [onlyData(c)], c.b.attrsOf(c.node))];

/** GlobalAveragePool is linear. */
export const globalAveragePool: TangentRule = (c) => [c.b.op('GlobalAveragePool', [onlyData(c)])];
