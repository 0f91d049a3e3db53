/** Tanh: T * (1 - y^2), from the primal output y. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const tanhTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const y = c.y(0);
  const d = c.b.op('Sub', [c.b.scalar(1), c.b.op('Mul', [y, y])]);
  return [c.b.op('Mul', [t, d])];
};

export const tanh: OpDefinition = { tangent: tanhTangent, adjoint: selfAdjoint(tanhTangent), smooth: true };
