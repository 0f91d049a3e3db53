/**
 * Clip: T inside the open interval (min, max), 0 outside and at the bounds. min/max are attributes
 * before opset 11 and optional inputs from opset 11 on.
 */
import { attrFloat, hasAttr } from '../../graph.js';
import type { TangentRule } from '../types.js';
import { onlyData } from './util.js';

export const clip: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (min and max must not vary)');
  let lo: string | undefined;
  let hi: string | undefined;
  if (c.opset < 11) {
    if (hasAttr(c.node, 'min')) lo = c.b.scalar(attrFloat(c.node, 'min', 0));
    if (hasAttr(c.node, 'max')) hi = c.b.scalar(attrFloat(c.node, 'max', 0));
  } else {
    lo = c.x(1) || undefined;
    hi = c.x(2) || undefined;
  }
  const masks: string[] = [];
  if (lo) masks.push(c.b.floatMask(c.b.op('Greater', [c.x(0), lo])));
  if (hi) masks.push(c.b.floatMask(c.b.op('Less', [c.x(0), hi])));
  if (masks.length === 0) return [t];
  const mask = masks.length === 1 ? masks[0] : c.b.op('Mul', masks);
  return [c.b.op('Mul', [t, mask])];
};
