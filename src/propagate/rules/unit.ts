/**
 * Unit-wise ops (Relu, LeakyRelu, PRelu, Clip, Abs, Exp and the smooth units): each unit's exact
 * moments under its Gaussian input, and the statistical linearization with Hermite rows (see ./index.ts).
 */
import { NetmomentsError } from '../../errors.js';
import { attrFloat, graphConstant, type Graph, type GraphNode } from '../../onnx/graph.js';
import type { TensorValue } from '../../onnx/tensor.js';
import { ABS, RELU, clip, leakyRelu, piecewiseLinearMoments, type PiecewiseLinear } from '../../moments/piecewise.js';
import { SMOOTH_FUNCTIONS, expMoments, smoothMoments } from '../../moments/smooth.js';
import {
  FACTORIAL,
  isDefault,
  maxHermiteColumns,
  newFactor,
  probeOf,
  scaleHermiteRows,
  carryHermiteRows,
  tapeHermiteColumns,
  unitFactorNorms,
  type StepTape,
  type TensorMoments,
  type UnitMoments,
} from './factor.js';

function constantScalar(graph: Graph, name: string | undefined, fallback: number): number {
  if (!name) return fallback;
  const t = graphConstant(graph, name);
  if (!t || t.data.length !== 1)
    throw new NetmomentsError(`Clip bound '${name}' is not a constant scalar; propagate needs constant bounds`, { code: 'UNSUPPORTED' });
  return Number(t.data[0]);
}

/**
 * The unit-wise rule of a node, or undefined when the op is not unit-wise. `shape` is the
 * per-sample shape of the input (for PRelu's broadcast slope).
 */
export function unitRule(node: GraphNode, graph: Graph, shape: readonly number[]): UnitMoments | undefined {
  if (!isDefault(node)) return undefined;
  const pl =
    (f: PiecewiseLinear): UnitMoments =>
    (_i, m, s) =>
      piecewiseLinearMoments(f, m, s);
  switch (node.opType) {
    case 'Relu':
      return pl(RELU);
    case 'Abs':
      return pl(ABS);
    case 'LeakyRelu':
      return pl(leakyRelu(attrFloat(node, 'alpha', 0.01)));
    case 'Clip': {
      const lo = graph.opset >= 11 ? constantScalar(graph, node.inputs[1], -Infinity) : attrFloat(node, 'min', -Infinity);
      const hi = graph.opset >= 11 ? constantScalar(graph, node.inputs[2], Infinity) : attrFloat(node, 'max', Infinity);
      return pl(clip(lo, hi));
    }
    case 'PRelu': {
      const slope = graphConstant(graph, node.inputs[1]);
      if (!slope) throw new NetmomentsError(`PRelu '${node.name}' has a non-constant slope; propagate needs it constant`, { code: 'UNSUPPORTED' });
      const perUnit = broadcastTo(slope, shape);
      const fs = new Map<number, PiecewiseLinear>();
      return (i, m, s) => {
        const a = perUnit[i];
        let f = fs.get(a);
        if (!f) fs.set(a, (f = leakyRelu(a)));
        return piecewiseLinearMoments(f, m, s);
      };
    }
    case 'Exp':
      return (_i, m, s) => expMoments(m, s);
    default: {
      const f = SMOOTH_FUNCTIONS[node.opType];
      return f ? (_i, m, s) => smoothMoments(f, m, s) : undefined;
    }
  }
}

/** Unit-wise ops that are nondecreasing: they commute with a max (MaxPool(f(x)) = f(MaxPool(x))). */
export function isMonotoneUnit(node: GraphNode): boolean {
  if (!isDefault(node)) return false;
  if (node.opType === 'LeakyRelu') return attrFloat(node, 'alpha', 0.01) >= 0;
  return ['Relu', 'Clip', 'Sigmoid', 'Tanh', 'Erf', 'Exp', 'Softplus'].includes(node.opType);
}

/** A constant broadcast (numpy rules, trailing axes aligned) to a per-sample shape, flattened. */
function broadcastTo(t: TensorValue, shape: readonly number[]): Float64Array {
  const size = shape.reduce((a, d) => a * d, 1);
  const out = new Float64Array(size);
  const dims = [...t.dims];
  while (dims.length > shape.length && dims[0] === 1) dims.shift();
  const full = [...Array(shape.length - dims.length).fill(1), ...dims];
  const strides = new Array(full.length).fill(0);
  let st = 1;
  for (let a = full.length - 1; a >= 0; a--) {
    strides[a] = full[a] === 1 ? 0 : st;
    st *= full[a];
  }
  for (let i = 0; i < size; i++) {
    let rem = i;
    let src = 0;
    for (let a = shape.length - 1; a >= 0; a--) {
      const c = rem % shape[a];
      rem = Math.floor(rem / shape[a]);
      src += c * strides[a];
    }
    out[i] = Number(t.data[src]);
  }
  return out;
}

