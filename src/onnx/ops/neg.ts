/** Neg: linear. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const negTangent: TangentRule = (c) => [c.b.op('Neg', [onlyData(c)])];

export const neg: OpDefinition = { tangent: negTangent, adjoint: selfAdjoint(negTangent) };
