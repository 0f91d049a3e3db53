/** Conv is linear in its data input: the tangent is the same convolution with the same weights and no bias. */
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const conv: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (weights and bias must not vary)');
  return [c.b.op('Conv', [t, c.x(1)], c.b.attrsOf(c.node))];
};

/** ConvTranspose: likewise linear in its data input. */
export const convTranspose: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (weights and bias must not vary)');
  return [c.b.op('ConvTranspose', [t, c.x(1)], c.b.attrsOf(c.node))];
};