/**
 * Statistical linearization of a unit-wise op (see the header), with Hermite rows: the residual's
 * order-h Hermite part (h = 2..hermiteOrder, at most 3), whose covariance between units is
 * E f^(h)(x_i) E f^(h)(x_j) S_ij^h / h! (Mehler's expansion), sketched from the probes as
 * Q_ic = E f^(h)(x_i) prod_t P_t,i (see probeOf), each unit's row scaled to its exact norm
 * E f^(h)(x_i)^2 q_i^h / h! (q_i = |F_i|^2; at most the residual variance left).
 */
export function applyUnitRule(rule: UnitMoments, x: TensorMoments, hermiteOrder = 3, columns = x.probes >> 1, spare = 0, tape?: StepTape): TensorMoments {
  const size = x.m.length;
  const p = x.probes;
  const rows = p + x.k;
  const K = Math.min(columns, maxHermiteColumns(p));
  const q = unitFactorNorms(x.F, p, x.k, size);
  const m = new Float64Array(size);
  const r = new Float64Array(size);
  const slope = new Float64Array(size);
  // expected second and third derivatives
  const coef = [new Float64Array(size), new Float64Array(size)];
  const used = [false, false];
  for (let i = 0; i < size; i++) {
    const g = rule(i, x.m[i], Math.sqrt(q[i] + x.r[i]));
    m[i] = g.mean;
    slope[i] = g.slope;
    coef[0][i] = g.curvature;
    coef[1][i] = g.third;
    r[i] = Math.max(0, g.variance - g.slope * g.slope * q[i]);
    if (q[i] > 0) {
      if (g.curvature !== 0) used[0] = true;
      if (g.third !== 0) used[1] = true;
    }
  }
  // Kt >= K columns are sketched when the tape asks for more (carryHermiteRows)
  const Kt = tapeHermiteColumns(K, p, tape?.hermiteColumns);
  const orders = Kt > 0 ? [2, 3].filter((h) => h <= hermiteOrder && used[h - 2]) : [];
  const extra = orders.length > 0 ? K : 0;
  const Fx = x.F;
  const F = newFactor(rows + extra, size, spare);
  for (let d = 0; d < rows; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) F[o + i] = slope[i] * Fx[o + i];
  }
  // the orders share the K rows: their sketches are uncorrelated (see probeOf), so the rows'
  // covariance is the sum of the orders' (each order scaled on its own, then added)
  const block = Kt === K ? F.subarray(rows * size) : new Float32Array(orders.length > 0 ? Kt * size : 0);
  const buffer = orders.length > 1 ? new Float32Array(Kt * size) : block;
  const target = new Float64Array(size);
  const givenAll = new Float64Array(size);
  orders.forEach((h, n) => {
    const ch = coef[h - 2];
    const Q = n === 0 ? block : buffer;
    for (let c = 0; c < Kt; c++) {
      const o = c * size;
      const p0 = probeOf(c, 0, p) * size;
      const p1 = probeOf(c, 1, p) * size;
      if (h === 2) for (let i = 0; i < size; i++) Q[o + i] = ch[i] * Fx[p0 + i] * Fx[p1 + i];
      else {
        const p2 = probeOf(c, 2, p) * size;
        for (let i = 0; i < size; i++) Q[o + i] = ch[i] * Fx[p0 + i] * Fx[p1 + i] * Fx[p2 + i];
      }
    }
    for (let i = 0; i < size; i++) target[i] = Math.min(r[i], (ch[i] * ch[i] * q[i] ** h) / FACTORIAL[h]);
    const given = scaleHermiteRows(Q, 0, Kt, size, target);
    if (n > 0) for (let j = 0; j < block.length; j++) block[j] += Q[j];
    for (let i = 0; i < size; i++) {
      r[i] = Math.max(0, r[i] - given[i]);
      givenAll[i] += given[i];
    }
  });
  const rForward = orders.length > 0 && Kt > K ? carryHermiteRows(F, rows, K, size, block, givenAll, r) : r;
  if (tape) {
    tape.slope = slope;
    tape.r = r;
    if (orders.length > 0) tape.hermite = Kt === K ? block.slice() : block;
  }
  return { ...x, m, F, k: x.k + extra, r: rForward };
}
