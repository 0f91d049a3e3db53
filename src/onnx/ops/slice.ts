/**
 * Slice: the same slice of the tangent. Starts/ends/axes are attributes before opset 10 and inputs
 * (with optional steps) from opset 10 on. An entry on the batch axis must keep the primal's single
 * sample (start 0, step 1) and is dropped from the tangent's slice so that all k directions stay.
 */
import { attrInts } from '../graph.js';
import type { AdjointRule, RuleContext, TangentRule } from '../tangent/types.js';
import { onlyDataVaries, padZeros, staticShape } from './adjointHelpers.js';
import type { OpDefinition } from './types.js';
import { isBatchAxis, onlyData } from './tangentChecks.js';

interface Spec {
  starts: number[];
  ends: number[];
  axes: number[];
  steps: number[];
}

/** Remove the batch-axis entries (after checking they keep sample 0). */
function dropBatch(c: RuleContext, s: Spec): Spec {
  const out: Spec = { starts: [], ends: [], axes: [], steps: [] };
  s.axes.forEach((axis, i) => {
    if (isBatchAxis(c, axis, c.x(0))) {
      const start = s.starts[i];
      const end = s.ends[i];
      const keepsSample = s.steps[i] === 1 && (start === 0 || start <= -1) && end >= 1;
      if (!keepsSample) c.unsupported(`it slices the batch axis [${start}:${end}:${s.steps[i]}]`);
      return;
    }
    out.starts.push(s.starts[i]);
    out.ends.push(s.ends[i]);
    out.axes.push(axis);
    out.steps.push(s.steps[i]);
  });
  return out;
}

const sliceTangent: TangentRule = (c) => {
  const t = onlyData(c);
  if (c.opset < 10) {
    const starts = attrInts(c.node, 'starts') ?? [];
    const ends = attrInts(c.node, 'ends') ?? [];
    const axes = attrInts(c.node, 'axes') ?? starts.map((_, i) => i);
    const s = dropBatch(c, { starts, ends, axes, steps: starts.map(() => 1) });
    if (s.axes.length === 0) return [t];
    return [c.b.op('Slice', [t], { starts: s.starts, ends: s.ends, axes: s.axes })];
  }
  const starts = c.b.constantInts(c.x(1));
  const ends = c.b.constantInts(c.x(2));
  const axes = c.x(3) ? c.b.constantInts(c.x(3)) : undefined;
  const steps = c.x(4) ? c.b.constantInts(c.x(4)) : undefined;
  if (starts && ends && (axes || !c.x(3)) && (steps || !c.x(4))) {
    const s = dropBatch(c, {
      starts,
      ends,
      axes: axes ?? starts.map((_, i) => i),
      steps: steps ?? starts.map(() => 1),
    });
    if (s.axes.length === 0) return [t];
    return [c.b.op('Slice', [t, c.b.ints(s.starts), c.b.ints(s.ends), c.b.ints(s.axes), c.b.ints(s.steps)])];
  }
  // Starts/ends computed at run time: fine as long as the (constant) axes avoid the batch axis.
  if (axes && !axes.some((a) => isBatchAxis(c, a, c.x(0)))) {
    return [c.b.op('Slice', [t, ...c.node.inputs.slice(1)])];
  }
  return c.unsupported('its axes are not build-time constants, so it cannot be checked to leave the batch axis alone');
};

/**
 * Slice's adjoint (unit steps): the cotangent padded with zeros back to the input's shape, by the
 * elements cut off before the start and after the end of each sliced axis.
 */
const sliceAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  const none = c.node.inputs.map(() => undefined);
  if (!u) return none;
  const xs = staticShape(c, c.x(0));
  const rank = xs.length;
  let spec: { starts?: number[]; ends?: number[]; axes?: number[]; steps?: number[] };
  if (c.opset < 10) {
    spec = { starts: attrInts(c.node, 'starts'), ends: attrInts(c.node, 'ends'), axes: attrInts(c.node, 'axes') };
  } else {
    spec = {
      starts: c.b.constantInts(c.x(1)),
      ends: c.b.constantInts(c.x(2)),
      axes: c.x(3) ? c.b.constantInts(c.x(3)) : undefined,
      steps: c.x(4) ? c.b.constantInts(c.x(4)) : undefined,
    };
    if ((c.x(3) && !spec.axes) || (c.x(4) && !spec.steps)) c.unsupported('its axes or steps are not build-time constants');
  }
  const { starts, ends } = spec;
  if (!starts || !ends) return c.unsupported('its starts or ends are not build-time constants');
  const pads = new Array<number>(2 * rank).fill(0);
  starts.forEach((start, i) => {
    const raw = spec.axes?.[i] ?? i;
    const axis = raw < 0 ? raw + rank : raw;
    const step = spec.steps?.[i] ?? 1;
    const dim = xs[axis];
    const clamp = (v: number) => Math.max(0, Math.min(dim, v < 0 ? v + dim : v));
    const s = clamp(start);
    const e = clamp(ends[i]);
    if (step !== 1) c.unsupported(`a step of ${step} on axis ${axis}`);
    if (e <= s) c.unsupported(`an empty slice of axis ${axis}`);
    if (axis === 0) {
      if (s !== 0) c.unsupported(`it slices the batch axis [${start}:${ends[i]}]`);
      return;
    }
    pads[axis] = s;
    pads[axis + rank] = dim - e;
  });
  return [padZeros(c, u, pads), ...none.slice(1)];
};

export const slice: OpDefinition = { tangent: sliceTangent, adjoint: sliceAdjoint };
