/** Add and Sub: d(a +- b) = T_a +- T_b, broadcast to the output's shape when only one side varies. */
import type { TangentRule } from '../types.js';
import { requireSameRank } from './util.js';

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

export const add = addSub('Add');
export const sub = addSub('Sub');

/** Sum (variadic Add): the sum of the varying tangents, broadcast to the output. */
export const sum: TangentRule = (c) => {
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
export const mean: TangentRule = (c) => {
  const [s] = sum(c);
  return [c.b.op('Mul', [s!, c.b.scalar(1 / c.node.inputs.length)])];
};
