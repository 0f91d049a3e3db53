/** PRelu: slope 1 where x > 0, the (constant) slope tensor elsewhere. */
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const prelu: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (the slope must not vary)');
  const mask = c.b.positiveMask(c.x(0));
  const off = c.b.op('Sub', [c.b.scalar(1), mask]);
  const slope = c.b.op('Add', [mask, c.b.op('Mul', [off, c.x(1)])]);
  return [c.b.op('Mul', [t, slope])];
};
