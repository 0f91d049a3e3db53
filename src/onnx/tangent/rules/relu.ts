/** Relu: T * (x > 0), so ReLU'(0) = 0. The mask comes from the primal (batch 1) and broadcasts. */
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const relu: TangentRule = (c) => {
  const t = onlyData(c);
  return [c.b.op('Mul', [t, c.b.positiveMask(c.x(0))])];
};
