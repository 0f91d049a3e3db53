/** Sigmoid: T * y (1 - y), from the primal output y. */
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const sigmoid: TangentRule = (c) => {
  const t = onlyData(c);
  const y = c.y(0);
  const d = c.b.op('Mul', [y, c.b.op('Sub', [c.b.scalar(1), y])]);
  return [c.b.op('Mul', [t, d])];
};
