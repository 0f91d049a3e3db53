/**
 * ReduceSum and ReduceMean are linear: the same reduction of the tangent, over axes that must not
 * include the batch axis. Axes are an attribute (ReduceMean before 18, ReduceSum before 13) or an
 * input; no axes means all axes (the batch axis too) unless noop_with_empty_axes is set.
 */
import { attrInt, attrInts } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { onlyDataVaries, staticShape } from './adjointHelpers.js';
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

/**
 * The adjoint of a reduction over constant non-batch axes: the cotangent (unsqueezed back where
 * keepdims = 0) spread over the reduced axes, divided by their size for ReduceMean.
 */
function reduceAdjoint(mean: boolean, inputSince: number): AdjointRule {
  return (c) => {
    onlyDataVaries(c);
    const u = c.ct(0);
    const none = c.node.inputs.map(() => undefined);
    if (!u) return none;
    const xs = staticShape(c, c.x(0));
    const raw = c.opset < inputSince ? attrInts(c.node, 'axes') : c.x(1) ? c.b.constantInts(c.x(1)) : undefined;
    if (c.opset >= inputSince && c.x(1) && !raw) c.unsupported('its axes are not build-time constants');
    if (!raw || raw.length === 0) {
      if (c.opset >= inputSince && attrInt(c.node, 'noop_with_empty_axes', 0) === 1) return [u, ...none.slice(1)];
      return c.unsupported('it reduces over all axes, the batch axis included');
    }
    const axes = raw.map((a) => (a < 0 ? a + xs.length : a)).sort((a, b) => a - b);
    if (axes.includes(0)) c.unsupported('it reduces over the batch axis');
    const kept = attrInt(c.node, 'keepdims', 1) === 1 ? u : c.b.unsqueeze(u, axes);
    const count = axes.reduce((a, ax) => a * xs[ax], 1);
    const scaled = mean ? c.b.op('Mul', [kept, c.b.scalar(1 / count)]) : kept;
    c.b.requireOpset(8, 'Expand');
    return [c.b.op('Expand', [scaled, c.b.batchShape(c.x(0))]), ...none.slice(1)];
  };
}

export const reduceSum: OpDefinition = { tangent: reduce('ReduceSum', 13), adjoint: reduceAdjoint(false, 13) };
export const reduceMean: OpDefinition = { tangent: reduce('ReduceMean', 18), adjoint: reduceAdjoint(true, 18) };
