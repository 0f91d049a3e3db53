/**
 * Softmax: s * (t - sum(s * t)) over the softmax axes; LogSoftmax: t - sum(exp(y) * t).
 * From opset 13 the op normalizes along one axis (default -1). Before opset 13 it coerces the input
 * to 2-D at `axis` (default 1) and normalizes over everything from `axis` on: the tangent is then
 * reshaped to [k, P, R] against the primal's [P, R], reduced over the last axis and reshaped back.
 */
import { attrInt } from '../graph.js';
import type { RuleContext, TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { isBatchAxis, onlyData } from './tangentChecks.js';

function softmaxLike(log: boolean): TangentRule {
  return (c: RuleContext) => {
    const t = onlyData(c);
    const y = c.y(0);
    const s = log ? c.b.op('Exp', [y]) : y;
    const finish = (tt: string, ss: string, sumAxis: number) => {
      const total = c.b.reduceSum(c.b.op('Mul', [ss, tt]), [sumAxis], true);
      const centred = c.b.op('Sub', [tt, total]);
      return log ? centred : c.b.op('Mul', [ss, centred]);
    };
    if (c.opset >= 13) {
      const axis = attrInt(c.node, 'axis', -1);
      if (isBatchAxis(c, axis, y)) c.unsupported('it normalizes over the batch axis');
      return [finish(t, s, axis)];
    }
    const axis = attrInt(c.node, 'axis', 1);
    const s2 = c.b.op('Flatten', [s], { axis }); // [P, R]
    const shape3 = c.b.op('Concat', [c.b.kvec(), c.b.op('Shape', [s2])], { axis: 0 });
    const t3 = c.b.op('Reshape', [t, shape3]); // [k, P, R]
    return [c.b.reshapeLike(finish(t3, s2, 2), y)];
  };
}

/** Softmax's Jacobian diag(s) - s s^T is symmetric: its adjoint is its tangent rule. LogSoftmax's is not (no adjoint rule). */
export const softmax: OpDefinition = { tangent: softmaxLike(false), adjoint: selfAdjoint(softmaxLike(false)), smooth: true };
export const logSoftmax: OpDefinition = { tangent: softmaxLike(true), smooth: true };
