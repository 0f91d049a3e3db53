/** Relu: T * (x > 0), so ReLU'(0) = 0. The mask comes from the primal (batch 1) and broadcasts. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const reluTangent: TangentRule = (c) => {
  const t = onlyData(c);
  return [c.b.op('Mul', [t, c.b.positiveMask(c.x(0))])];
};

/** Slope 0 below 0 and 1 above: one kink at 0. */
export const relu: OpDefinition = { tangent: reluTangent, adjoint: selfAdjoint(reluTangent), kinks: () => ({ kind: 'unit', at: [0] }) };
