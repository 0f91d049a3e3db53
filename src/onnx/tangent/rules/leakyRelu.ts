/** LeakyRelu: slope 1 where x > 0, alpha elsewhere (alpha at 0, like ReLU'(0) = 0). */
import { attrFloat } from '../../graph.js';
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const leakyRelu: TangentRule = (c) => {
  const t = onlyData(c);
  const alpha = attrFloat(c.node, 'alpha', 0.01);
  const mask = c.b.positiveMask(c.x(0));
  const slope = c.b.op('Add', [c.b.op('Mul', [mask, c.b.scalar(1 - alpha)]), c.b.scalar(alpha)]);
  return [c.b.op('Mul', [t, slope])];
};
