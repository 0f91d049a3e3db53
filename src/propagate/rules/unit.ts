/**
 * Unit-wise ops (Relu, LeakyRelu, PRelu, Clip, Abs, Exp and the smooth units): each unit's exact
 * moments under its Gaussian input, and the statistical linearization with Hermite rows (see ./index.ts).
 */
import { NetmomentsError } from '../../errors.js';
import { attrFloat, attrString, graphConstant, type Graph, type GraphNode } from '../../onnx/graph.js';
import type { TensorValue } from '../../onnx/tensor.js';
import { ABS, RELU, clip, evaluatePiecewiseLinear, hardSigmoid, leakyRelu, piecewiseLinearMoments, type PiecewiseLinear } from '../../moments/piecewise.js';
import { SMOOTH_FUNCTIONS, erf, expMoments, smoothMoments } from '../../moments/smooth.js';
import { semidefiniteCholesky } from '../../moments/softmax.js';
import {
  FACTORIAL,
  constantScalar,
  isDefault,
  maxHermiteColumns,
  newFactor,
  truncateFactor,
  probeOf,
  carryHermiteRows,
  tapeHermiteColumns,
  type StepTape,
  type TensorMoments,
  type UnitMoments,
} from './factor.js';

/** A Clip bound given as an input: its constant value, `fallback` when absent. */
function clipBound(graph: Graph, name: string | undefined, fallback: number): number {
  if (!name) return fallback;
  const v = constantScalar(graph, name);
  if (v === undefined) throw new NetmomentsError(`Clip bound '${name}' is not a constant scalar; propagate needs constant bounds`, { code: 'UNSUPPORTED' });
  return v;
}

/** ONNX's Selu defaults (the constants of Klambauer et al. 2017, as float32). */
const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;

const softplus = SMOOTH_FUNCTIONS.Softplus;

/**
 * Unit-wise ops with a moment rule (default domain): the piecewise-linear ones in closed form
 * (piecewiseLinearOf), Exp in closed form, the rest by quadrature of their scalar function
 * (unitFunction).
 */
export const UNIT_OPS: ReadonlySet<string> = new Set([
  'Relu',
  'Abs',
  'LeakyRelu',
  'Clip',
  'PRelu',
  'HardSigmoid',
  ...Object.keys(SMOOTH_FUNCTIONS),
  'Elu',
  'Selu',
  'Celu',
  'Softsign',
  'HardSwish',
  'Mish',
  'Gelu',
]);

/** The piecewise-linear function of a unit-wise op with scalar parameters (PRelu: a one-element slope), or undefined. */
export function piecewiseLinearOf(node: GraphNode, graph: Graph): PiecewiseLinear | undefined {
  switch (node.opType) {
    case 'Relu':
      return RELU;
    case 'Abs':
      return ABS;
    case 'LeakyRelu':
      return leakyRelu(attrFloat(node, 'alpha', 0.01));
    case 'HardSigmoid':
      return hardSigmoid(attrFloat(node, 'alpha', 0.2), attrFloat(node, 'beta', 0.5));
    case 'PRelu': {
      const a = constantScalar(graph, node.inputs[1]);
      return a === undefined ? undefined : leakyRelu(a);
    }
    case 'Clip': {
      const lo = graph.opset >= 11 ? clipBound(graph, node.inputs[1], -Infinity) : attrFloat(node, 'min', -Infinity);
      const hi = graph.opset >= 11 ? clipBound(graph, node.inputs[2], Infinity) : attrFloat(node, 'max', Infinity);
      return clip(lo, hi);
    }
    default:
      return undefined;
  }
}

/**
 * The scalar function of a unit-wise op (ONNX's definitions, attributes at their defaults when
 * absent), or undefined when it is not unit-wise or its parameters are per unit (PRelu's slope
 * unless a scalar). Used by quadrature (smoothMoments) and by unit-wise composites (./composite.ts).
 */
