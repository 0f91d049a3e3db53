/** Add and Sub: d(a +- b) = T_a +- T_b, broadcast to the output's shape when only one side varies. */
import type { TangentRule } from '../tangent/types.js';
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

export const add: OpDefinition = { tangent: addSub('Add') };
export const sub: OpDefinition = { tangent: addSub('Sub') };
export const sum: OpDefinition = { tangent: sumTangent };
export const mean: OpDefinition = { tangent: meanTangent };
