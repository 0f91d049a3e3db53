/** Neg: linear. */
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const neg: TangentRule = (c) => [c.b.op('Neg', [onlyData(c)])];