export function unitFunction(node: GraphNode, graph: Graph): ((x: number) => number) | undefined {
  if (!isDefault(node)) return undefined;
  const pl = piecewiseLinearOf(node, graph);
  if (pl) return (x) => evaluatePiecewiseLinear(pl, x);
  switch (node.opType) {
    case 'Elu': {
      // alpha (e^x - 1) for x < 0, x for x >= 0
      const alpha = attrFloat(node, 'alpha', 1);
      return (x) => (x >= 0 ? x : alpha * Math.expm1(x));
    }
    case 'Selu': {
      // gamma (alpha e^x - alpha) for x <= 0, gamma x for x > 0
      const alpha = attrFloat(node, 'alpha', SELU_ALPHA);
      const gamma = attrFloat(node, 'gamma', SELU_GAMMA);
      return (x) => (x > 0 ? gamma * x : gamma * alpha * Math.expm1(x));
    }
    case 'Celu': {
      // max(0, x) + min(0, alpha (e^(x / alpha) - 1))
      const alpha = attrFloat(node, 'alpha', 1);
      return (x) => Math.max(0, x) + Math.min(0, alpha * Math.expm1(x / alpha));
    }
    case 'Softsign':
      return (x) => x / (1 + Math.abs(x));
    case 'HardSwish':
      // x max(0, min(1, x / 6 + 1 / 2))
      return (x) => x * Math.max(0, Math.min(1, x / 6 + 0.5));
    case 'Mish':
      return (x) => x * Math.tanh(softplus(x));
    case 'Gelu': {
      // 'none': x Phi(x) = x (1 + erf(x / sqrt 2)) / 2; 'tanh': x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2
      if (attrString(node, 'approximate', 'none') === 'tanh') {
        const c = Math.sqrt(2 / Math.PI);
        return (x) => 0.5 * x * (1 + Math.tanh(c * (x + 0.044715 * x * x * x)));
      }
      return (x) => 0.5 * x * (1 + erf(x / Math.SQRT2));
    }
    default:
      return SMOOTH_FUNCTIONS[node.opType];
  }
}

/**
 * The unit-wise rule of a node, or undefined when the op is not unit-wise. `shape` is the
 * per-sample shape of the input (for PRelu's broadcast slope).
 */
export function unitRule(node: GraphNode, graph: Graph, shape: readonly number[]): UnitMoments | undefined {
  if (!isDefault(node)) return undefined;
  const pl = piecewiseLinearOf(node, graph);
  if (pl) return (_i, m, s) => piecewiseLinearMoments(pl, m, s);
  switch (node.opType) {
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
      const f = unitFunction(node, graph);
      return f ? (_i, m, s) => smoothMoments(f, m, s) : undefined;
    }
  }
}

