/** Sigmoid: T * y (1 - y), from the primal output y. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const sigmoidTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const y = c.y(0);
  const d = c.b.op('Mul', [y, c.b.op('Sub', [c.b.scalar(1), y])]);
  return [c.b.op('Mul', [t, d])];
};

export const sigmoid: OpDefinition = { tangent: sigmoidTangent, adjoint: selfAdjoint(sigmoidTangent), smooth: true };
