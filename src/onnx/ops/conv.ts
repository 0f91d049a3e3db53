/** Conv is linear in its data input: the tangent is the same convolution with the same weights and no bias. */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { onlyData } from './tangentChecks.js';

const convTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (weights and bias must not vary)');
  return [c.b.op('Conv', [t, c.x(1)], c.b.attrsOf(c.node))];
};

/** ConvTranspose: likewise linear in its data input. */
const convTransposeTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (weights and bias must not vary)');
  return [c.b.op('ConvTranspose', [t, c.x(1)], c.b.attrsOf(c.node))];
};

export const conv: OpDefinition = { tangent: convTangent };
export const convTranspose: OpDefinition = { tangent: convTransposeTangent };
