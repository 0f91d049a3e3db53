/**
 * Pad: the same pads on the tangent; constant mode pads the tangent with 0, reflect and edge copy
 * the tangent like the primal. pads are an attribute ('paddings' in Pad-1, 'pads' in Pad-2) before
 * opset 11 and an input from opset 11 on (axes an optional input from opset 18). The batch axis
 * must not be padded.
 */
import { attrInts } from '../graph.js';
import type { RuleContext, TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis, onlyData } from './tangentChecks.js';

function checkPads(c: RuleContext, pads: number[] | undefined, axes: number[] | undefined): void {
  if (!pads) return;
  const n = pads.length / 2;
  const ax = axes ?? Array.from({ length: n }, (_, i) => i);
  ax.forEach((a, i) => {
    if (isBatchAxis(c, a, c.x(0)) && (pads[i] !== 0 || pads[i + n] !== 0)) c.unsupported('it pads the batch axis');
  });
}

const padTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (pads and the constant value must not vary)');
  if (c.opset < 11) {
    checkPads(c, attrInts(c.node, 'pads') ?? attrInts(c.node, 'paddings'), undefined);
    return [c.b.op('Pad', [t], c.b.attrsOf(c.node, ['value']))];
  }
  const axesName = c.x(3);
  const axes = axesName ? c.b.constantInts(axesName) : undefined;
  if (axesName && !axes) c.unsupported('its axes are not build-time constants');
  checkPads(c, c.b.constantInts(c.x(1)), axes);
  const inputs = axesName ? [t, c.x(1), '', axesName] : [t, c.x(1)];
  return [c.b.op('Pad', inputs, c.b.attrsOf(c.node))];
};

export const pad: OpDefinition = { tangent: padTangent };
