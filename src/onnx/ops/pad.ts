/**
 * Pad: the same pads on the tangent; constant mode pads the tangent with 0, reflect and edge copy
 * the tangent like the primal. pads are an attribute ('paddings' in Pad-1, 'pads' in Pad-2) before
 * opset 11 and an input from opset 11 on (axes an optional input from opset 18). The batch axis
 * must not be padded.
 */
import { attrInts, attrString } from '../graph.js';
import type { AdjointRule, RuleContext, TangentRule } from '../tangent/types.js';
import { onlyDataVaries, sliceConst, staticShape } from './adjointHelpers.js';
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

/** Pad's adjoint (constant mode, pads >= 0): the cotangent cut back to the input's extent on every padded axis. */
const padAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  const none = c.node.inputs.map(() => undefined);
  if (!u) return none;
  if (attrString(c.node, 'mode', 'constant') !== 'constant')
    c.unsupported(`mode '${attrString(c.node, 'mode', 'constant')}' (only constant padding has an adjoint rule)`);
  if (c.opset >= 11 && c.x(3)) c.unsupported('it has an axes input');
  const pads = c.opset < 11 ? (attrInts(c.node, 'pads') ?? attrInts(c.node, 'paddings')) : c.b.constantInts(c.x(1));
  if (!pads) return c.unsupported('its pads are not build-time constants');
  const xs = staticShape(c, c.x(0));
  const rank = xs.length;
  if (pads.some((p) => p < 0)) c.unsupported('negative pads');
  if (pads[0] !== 0 || pads[rank] !== 0) c.unsupported('it pads the batch axis');
  const axes: number[] = [];
  for (let a = 1; a < rank; a++) if (pads[a] !== 0 || pads[a + rank] !== 0) axes.push(a);
  if (axes.length === 0) return [u, ...none.slice(1)];
  const starts = axes.map((a) => pads[a]);
  return [
    sliceConst(
      c,
      u,
      starts,
      axes.map((a, i) => starts[i] + xs[a]),
      axes,
    ),
    ...none.slice(1),
  ];
};

export const pad: OpDefinition = { tangent: padTangent, adjoint: padAdjoint };
