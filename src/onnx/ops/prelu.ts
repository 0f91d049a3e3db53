/** PRelu: slope 1 where x > 0, the (constant) slope tensor elsewhere. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const preluTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (the slope must not vary)');
  const mask = c.b.positiveMask(c.x(0));
  const off = c.b.op('Sub', [c.b.scalar(1), mask]);
  const slope = c.b.op('Add', [mask, c.b.op('Mul', [off, c.x(1)])]);
  return [c.b.op('Mul', [t, slope])];
};

/** Slope `slope` below 0 and 1 above: one kink at 0. */
export const prelu: OpDefinition = { tangent: preluTangent, adjoint: selfAdjoint(preluTangent), kinks: () => ({ kind: 'unit', at: [0] }) };
