/**
 * The piecewise-linear function a split point applies to each unit (the two-stage linearization's
 * cut, splitPoint.ts): its kinks and the slope of every piece, per unit. Relu: slopes 0, 1 at 0;
 * LeakyRelu: alpha, 1 at 0; PRelu: the slope tensor (broadcast to the unit shape), 1 at 0; Clip:
 * 0, 1, 0 at min and max (a missing bound drops its kink and outer piece). Slopes may be negative.
 */
import { NetmomentsError } from '../../errors.js';
import { attrFloat, graphConstant, type Graph, type GraphNode } from '../graph.js';
import { clipBounds } from './clip.js';

export interface UnitPieces {
  /** The sorted kinks t_1 < ... < t_K (the same for every unit). */
  at: readonly number[];
  /** slopes[j][u]: the slope of unit u on piece j (j = 0 below t_1, ..., K above t_K); K + 1 arrays of p values. */
  slopes: Float64Array[];
  /** The value of the function at t_1 (the same for every unit): 0 for Relu, LeakyRelu, PRelu; min for Clip. */
  atFirstKink: number;
}

/** A slope array of p equal values. */
function constant(p: number, v: number): Float64Array {
  return new Float64Array(p).fill(v);
}

/**
 * PRelu's slope broadcast to the unit shape (ONNX unidirectional broadcasting against the input
 * [N, ...shape], right-aligned; a leading batch axis of the slope must be 1).
 */
function broadcastSlope(slope: { dims: number[]; data: ArrayLike<number | bigint> }, shape: readonly number[], node: string): Float64Array {
  const full = [1, ...shape];
  const dims = slope.dims;
  if (dims.length > full.length) throw new NetmomentsError(`PRelu '${node}': the slope has more axes (${dims.length}) than its input`, { code: 'UNSUPPORTED' });
  const aligned = [...new Array<number>(full.length - dims.length).fill(1), ...dims];
  aligned.forEach((d, i) => {
    if (d !== 1 && d !== full[i])
      throw new NetmomentsError(`PRelu '${node}': slope shape [${dims.join(', ')}] does not broadcast to [${full.join(', ')}]`, { code: 'UNSUPPORTED' });
  });
  const p = shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(p);
  // strides of the slope over the per-sample axes (axis 0 of `aligned` is the batch axis, size 1)
  const strides = new Array<number>(full.length).fill(0);
  let s = 1;
  for (let i = full.length - 1; i >= 0; i--) {
    strides[i] = aligned[i] === 1 ? 0 : s;
    s *= aligned[i];
  }
  const idx = new Array<number>(shape.length).fill(0);
  for (let u = 0; u < p; u++) {
    let off = 0;
    for (let i = 0; i < shape.length; i++) off += idx[i] * strides[i + 1];
    out[u] = Number(slope.data[off]);
    for (let i = shape.length - 1; i >= 0; i--) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/**
 * The pieces of split node `node` with per-sample output shape `shape`, or a NetmomentsError when
 * they cannot be known before a run (a Clip bound or a PRelu slope computed at run time) or the op
 * has no kink there (a Clip without bounds).
 */
export function splitPieces(graph: Graph, node: GraphNode, shape: readonly number[]): UnitPieces {
  const p = shape.reduce((a, b) => a * b, 1);
  const where = `the split point ${node.opType} '${node.name}'`;
  switch (node.opType) {
    case 'Relu':
      return { at: [0], slopes: [constant(p, 0), constant(p, 1)], atFirstKink: 0 };
    case 'LeakyRelu':
      return { at: [0], slopes: [constant(p, attrFloat(node, 'alpha', 0.01)), constant(p, 1)], atFirstKink: 0 };
    case 'PRelu': {
      const slope = node.inputs[1] ? graphConstant(graph, node.inputs[1]) : undefined;
      if (!slope)
        throw new NetmomentsError(`${where} has a slope computed at run time; netmoments splits at a PRelu with a constant slope`, { code: 'UNSUPPORTED' });
      return { at: [0], slopes: [broadcastSlope(slope, shape, node.name), constant(p, 1)], atFirstKink: 0 };
    }
    case 'Clip': {
      const b = clipBounds(graph, node);
      if (!b) throw new NetmomentsError(`${where} has a bound computed at run time; netmoments splits at a Clip with constant bounds`, { code: 'UNSUPPORTED' });
      if (b.min !== undefined && b.max !== undefined) {
        if (!(b.min < b.max))
          throw new NetmomentsError(`${where} has min ${b.min} >= max ${b.max}: it is constant, with no kink to split at`, { code: 'UNSUPPORTED' });
        return { at: [b.min, b.max], slopes: [constant(p, 0), constant(p, 1), constant(p, 0)], atFirstKink: b.min };
      }
      if (b.min !== undefined) return { at: [b.min], slopes: [constant(p, 0), constant(p, 1)], atFirstKink: b.min };
      if (b.max !== undefined) return { at: [b.max], slopes: [constant(p, 1), constant(p, 0)], atFirstKink: b.max };
      throw new NetmomentsError(`${where} has no bounds (it is the identity), so no kink to split at`, { code: 'UNSUPPORTED' });
    }
    default:
      throw new Error(`internal: ${node.opType} is a split point without pieces in src/onnx/ops/splitPieces.ts`);
  }
}

/** The piece of value v: the number of kinks below it (a value on a kink belongs to the piece below, as ReLU's v > 0 test has it). */
export function pieceOf(v: number, at: readonly number[]): number {
  let k = 0;
  while (k < at.length && v > at[k]) k++;
  return k;
}

/**
 * f(v) for unit u: f(t_1) + the integral of the slopes from t_1 to v (float64).
 */
export function applyPieces(pieces: UnitPieces, u: number, v: number): number {
  const { at, slopes } = pieces;
  let y = pieces.atFirstKink;
  if (v <= at[0]) return y + slopes[0][u] * (v - at[0]);
  for (let k = 0; k < at.length; k++) {
    const hi = k + 1 < at.length ? Math.min(v, at[k + 1]) : v;
    y += slopes[k + 1][u] * (hi - at[k]);
    if (k + 1 >= at.length || v <= at[k + 1]) break;
  }
  return y;
}