/** Unit-wise ops that are nondecreasing: they commute with a max (MaxPool(f(x)) = f(MaxPool(x))). */
export function isMonotoneUnit(node: GraphNode): boolean {
  if (!isDefault(node)) return false;
  if (node.opType === 'LeakyRelu' || node.opType === 'Elu' || node.opType === 'Celu')
    return attrFloat(node, 'alpha', node.opType === 'LeakyRelu' ? 0.01 : 1) >= 0;
  if (node.opType === 'Selu') return attrFloat(node, 'alpha', SELU_ALPHA) >= 0 && attrFloat(node, 'gamma', SELU_GAMMA) >= 0;
  if (node.opType === 'HardSigmoid') return attrFloat(node, 'alpha', 0.2) >= 0;
  return ['Relu', 'Clip', 'Sigmoid', 'Tanh', 'Erf', 'Exp', 'Softplus', 'Softsign'].includes(node.opType);
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
  // Kt >= K columns are sketched when the tape asks for more (carryHermiteRows)
  const Kt = tapeHermiteColumns(K, p, tape?.hermiteColumns);
  const Fx = x.F;
  const m = new Float64Array(size);
  const r = new Float64Array(size);
  const slope = new Float64Array(size);
  const q = new Float64Array(size);
  // expected second and third derivatives
  const coef = [new Float64Array(size), new Float64Array(size)];
  const used = [false, false];
  // room for the K Hermite rows, given back as spare rows when no unit has a Hermite part
  const maybe = Kt > 0 && hermiteOrder >= 2 ? K : 0;
  const F = newFactor(rows + maybe, size, spare);
  // the units in tiles of UNIT_TILE, each tile's part of every row read from memory once for both
  // passes over it: q_i = |F_i|^2 (the covariance rows, in increasing order as unitFactorNorms
  // sums them), the unit's moments, and its rows scaled by the expected slope
  for (let i0 = 0; i0 < size; i0 += UNIT_TILE) {
    const i1 = Math.min(size, i0 + UNIT_TILE);
    for (let d = p; d < rows; d++) {
      const o = d * size;
      for (let i = i0; i < i1; i++) {
        const f = Fx[o + i];
        q[i] += f * f;
      }
    }
    for (let i = i0; i < i1; i++) {
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
    for (let d = 0; d < rows; d++) {
      const o = d * size;
      for (let i = i0; i < i1; i++) F[o + i] = slope[i] * Fx[o + i];
    }
  }
  const orders = Kt > 0 ? [2, 3].filter((h) => h <= hermiteOrder && used[h - 2]) : [];
  // the orders share the K rows: their sketches are uncorrelated (see probeOf), so the rows'
  // covariance is the sum of the orders' (each order scaled on its own, then added)
  const block = orders.length === 0 ? new Float32Array(0) : Kt === K ? F.subarray(rows * size) : new Float32Array(Kt * size);
  const givenAll = new Float64Array(size);
  if (orders.length > 0) {
    if (size <= K) hermiteExact(Fx, p, rows, size, orders, coef, q, r, block, givenAll);
    else hermiteSketch(Fx, p, size, Kt, orders, coef, q, r, block, givenAll);
  }
  const rForward = orders.length > 0 && Kt > K ? carryHermiteRows(F, rows, K, size, block, givenAll, r) : r;
  if (tape) {
    tape.slope = slope;
    tape.r = r;
    if (orders.length > 0) tape.hermite = Kt === K ? block.slice() : block;
  }
  if (orders.length === 0) return { ...x, m, F: maybe > 0 ? truncateFactor(F, size, rows) : F, k: x.k, r: rForward };
  return { ...x, m, F, k: x.k + K, r: rForward };
}

/** Units per tile of applyUnitRule's passes: a tile of ~300 float32 rows (1.2 KB each) stays in a 512 KiB cache. */
const UNIT_TILE = 512;

/**
 * The Hermite rows of a unit-wise rule on at most K units (applyUnitRule), exactly: with S = the
 * F-part covariance of the input units (S_ij = F_i . F_j over the covariance rows), order h's
 * covariance between units is E f^(h)(x_i) E f^(h)(x_j) S_ij^h / h! (Mehler); each unit's part is
 * limited to the residual left as in hermiteSketch (order 2 first), by scaling its row and column
 * (d_i = sqrt(given_i / target_i)); the orders' sum M = sum_h D_h C_h M_h C_h D_h / h! is factored,
 * M = L L^T (semidefinite Cholesky), and L's columns are the first `size` Hermite rows (the rest 0).
 * A sketch of K columns would carry each correlation with relative noise of about sqrt(2 / K): on
 * an 8-unit Swish layer it put an output's variance 4-11% low (test/propagate/composite.test.ts).
 */
function hermiteExact(
  Fx: Float32Array,
  p: number,
  rows: number,
  size: number,
  orders: readonly number[],
  coef: readonly Float64Array[],
  q: Float64Array,
  r: Float64Array,
  block: Float32Array,
  givenAll: Float64Array,
): void {
  const S = new Float64Array(size * size);
  for (let d = p; d < rows; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) {
      const fi = Fx[o + i];
      if (fi === 0) continue;
      for (let j = 0; j <= i; j++) S[i * size + j] += fi * Fx[o + j];
    }
  }
  const M = new Float64Array(size * size);
  const w = new Float64Array(size);
  for (const h of orders) {
    const ch = coef[h - 2];
    for (let i = 0; i < size; i++) {
      const target = (ch[i] * ch[i] * q[i] ** h) / FACTORIAL[h];
      const given = Math.min(r[i], target);
      w[i] = given > 0 && target > 0 ? ch[i] * Math.sqrt(given / target) : 0;
      if (given > 0 && target > 0) {
        r[i] = Math.max(0, r[i] - given);
        givenAll[i] += given;
      }
    }
    for (let i = 0; i < size; i++) for (let j = 0; j <= i; j++) M[i * size + j] += (w[i] * w[j] * S[i * size + j] ** h) / FACTORIAL[h];
  }
  for (let i = 0; i < size; i++) for (let j = 0; j < i; j++) M[j * size + i] = M[i * size + j];
  const L = semidefiniteCholesky(M, size);
  for (let c = 0; c < size; c++) for (let i = c; i < size; i++) block[c * size + i] = L[i * size + c];
}

