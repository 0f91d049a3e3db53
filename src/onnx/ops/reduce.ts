/**
 * ReduceSum and ReduceMean are linear: the same reduction of the tangent, over axes that must not
 * include the batch axis. Axes are an attribute (ReduceMean before 18, ReduceSum before 13) or an
 * input; no axes means all axes (the batch axis too) unless noop_with_empty_axes is set.
 */
import { attrInt, attrInts } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis, onlyData } from './tangentChecks.js';

function reduce(opType: 'ReduceSum' | 'ReduceMean', inputSince: number): TangentRule {
  return (c) => {
    const t = onlyData(c);
    const axes = c.opset < inputSince ? attrInts(c.node, 'axes') : c.x(1) ? c.b.constantInts(c.x(1)) : undefined;
    if (c.opset >= inputSince && c.x(1) && !axes) c.unsupported('its axes are not build-time constants');
    if (!axes || axes.length === 0) {
      if (c.opset >= inputSince && attrInt(c.node, 'noop_with_empty_axes', 0) === 1) return [t];
      return c.unsupported('it reduces over all axes, the batch axis included');
    }
    if (axes.some((a) => isBatchAxis(c, a, c.x(0)))) c.unsupported('it reduces over the batch axis');
    return [c.b.op(opType, [t, ...c.node.inputs.slice(1)], c.b.attrsOf(c.node))];
  };
}

export const reduceSum: OpDefinition = { tangent: reduce('ReduceSum', 13) };
export const reduceMean: OpDefinition = { tangent: reduce('ReduceMean', 18) };
