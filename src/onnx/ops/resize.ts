/**
 * Resize (opset 10 on) and Upsample (opset 7-9): linear in the data for constant scales or sizes,
 * so the tangent is the same Resize of the tangent. Scales keep the batch (scale 1 on axis 0);
 * `sizes` name the batch of 1, so the tangent's sizes take the tangent's batch k instead. The
 * batch axis must not be resized. No adjoint rule: reverse mode is unavailable where one sits.
 */
import { attrFloats } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { onlyData } from './tangentChecks.js';

const resizeTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (roi, scales and sizes must not vary)');
  const inputs = [t, ...c.node.inputs.slice(1)];
  const scalesAt = c.node.opType === 'Upsample' || c.opset < 11 ? 1 : 2;
  // scales: an input (its values numbers), or Upsample-7's attribute
  const scales = inputs[scalesAt] ? c.b.constantInts(inputs[scalesAt]) : attrFloats(c.node, 'scales');
  if (scales && scales.length > 0 && scales[0] !== 1) c.unsupported('it resizes the batch axis');
  if (c.node.opType === 'Resize' && c.opset >= 11 && inputs[3]) {
    const sizes = c.b.constantInts(inputs[3]);
    if (!sizes) c.unsupported('its sizes are not build-time constants');
    else if (sizes[0] !== 1) c.unsupported('it resizes the batch axis');
    inputs[3] = c.b.op('Concat', [c.b.kvec(), c.b.slice1d(inputs[3], 1, undefined)], { axis: 0 });
  }
  return [c.b.op(c.node.opType, inputs, c.b.attrsOf(c.node))];
};

export const resize: OpDefinition = { tangent: resizeTangent };