/**
 * The Hermite rows of a unit-wise rule (applyUnitRule): order h's column c is
 * Q_ic = E f^(h)(x_i) prod_t P_t,i over the column's h probes (probeOf; order 2 the first two,
 * order 3 all three), each unit's part scaled to its target E f^(h)(x_i)^2 q_i^h / h! (at most
 * the residual left, order 2 first: `r` is lowered by what each order gives, `givenAll` adds it),
 * and the orders summed into `block` (Kt x size). Per tile of units, the columns are computed
 * twice, once for their squared norms and once scaled into `block`, from probe values that stay
 * in cache: the same float32 values as writing each order, scaling it (scaleHermiteRows) and
 * adding the orders, without their Kt x size buffers.
 */
function hermiteSketch(
  Fx: Float32Array,
  p: number,
  size: number,
  Kt: number,
  orders: readonly number[],
  coef: readonly Float64Array[],
  q: Float64Array,
  r: Float64Array,
  block: Float32Array,
  givenAll: Float64Array,
): void {
  const both = orders.length > 1;
  const first = coef[orders[0] - 2];
  const third = coef[1];
  const two = orders[0] === 2;
  const probe = new Int32Array(3 * Kt);
  for (let c = 0; c < Kt; c++) for (let t = 0; t < 3; t++) probe[3 * c + t] = probeOf(c, t, p) * size;
  const norm0 = new Float64Array(UNIT_TILE);
  const norm1 = new Float64Array(UNIT_TILE);
  const scale0 = new Float64Array(UNIT_TILE);
  const scale1 = new Float64Array(UNIT_TILE);
  for (let i0 = 0; i0 < size; i0 += UNIT_TILE) {
    const i1 = Math.min(size, i0 + UNIT_TILE);
    norm0.fill(0);
    norm1.fill(0);
    scale0.fill(0);
    scale1.fill(0);
    // twice over the columns: their squared norms (pass 0), then, scaled, their sum into `block`
    // (pass 1); a single order's column is `a` (its probe product times 1 for order 2) and `b` is 0
    for (let pass = 0; pass < 2; pass++) {
      if (pass === 1)
        orders.forEach((h, n) => {
          const ch = coef[h - 2];
          const norm = n === 0 ? norm0 : norm1;
          const scale = n === 0 ? scale0 : scale1;
          for (let i = i0, t = 0; i < i1; i++, t++) {
            const target = Math.min(r[i], (ch[i] * ch[i] * q[i] ** h) / FACTORIAL[h]);
            if (!(norm[t] > 0 && target > 0)) continue;
            scale[t] = Math.sqrt(target / norm[t]);
            r[i] = Math.max(0, r[i] - target);
            givenAll[i] += target;
          }
        });
      for (let c = 0; c < Kt; c++) {
        const o = c * size;
        const p0 = probe[3 * c];
        const p1 = probe[3 * c + 1];
        const p2 = probe[3 * c + 2];
        for (let i = i0, t = 0; i < i1; i++, t++) {
          const f0 = Fx[p0 + i];
          const f1 = Fx[p1 + i];
          const a = Math.fround(first[i] * f0 * f1 * (two ? 1 : Fx[p2 + i]));
          const b = both ? Math.fround(third[i] * f0 * f1 * Fx[p2 + i]) : 0;
          if (pass === 0) {
            norm0[t] += a * a;
            norm1[t] += b * b;
          } else block[o + i] = Math.fround(a * scale0[t]) + Math.fround(b * scale1[t]);
        }
      }
    }
  }
}
