/**
 * GlobalMaxPool: the tangent at each channel's argmax (first maximal element in row-major order,
 * ArgMax's default), via ArgMax over the flattened spatial axes and GatherElements.
 */
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import { onlyDataVaries } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { onlyData } from './tangentChecks.js';

const globalMaxPoolTangent: TangentRule = (c) => {
  const t = onlyData(c);
  c.b.requireOpset(11, 'GatherElements');
  const xf = c.b.op('Flatten', [c.x(0)], { axis: 2 }); // [C, HW] (batch 1)
  const idx = c.b.op('ArgMax', [xf], { axis: 1, keepdims: 1 }); // [C, 1]
  const t3 = c.b.op('Reshape', [t, c.b.op('Concat', [c.b.kvec(), c.b.op('Shape', [xf])], { axis: 0 })]); // [k, C, HW]
  const idx3 = c.b.op('Expand', [c.b.unsqueeze(idx, [0]), c.b.op('Concat', [c.b.kvec(), c.b.op('Shape', [idx])], { axis: 0 })]);
  const picked = c.b.op('GatherElements', [t3, idx3], { axis: 2 }); // [k, C, 1]
  return [c.b.reshapeLike(picked, c.y(0))];
};

/** GlobalMaxPool's adjoint: each channel's cotangent scattered to its argmax (the tangent rule's choice). */
const globalMaxPoolAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  if (!u) return [undefined];
  c.b.requireOpset(11, 'ScatterElements');
  const xf = c.b.op('Flatten', [c.x(0)], { axis: 2 }); // [C, HW] (batch 1)
  const idx = c.b.op('ArgMax', [xf], { axis: 1, keepdims: 1 }); // [C, 1]
  const shape3 = c.b.op('Concat', [c.b.kvec(), c.b.op('Shape', [idx])], { axis: 0 }); // [k, C, 1]
  const u3 = c.b.op('Reshape', [u, shape3]);
  const idx3 = c.b.op('Expand', [c.b.unsqueeze(idx, [0]), shape3]);
  const zeros = c.b.op('Expand', [c.b.scalar(0), c.b.op('Concat', [c.b.kvec(), c.b.op('Shape', [xf])], { axis: 0 })]); // [k, C, HW]
  return [c.b.reshapeLike(c.b.op('ScatterElements', [zeros, idx3, u3], { axis: 2 }), c.x(0))];
};

export const globalMaxPool: OpDefinition = { tangent: globalMaxPoolTangent, adjoint: globalMaxPoolAdjoint };
