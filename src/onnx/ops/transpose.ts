/** Transpose: the same permutation, which must keep the batch axis first. */
import { attrInts } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
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

export const transpose: OpDefinition = { tangent: transposeTangent };
