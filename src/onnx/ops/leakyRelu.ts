/** LeakyRelu: slope 1 where x > 0, alpha elsewhere (alpha at 0, like ReLU'(0) = 0). */
import { attrFloat } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const leakyReluTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const alpha = attrFloat(c.node, 'alpha', 0.01);
  const mask = c.b.positiveMask(c.x(0));
  const slope = c.b.op('Add', [c.b.op('Mul', [mask, c.b.scalar(1 - alpha)]), c.b.scalar(alpha)]);
  return [c.b.op('Mul', [t, slope])];
};

/** Slope alpha below 0 and 1 above: one kink at 0. */
export const leakyRelu: OpDefinition = { tangent: leakyReluTangent, adjoint: selfAdjoint(leakyReluTangent), kinks: () => ({ kind: 'unit', at: [0] }) };
