/** Tanh: T * (1 - y^2), from the primal output y. */
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const tanh: TangentRule = (c) => {
  const t = onlyData(c);
  const y = c.y(0);
  const d = c.b.op('Sub', [c.b.scalar(1), c.b.op('Mul', [y, y])]);
  return [c.b.op('Mul', [t, d])];
};
