/** Transpose: the same permutation, which must keep the batch axis first. */
import { attrInts } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { onlyDataVaries } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { onlyData } from './tangentChecks.js';

const transposeTangent: TangentRule = (c) => {
  const t = onlyData(c);
  const perm = attrInts(c.node, 'perm');
  if (!perm) {
    if (c.b.rank(c.x(0)) === 1) return [t];
    return c.unsupported('without perm it reverses the axes, which moves the batch axis');
  }
  if (perm[0] !== 0) c.unsupported(`perm [${perm.join(', ')}] moves the batch axis`);
  return [c.b.op('Transpose', [t], { perm })];
};

/** Transpose's adjoint: the inverse permutation (which keeps the batch axis first too). */
const transposeAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  if (!u) return [undefined];
  const perm = attrInts(c.node, 'perm');
  if (!perm) {
    if (c.b.rank(c.x(0)) === 1) return [u];
    return c.unsupported('without perm it reverses the axes, which moves the batch axis');
  }
  if (perm[0] !== 0) c.unsupported(`perm [${perm.join(', ')}] moves the batch axis`);
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return [c.b.op('Transpose', [u], { perm: inverse })];
};

export const transpose: OpDefinition = { tangent: transposeTangent, adjoint: transposeAdjoint };
