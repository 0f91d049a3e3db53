/** Add and Sub: d(a +- b) = T_a +- T_b, broadcast to the output's shape when only one side varies. */
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { unbroadcast } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { requireSameRank } from './tangentChecks.js';

function addSub(opType: 'Add' | 'Sub'): TangentRule {
  return (c) => {
    const ta = c.t(0);
    const tb = c.t(1);
    if (ta) requireSameRank(c, c.x(0), c.y(0));
    if (tb) requireSameRank(c, c.x(1), c.y(0));
    if (ta && tb) return [c.b.op(opType, [ta, tb])];
    if (ta) return [c.b.expandLike(ta, c.x(0), c.y(0))];
    const nb = opType === 'Sub' ? c.b.op('Neg', [tb!]) : tb!;
    return [c.b.expandLike(nb, c.x(1), c.y(0))];
  };
}

/** Sum (variadic Add): the sum of the varying tangents, broadcast to the output. */
const sumTangent: TangentRule = (c) => {
  const terms: { t: string; x: string }[] = [];
  c.node.inputs.forEach((x, i) => {
    const t = c.t(i);
    if (t) {
      requireSameRank(c, x, c.y(0));
      terms.push({ t, x });
    }
  });
  const s =
    terms.length === 1
      ? terms[0].t
      : c.b.op(
          'Sum',
          terms.map((e) => e.t),
        );
  return [
    c.b.expandLike(
      s,
      terms.map((e) => e.x),
      c.y(0),
    ),
  ];
};

/** Mean: the mean of the inputs' tangents (zero for constant inputs). */
const meanTangent: TangentRule = (c) => {
  const [s] = sumTangent(c);
  return [c.b.op('Mul', [s!, c.b.scalar(1 / c.node.inputs.length)])];
};

/** Adjoint of a sum of (broadcast) operands, each scaled by `weight(i)`: u times the weight, un-broadcast to each varying operand. */
function sumAdjoint(weight: (i: number, n: number) => number): AdjointRule {
  return (c) => {
    const u = c.ct(0);
    const n = c.node.inputs.length;
    return c.node.inputs.map((x, i) => {
      if (!u || !c.varies(i)) return undefined;
      const w = weight(i, n);
      const scaled = w === 1 ? u : w === -1 ? c.b.op('Neg', [u]) : c.b.op('Mul', [u, c.b.scalar(w)]);
      return unbroadcast(c, scaled, x, c.y(0));
    });
  };
}

export const add: OpDefinition = { tangent: addSub('Add'), adjoint: sumAdjoint(() => 1) };
export const sub: OpDefinition = { tangent: addSub('Sub'), adjoint: sumAdjoint((i) => (i === 0 ? 1 : -1)) };
export const sum: OpDefinition = { tangent: sumTangent, adjoint: sumAdjoint(() => 1) };
export const mean: OpDefinition = { tangent: meanTangent, adjoint: sumAdjoint((_, n) => 1 / n) };
