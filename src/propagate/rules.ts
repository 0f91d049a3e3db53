/**
 * Per-op moment rules of moment propagation (issue 13), one function per op family, each a pure
 * function of the node (attributes, constants) and the incoming moments, so that each can move
 * into the op registry's per-op file later. A tensor's moments are (m, F, r): mean m, covariance
 * F F^T + diag(r) with F stored direction-major ([rows, size]: row d is the image of the d-th
 * noise direction) and r >= 0 a residual variance per unit. F's first rows are probes (images of
 * random input directions, not part of the covariance; see below).
 *
 * Four kinds of rule:
 *  - unit-wise (Relu, LeakyRelu, PRelu, Clip, Abs, Sigmoid, Tanh, Exp, Erf, Sin, Cos, Softplus):
 *    statistical linearization. Per unit, with s^2 = |F_i|^2 + r_i, the exact mean and variance of
 *    f(x_i), x_i ~ N(m_i, s^2) (src/moments/piecewise.ts, smooth.ts); F_i passes scaled by the
 *    expected slope E f'(x_i) (Stein's lemma: cov(f(x_i), z) = E f'(x_i) cov(x_i, z) for every z
 *    jointly Gaussian with x_i, so the output's covariance with the input noise is exact); the rest
 *    of the exact variance is the residual.
 *  - MaxPool: the exact moments of max over each window (src/moments/windowmax.ts, numerical
 *    integration), fused with a ReLU that follows (relu(max x) = max(0, x)); F passes with the
 *    probabilities of each element being the max, exact for the covariance with anything jointly
 *    Gaussian with the window (Stein's lemma).
 *  - Softmax over an axis: per slice of D units, E y and E[y y^T] by quasi-Monte Carlo over the
 *    slice's Gaussian (src/moments/softmax.ts); F passes through the expected Jacobian
 *    diag(E y) - E[y y^T] (Stein's lemma: exact covariance with the input noise); the rest of each
 *    unit's exact variance is the residual (no Hermite rows).
 *  - affine ops: run by onnxruntime (mean and the rows of F through JVPs of the segment);
 *    `varianceNodes` gives the nodes that push r through the squared linear part (L o L) r.
 *
 * Hermite rows. The residual of a kinked op is not independent between units: by Mehler's
 * expansion cov(f(x_i), f(x_j)) = sum_h E f^(h)(x_i) E f^(h)(x_j) S_ij^h / h!, of which h = 1 is what
 * F carries. The h = 2 and 3 terms are carried in K extra covariance rows (shared by the two
 * orders, whose sketches are uncorrelated), sketched from products of probes
 * (E[prod_t P_t,i P_t,j] = S_ij^h) and scaled per unit to their exact F-part variance; only what is left (orders >= 4, the residual's own share) stays in r, taken as
 * independent between units. Without them LeNet's output variance at pixel sigma 32 came out at
 * 0.79-0.95 of Monte Carlo's (the next Conv sums neighbouring units' positively correlated
 * residuals); with K = 32 at 0.93-1.02.
 *
 * Residual rows. The residual r of a kinked op, pushed through the next affine part L as
 * independent between units by the variance model alone, would lose the off-diagonal
 * L diag(r) L^T: the output units of a Conv or Gemm that read the same residuals are correlated,
 * and the next layer's sums add those correlations up (LeNet digit 68 at sigma 32, without them:
 * fc1's pre-activation variance 0.97 of Monte Carlo's, the logits' 0.87-0.99). So before each
 * affine segment whose inputs carry a residual, r is also carried as R = 32 rows of random signs
 * scaled to sqrt(r / R) (appendResidualRows), whose images the segment computes with the other
 * rows; afterwards each output unit's part of them is rescaled to the variance model's exact
 * residual variance, which then leaves r (absorbResidualRows). Measured on LeNet (75,000-sample
 * Monte Carlo, the logits' var / MC range, without -> with): digit 68 at sigma 32 0.866-0.991 ->
 * 0.908-1.021, digit 64 0.913-1.001 -> 0.937-1.033; at sigma 8 digit 68 0.941-1.015 -> 0.966-1.040,
 * digit 64 0.946-1.027 -> 0.960-1.045. Rows only before Gemm segments gave 0.887 on digit 68 at
 * sigma 32; R = 128 gave the same ranges as R = 32 (the sign noise is not what is left).
 *
 * What is still lost: the residual's own correlation between units (the Hermite orders >= 4 of
 * a kinked op, the part of a MaxPool's residual beyond the Hermite rows), taken as independent at
 * its source; and at sigma 8 the residual rows overshoot some logits (up to 1.045 of Monte Carlo's
 * variance on digit 64), not yet explained.
 *
 * Tried and dropped (LeNet, digits 50-55, 75,000-sample Monte Carlo, sigma 32):
 *  - Clark's sequential max with the ReLU as one more element sorted by mean: mean error 0.055 sd
 *    median, worse than Clark then ReLU (0.021) and than the integrated max (0.011).
 *  - an unshifted (or randomly rotated) lattice for the window max: its truncated tails bias
 *    every window alike (mean error 0.029 / 0.016); the random shift per window makes the errors
 *    independent and the next layer averages them out.
 *  - K = 16 or 64 instead of 32: the sketch's noise (relative sd ~ sqrt(2/K) of a ~10% share)
 *    spread the variance ratios (0.88-1.04 at K = 16); 64 costs more rows in every JVP after.
 */
import { NetmomentsError } from '../errors.js';
import { attrFloat, attrInt, attrInts, attrString, graphConstant, type Graph, type GraphNode } from '../onnx/graph.js';
import type { TensorValue } from '../onnx/tensor.js';
import { clarkMax } from '../moments/clark.js';
import { Rng } from '../moments/montecarlo.js';
import { LATTICE_SHIFTS, windowMax } from '../moments/windowmax.js';
import { ABS, RELU, clip, leakyRelu, piecewiseLinearMoments, type GaussianImage, type PiecewiseLinear } from '../moments/piecewise.js';
import { SMOOTH_FUNCTIONS, expMoments, smoothMoments } from '../moments/smooth.js';
import { softmaxMoments } from '../moments/softmax.js';

/** Moments of one tensor (per sample, batch axis dropped). */
export interface TensorMoments {
  m: Float64Array;
  /**
   * [rows, size], direction-major, float32 (the layout and type of onnxruntime's tangent runs, which
   * compute the affine steps in float32): row d is the image of the d-th noise direction. The first
   * `probes` rows are probes (images of random input directions, for the second-order rows; not
   * part of the covariance), the next k rows the covariance factor.
   */
  F: Float32Array;
  probes: number;
  k: number;
  r: Float64Array;
}

/** Per-unit moment function: unit index, input mean and sd -> mean, variance, expected slope. */
export type UnitMoments = (unit: number, m: number, s: number) => GaussianImage;

const isDefault = (n: GraphNode) => n.domain === '' || n.domain === 'ai.onnx';

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

/** Squared norms of the columns of a direction-major factor over rows first..first+count-1: |F_i|^2 per unit. */
export function unitFactorNorms(F: Float32Array, first: number, count: number, size: number): Float64Array {
  const q = new Float64Array(size);
  for (let d = first; d < first + count; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) {
      const f = F[o + i];
      q[i] += f * f;
    }
  }
  return q;
}

/**
 * Scale each unit's (column's) part of the K Hermite rows Q (K x size, written into F from
 * row `at`) to the squared norm `target` (clamped at what the sketch can give: a unit whose sketch
 * is 0 gets 0); returns the squared norms given.
 */
function scaleHermiteRows(F: Float32Array, at: number, K: number, size: number, target: Float64Array): Float64Array {
  const norm = unitFactorNorms(F, at, K, size);
  const given = new Float64Array(size);
  const scale = new Float64Array(size);
  for (let i = 0; i < size; i++) {
    if (norm[i] > 0 && target[i] > 0) {
      scale[i] = Math.sqrt(target[i] / norm[i]);
      given[i] = target[i];
    }
  }
  for (let c = 0; c < K; c++) {
    const o = (at + c) * size;
    for (let i = 0; i < size; i++) F[o + i] *= scale[i];
  }
  return given;
}

/**
 * The probe whose product sketches Hermite order h in column c (K = probes / 2 columns), t-th of
 * h: order 2 takes the pair (2c, 2c + 1), order 3 adds 2c + 2 (mod 2K). Any two columns, of the
 * same or of different orders, differ in a probe that one of them holds an odd number of times,
 * so their products are uncorrelated; each is an unbiased sketch of S_ij^h for S the covariance
 * of the probes' images (E[prod_t P_t,i P_t,j] = S_ij^h for independent probes).
 */
function probeOf(c: number, t: number, probes: number): number {
  return t < 2 ? 2 * c + t : (2 * c + 2) % probes;
}

const FACTORIAL = [1, 1, 2, 6];

/**
 * Statistical linearization of a unit-wise op (see the header), with Hermite rows: the residual's
 * order-h Hermite part (h = 2..hermiteOrder, at most 3), whose covariance between units is
 * E f^(h)(x_i) E f^(h)(x_j) S_ij^h / h! (Mehler's expansion), sketched from the probes as
 * Q_ic = E f^(h)(x_i) prod_t P_t,i (see probeOf), each unit's row scaled to its exact norm
 * E f^(h)(x_i)^2 q_i^h / h! (q_i = |F_i|^2; at most the residual variance left).
 */
export function applyUnitRule(rule: UnitMoments, x: TensorMoments, hermiteOrder = 3): TensorMoments {
  const size = x.m.length;
  const p = x.probes;
  const rows = p + x.k;
  const K = p >> 1;
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
  const orders = K > 0 ? [2, 3].filter((h) => h <= hermiteOrder && used[h - 2]) : [];
  const extra = orders.length > 0 ? K : 0;
  const Fx = x.F;
  const F = new Float32Array((rows + extra) * size);
  for (let d = 0; d < rows; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) F[o + i] = slope[i] * Fx[o + i];
  }
  // the orders share the K rows: their sketches are uncorrelated (see probeOf), so the rows'
  // covariance is the sum of the orders' (each order scaled on its own, then added)
  const block = F.subarray(rows * size);
  const buffer = orders.length > 1 ? new Float32Array(K * size) : block;
  const target = new Float64Array(size);
  orders.forEach((h, n) => {
    const ch = coef[h - 2];
    const Q = n === 0 ? block : buffer;
    for (let c = 0; c < K; c++) {
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
    const given = scaleHermiteRows(Q, 0, K, size, target);
    if (n > 0) for (let j = 0; j < block.length; j++) block[j] += Q[j];
    for (let i = 0; i < size; i++) r[i] = Math.max(0, r[i] - given[i]);
  });
  return { ...x, m, F, k: x.k + extra, r };
}

/**
 * The slices a Softmax normalizes over, in a per-sample tensor of shape `shape` (batch axis
 * dropped): `outer` x `inner` slices of D units, unit j of slice (o, t) at (o D + j) inner + t.
 * From opset 13 the axis (default -1) is one axis; before, the input is coerced to 2-D at the axis
 * (default 1): the slice is every unit from the axis on. The batch axis cannot be the axis.
 */
export function softmaxSlices(node: GraphNode, opset: number, shape: readonly number[]): { outer: number; D: number; inner: number } {
  const rank = shape.length + 1;
  let axis = attrInt(node, 'axis', opset >= 13 ? -1 : 1);
  if (axis < 0) axis += rank;
  if (axis < 1 || axis >= rank)
    throw new NetmomentsError(`Softmax '${node.name}' normalizes over axis ${axis} (the batch axis or none); propagate needs a per-sample axis`, {
      code: 'UNSUPPORTED',
    });
  const a = axis - 1;
  const prod = (xs: readonly number[]) => xs.reduce((p, d) => p * d, 1);
  const slices =
    opset >= 13
      ? { outer: prod(shape.slice(0, a)), D: shape[a], inner: prod(shape.slice(a + 1)) }
      : { outer: prod(shape.slice(0, a)), D: prod(shape.slice(a)), inner: 1 };
  if (slices.D > MAX_SOFTMAX_UNITS)
    throw new NetmomentsError(
      `Softmax '${node.name}' normalizes over ${slices.D} units; propagate integrates a Softmax's moments numerically over at most ${MAX_SOFTMAX_UNITS} (the cost grows with the square): analyse the logits before it with --output NAME`,
      { code: 'UNSUPPORTED' },
    );
  return slices;
}

/** The most units one Softmax slice may have under propagate (its quadrature costs 65,536 D^2). */
export const MAX_SOFTMAX_UNITS = 64;

/**
 * Statistical linearization of a Softmax over slices of D units (src/moments/softmax.ts): per slice,
 * the window covariance C = G + diag(r) (G the Gram matrix of the factor's covariance rows over the
 * slice, residuals of different units taken as uncorrelated), E y and E[y y^T] by quadrature;
 * every factor row (probes included) passes through the expected Jacobian A = diag(E y) - E[y y^T]
 * (exact covariance with the input noise, Stein's lemma); each unit's residual is its exact
 * variance E[y_j^2] - (E y_j)^2 minus what the passed covariance rows carry (clamped at 0).
 */
export function applySoftmax(x: TensorMoments, slices: { outer: number; D: number; inner: number }): TensorMoments {
  const { outer, D, inner } = slices;
  const size = x.m.length;
  const rows = x.F.length / size;
  const p = x.probes;
  const m = new Float64Array(size);
  const r = new Float64Array(size);
  const F = new Float32Array(rows * size);
  const idx = new Int32Array(D);
  const C = new Float64Array(D * D);
  const mu = new Float64Array(D);
  const A = new Float64Array(D * D);
  const v = new Float64Array(D);
  const q = new Float64Array(D);
  for (let o = 0; o < outer; o++) {
    for (let t = 0; t < inner; t++) {
      for (let j = 0; j < D; j++) idx[j] = (o * D + j) * inner + t;
      C.fill(0);
      for (let d = p; d < rows; d++) {
        const row = d * size;
        for (let j = 0; j < D; j++) v[j] = x.F[row + idx[j]];
        for (let j = 0; j < D; j++) {
          const vj = v[j];
          if (vj === 0) continue;
          for (let l = j; l < D; l++) C[j * D + l] += vj * v[l];
        }
      }
      for (let j = 0; j < D; j++) {
        C[j * D + j] += x.r[idx[j]];
        for (let l = 0; l < j; l++) C[j * D + l] = C[l * D + j];
        mu[j] = x.m[idx[j]];
      }
      const sm = softmaxMoments(mu, C, D);
      for (let j = 0; j < D; j++) for (let l = 0; l < D; l++) A[j * D + l] = (j === l ? sm.mean[j] : 0) - sm.second[j * D + l];
      q.fill(0);
      for (let d = 0; d < rows; d++) {
        const row = d * size;
        for (let j = 0; j < D; j++) v[j] = x.F[row + idx[j]];
        for (let j = 0; j < D; j++) {
          let acc = 0;
          for (let l = 0; l < D; l++) acc += A[j * D + l] * v[l];
          F[row + idx[j]] = acc;
          if (d >= p) q[j] += Math.fround(acc) ** 2;
        }
      }
      for (let j = 0; j < D; j++) {
        m[idx[j]] = sm.mean[j];
        r[idx[j]] = Math.max(0, sm.second[j * D + j] - sm.mean[j] ** 2 - q[j]);
      }
    }
  }
  return { ...x, m, F, r };
}

/**
 * Residual rows (see the header): before an affine segment, each input's residual variance r is
 * also carried as R rows of random signs, row c holding s_ci sqrt(r_i / R) with s_ci = +-1
 * independent and fair, appended after the factor's rows (zeros in the inputs whose r is 0). Their
 * Gram matrix is diag(r) on the diagonal exactly and in expectation off it, so the segment's JVPs of
 * these rows carry L diag(r) L^T, off-diagonal terms included, which the variance model (the
 * diagonal (L o L) r alone) drops. `r` stays as it is: the variance model still computes the exact
 * diagonal, to which absorbResidualRows rescales the rows afterwards. Every input gets its own signs
 * (independent residuals: the cross terms vanish in expectation). Returns the inputs unchanged when
 * no input has a residual.
 */
export function appendResidualRows(ins: TensorMoments[], R: number, rng: Rng): TensorMoments[] {
  if (R <= 0 || !ins.some((x) => x.r.some((v) => v > 0))) return ins;
  return ins.map((x) => {
    const size = x.m.length;
    const rows = x.F.length / size;
    const F = new Float32Array((rows + R) * size);
    F.set(x.F);
    const amp = new Float64Array(size);
    for (let i = 0; i < size; i++) amp[i] = Math.sqrt(x.r[i] / R);
    for (let c = 0; c < R; c++) {
      const o = (rows + c) * size;
      for (let i = 0; i < size; i++) {
        if (amp[i] === 0) continue;
        F[o + i] = rng.nextUint32() & 1 ? amp[i] : -amp[i];
      }
    }
    return { ...x, F, k: x.k + R };
  });
}

/**
 * After the segment: each output unit's part of the R residual rows (from row `at`) is rescaled to
 * the variance model's exact residual variance r_i (their squared norm is only an estimate of it),
 * which then leaves r: the residual is carried by the rows from here on, correlated between units
 * as L diag(r) L^T. A unit whose rows are 0 while r_i > 0 keeps r_i.
 */
export function absorbResidualRows(y: TensorMoments, at: number, R: number): TensorMoments {
  const size = y.m.length;
  const F = y.F.slice();
  const given = scaleHermiteRows(F, at, R, size, y.r);
  const r = new Float64Array(size);
  for (let i = 0; i < size; i++) r[i] = given[i] > 0 ? 0 : y.r[i];
  return { ...y, F, r };
}

/**
 * MaxPool windows: for each output unit the flat input indices of its window (pads excluded).
 * Supports kernel_shape, strides, pads, dilations, auto_pad NOTSET/VALID/SAME_*, ceil_mode, over
 * per-sample shape [C, ...spatial].
 */
export function maxPoolWindows(node: GraphNode, inShape: readonly number[], outShape: readonly number[]): Int32Array[] {
  const [C, ...sp] = inShape;
  const [, ...osp] = outShape;
  const nd = sp.length;
  const kernel = attrInts(node, 'kernel_shape') ?? [];
  const strides = attrInts(node, 'strides') ?? new Array(nd).fill(1);
  const dil = attrInts(node, 'dilations') ?? new Array(nd).fill(1);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let padBegin = (attrInts(node, 'pads') ?? new Array(2 * nd).fill(0)).slice(0, nd);
  if (autoPad === 'VALID') padBegin = new Array(nd).fill(0);
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    padBegin = sp.map((n, a) => {
      const total = Math.max(0, (osp[a] - 1) * strides[a] + (kernel[a] - 1) * dil[a] + 1 - n);
      return autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
    });
  }
  const inSpatial = sp.reduce((a, d) => a * d, 1);
  const outSpatial = osp.reduce((a, d) => a * d, 1);
  const windows: Int32Array[] = [];
  const oc = new Array(nd).fill(0);
  for (let c = 0; c < C; c++) {
    for (let o = 0; o < outSpatial; o++) {
      let rem = o;
      for (let a = nd - 1; a >= 0; a--) {
        oc[a] = rem % osp[a];
        rem = Math.floor(rem / osp[a]);
      }
      const idx: number[] = [];
      const kc = new Array(nd).fill(0);
      const kTotal = kernel.reduce((a, d) => a * d, 1);
      for (let t = 0; t < kTotal; t++) {
        let kr = t;
        for (let a = nd - 1; a >= 0; a--) {
          kc[a] = kr % kernel[a];
          kr = Math.floor(kr / kernel[a]);
        }
        let flat = 0;
        let inside = true;
        for (let a = 0; a < nd; a++) {
          const p = oc[a] * strides[a] - padBegin[a] + kc[a] * dil[a];
          if (p < 0 || p >= sp[a]) {
            inside = false;
            break;
          }
          flat = flat * sp[a] + p;
        }
        if (inside) idx.push(c * inSpatial + flat);
      }
      windows.push(Int32Array.from(idx));
    }
  }
  return windows;
}

/**
 * Window Gram matrices G_o (L x L, row-major, from gStart[o]) over the factor rows first..first+k-1,
 * and per row the windows holding a nonzero (CSR: rowStart, windows). `nat` holds the windows'
 * flat input indices back to back (from start[o]). Windows of 4 (2 x 2 pools) take an unrolled path.
 */
function windowGrams(
  Fx: Float32Array,
  first: number,
  k: number,
  size: number,
  nat: Int32Array,
  start: Int32Array,
  gStart: Int32Array,
): { G: Float64Array; rowStart: Int32Array; windows: Int32Array } {
  const outSize = start.length - 1;
  const G = new Float64Array(gStart[outSize]);
  const rowStart = new Int32Array(k + 1);
  let list = new Int32Array(Math.max(16, (k * outSize) >> 3));
  let count = 0;
  const all4 = nat.length === 4 * outSize;
  const v = new Float64Array(64);
  for (let d = 0; d < k; d++) {
    const row = (first + d) * size;
    if (count + outSize > list.length) {
      const grown = new Int32Array(Math.max(2 * list.length, count + outSize));
      grown.set(list);
      list = grown;
    }
    if (all4) {
      for (let o = 0; o < outSize; o++) {
        const s = 4 * o;
        const v0 = Fx[row + nat[s]];
        const v1 = Fx[row + nat[s + 1]];
        const v2 = Fx[row + nat[s + 2]];
        const v3 = Fx[row + nat[s + 3]];
        if (v0 === 0 && v1 === 0 && v2 === 0 && v3 === 0) continue;
        list[count++] = o;
        const g = 16 * o;
        G[g] += v0 * v0;
        G[g + 1] += v0 * v1;
        G[g + 2] += v0 * v2;
        G[g + 3] += v0 * v3;
        G[g + 5] += v1 * v1;
        G[g + 6] += v1 * v2;
        G[g + 7] += v1 * v3;
        G[g + 10] += v2 * v2;
        G[g + 11] += v2 * v3;
        G[g + 15] += v3 * v3;
      }
    } else {
      for (let o = 0; o < outSize; o++) {
        const s0 = start[o];
        const L = start[o + 1] - s0;
        let any = false;
        for (let a = 0; a < L; a++) {
          const f = Fx[row + nat[s0 + a]];
          v[a] = f;
          if (f !== 0) any = true;
        }
        if (!any) continue;
        list[count++] = o;
        const g0 = gStart[o];
        for (let a = 0; a < L; a++) {
          const va = v[a];
          const ga = g0 + a * L;
          for (let b = a; b < L; b++) G[ga + b] += va * v[b];
        }
      }
    }
    rowStart[d + 1] = count;
  }
  for (let o = 0; o < outSize; o++) {
    const L = start[o + 1] - start[o];
    const g0 = gStart[o];
    for (let a = 0; a < L; a++) for (let b = 0; b < a; b++) G[g0 + a * L + b] = G[g0 + b * L + a];
  }
  return { G, rowStart, windows: list.subarray(0, count) };
}

/**
 * The pooled factor rows: out[d, o] = sum_t weights[t] F[d, idx[t]] over window o's entries
 * (start[o]..start[o+1]) for rows 0..rows-1; rows from `first` on visit only the windows `active`
 * lists for them (the others are 0), reading its stored values with the weights in natural window
 * order (natWeights) when it has them.
 */
function poolRows(
  Fx: Float32Array,
  rows: number,
  size: number,
  idx: Int32Array,
  weights: Float64Array,
  start: Int32Array,
  extraRows: number,
  active: (SparseWindows & { first: number }) | undefined,
  natWeights?: Float64Array,
): Float32Array {
  const outSize = start.length - 1;
  const F = new Float32Array((rows + extraRows) * outSize);
  const all4 = idx.length === 4 * outSize;
  for (let d = 0; d < rows; d++) {
    const row = d * size;
    const dst = d * outSize;
    if (active && d >= active.first && active.values && natWeights) {
      // the active windows' input values, stored contiguously with the cache
      const list = active.windows;
      const vals = active.values;
      const W = active.width;
      const e1 = active.rowStart[d - active.first + 1];
      for (let e = active.rowStart[d - active.first]; e < e1; e++) {
        const o = list[e];
        let acc = 0;
        for (let a = 0; a < W; a++) acc += natWeights[o * W + a] * vals[e * W + a];
        F[dst + o] = acc;
      }
    } else if (active && d >= active.first) {
      const list = active.windows;
      const e1 = active.rowStart[d - active.first + 1];
      for (let e = active.rowStart[d - active.first]; e < e1; e++) {
        const o = list[e];
        let acc = 0;
        for (let t = start[o]; t < start[o + 1]; t++) acc += weights[t] * Fx[row + idx[t]];
        F[dst + o] = acc;
      }
    } else if (all4) {
      for (let o = 0; o < outSize; o++) {
        const t = 4 * o;
        F[dst + o] =
          weights[t] * Fx[row + idx[t]] + weights[t + 1] * Fx[row + idx[t + 1]] + weights[t + 2] * Fx[row + idx[t + 2]] + weights[t + 3] * Fx[row + idx[t + 3]];
      }
    } else {
      for (let o = 0; o < outSize; o++) {
        let acc = 0;
        for (let t = start[o]; t < start[o + 1]; t++) acc += weights[t] * Fx[row + idx[t]];
        F[dst + o] = acc;
      }
    }
  }
  return F;
}

/** Seed of the MaxPool windows' draws of shifted lattices (fixed: the same input gives the same moments). */
const LATTICE_SEED = 20261206;

/** A MaxPool step's cache of window Gram matrices, valid for one factor array (see applyMaxPool). */
export interface MaxPoolGram {
  F?: Float32Array;
  k?: number;
  G?: Float64Array;
  active?: SparseWindows;
}

/**
 * Per factor row, the windows holding a nonzero (CSR: rowStart, windows) and, for windows of one
 * width W, their W input values in natural order (values[e W + a]), read contiguously instead of
 * gathered from the whole factor.
 */
export interface SparseWindows {
  rowStart: Int32Array;
  windows: Int32Array;
  width: number;
  values?: Float32Array;
}

/**
 * MaxPool (with `floor` 0: MaxPool followed by Relu) over each window (see the header). The window
 * covariance is its Gram matrix G_{ab} = F_{i_a} . F_{i_b} (computed in one pass over the factor,
 * cached while the factor is the same array) plus the residuals on the diagonal (residuals of
 * different units taken as uncorrelated); windowMax gives the mean, the variance and the weights
 * w_a = P(element a is the max), each window drawing one of the randomly shifted lattices from a
 * fixed-seed generator (the same input gives the same moments). A second pass writes the output
 * rows sum_a w_a F_{i_a}; the residual is the variance minus w^T G w (minus the Hermite rows).
 *
 * Hermite rows follow Clark's recursion (clark.ts) over the window sorted by decreasing mean, the
 * floor as its last step: step j is max(R, X_j) = X_j + relu(D_j), D_j = R - X_j = u_j^T x_window, whose
 * order-h Hermite part (h = 2, 3) has the coefficient c_j = E relu^(h)(D_j) (clarkMax's curvature
 * and third) and reaches the window's max scaled by beta_j, the product of the later steps'
 * weights of the running max. The window's term sum_j beta_j c_j He_h(D_j) is sketched from the
 * probes as sum_j beta_j c_j prod_t (u_j . P_t) (see probeOf) and scaled to its exact F-part
 * variance sum_jl beta_j beta_l c_j c_l (u_j^T G u_l)^h / h! (at most the residual left).
 */
export function applyMaxPool(windows: readonly Int32Array[], x: TensorMoments, cache: MaxPoolGram = {}, hermiteOrder = 3, floor = -Infinity): TensorMoments {
  const size = x.m.length;
  const outSize = windows.length;
  const p = x.probes;
  const k = x.k;
  const rows = p + k;
  const K = p >> 1;
  const Fx = x.F;
  const start = new Int32Array(outSize + 1);
  const gStart = new Int32Array(outSize + 1);
  let maxLen = 0;
  for (let o = 0; o < outSize; o++) {
    const L = windows[o].length;
    start[o + 1] = start[o] + L;
    gStart[o + 1] = gStart[o] + L * L;
    maxLen = Math.max(maxLen, L);
  }
  // the Gram of each window in its natural order over the covariance rows (depends on the factor
  // only, hence the cache) and, per covariance row, the windows holding a nonzero (a factor that
  // is still sparse, as the image of the input noise through a first convolution is, then costs
  // only its nonzeros)
  const nat = new Int32Array(start[outSize]);
  for (let o = 0; o < outSize; o++) nat.set(windows[o], start[o]);
  let G: Float64Array;
  let active: SparseWindows | undefined;
  if (cache.F === Fx && cache.k === k && cache.G) {
    G = cache.G;
    active = cache.active;
  } else {
    const grams = windowGrams(Fx, p, k, size, nat, start, gStart);
    G = grams.G;
    // the sparse pass pays when at most half the (row, window) pairs hold a nonzero
    const count = grams.windows.length;
    if (count <= (k * outSize) / 2) {
      const width = start[1] - start[0];
      active = { rowStart: grams.rowStart, windows: grams.windows.slice(), width };
      if (nat.length === width * outSize) {
        const values = new Float32Array(count * width);
        for (let d = 0; d < k; d++) {
          const row = (p + d) * size;
          for (let e = grams.rowStart[d]; e < grams.rowStart[d + 1]; e++) {
            const o = active.windows[e];
            for (let a = 0; a < width; a++) values[e * width + a] = Fx[row + nat[o * width + a]];
          }
        }
        active.values = values;
      }
    } else active = undefined;
    cache.F = Fx;
    cache.k = k;
    cache.G = G;
    cache.active = active;
  }
  // each window's positions ordered by decreasing mean: combining the likely maxima first keeps
  // Clark's Gaussian re-approximation of the running max closest to the truth
  const pos = new Int32Array(start[outSize]);
  const idx = new Int32Array(start[outSize]);
  for (let o = 0; o < outSize; o++) {
    const w = windows[o];
    const order = Array.from({ length: w.length }, (_, a) => a).sort((a, b) => x.m[w[b]] - x.m[w[a]]);
    for (let a = 0; a < w.length; a++) {
      pos[start[o] + a] = order[a];
      idx[start[o] + a] = w[order[a]];
    }
  }
  const orders = K > 0 ? [2, 3].filter((h) => h <= hermiteOrder) : [];
  const nOrders = orders.length;
  const floored = Number.isFinite(floor);
  const m = new Float64Array(outSize);
  const r = new Float64Array(outSize);
  const weights = new Float64Array(idx.length);
  const Q = new Float64Array(nOrders * K * outSize); // [order][column][window]
  const target = new Float64Array(nOrders * outSize);
  const S = maxLen + 1; // Clark steps 1..L-1, and the floor's as step L
  const Gs = new Float64Array(maxLen * maxLen); // the window's Gram in sorted order
  const C = new Float64Array(maxLen * maxLen); // its covariance (Gram + residuals)
  const mw = new Float64Array(maxLen);
  const wMax = new Float64Array(maxLen);
  const rng = new Rng(LATTICE_SEED);
  const cw = new Float64Array(maxLen); // Clark's running weights
  const u = new Float64Array(S * maxLen); // u_j: D_j's coefficients over the window (sorted order)
  const uGu = new Float64Array(S * S);
  const coef = new Float64Array(2 * S); // E relu'', E relu''' of D_j
  const wX = new Float64Array(S);
  const beta = new Float64Array(S);
  const uP = new Float64Array(S * Math.max(p, 1));
  const pv = new Float64Array(maxLen * Math.max(p, 1));
  let hermite = false;
  for (let o = 0; o < outSize; o++) {
    const s0 = start[o];
    const L = start[o + 1] - s0;
    const g0 = gStart[o];
    for (let a = 0; a < L; a++) {
      mw[a] = x.m[idx[s0 + a]];
      for (let b = 0; b < L; b++) {
        const g = G[g0 + pos[s0 + a] * L + pos[s0 + b]];
        Gs[a * L + b] = g;
        C[a * L + b] = a === b ? g + x.r[idx[s0 + a]] : g;
      }
    }
    // mean, variance and weights of max(floor, window) by conditional quasi-Monte Carlo
    const wm = windowMax(mw, C, L, floor, wMax, rng.nextUint32() % LATTICE_SHIFTS);
    for (let a = 0; a < L; a++) weights[s0 + a] = wMax[a];
    let wGw = 0;
    for (let a = 0; a < L; a++) for (let b = 0; b < L; b++) wGw += wMax[a] * wMax[b] * Gs[a * L + b];
    m[o] = wm.mean;
    r[o] = Math.max(0, wm.variance - wGw);
    if (nOrders === 0) continue;
    // Clark's recursion, with the floor as a last step, gives the differences D_j whose kinks make
    // the Hermite terms
    let mean = mw[0];
    let variance = C[0];
    cw.fill(0, 0, L);
    cw[0] = 1;
    u.fill(0, 0, S * L);
    const steps = L - 1 + (floored ? 1 : 0);
    for (let j = 1; j <= steps; j++) {
      const isFloor = j === L;
      let cov = 0;
      for (let a = 0; a < Math.min(j, L); a++) {
        if (!isFloor) cov += cw[a] * Gs[a * L + j];
        u[j * L + a] = cw[a];
      }
      if (!isFloor) u[j * L + j] = -1;
      const c = isFloor ? clarkMax(mean, variance, floor, 0, 0) : clarkMax(mean, variance, mw[j], C[j * L + j], cov);
      mean = c.mean;
      variance = c.variance;
      coef[j] = c.curvature;
      coef[S + j] = c.third;
      wX[j] = c.weightX;
      for (let a = 0; a < Math.min(j, L); a++) cw[a] *= c.weightX;
      if (!isFloor) cw[j] = 1 - c.weightX;
    }
    if (steps === 0) continue;
    beta[steps] = 1;
    for (let j = steps - 1; j >= 1; j--) beta[j] = beta[j + 1] * wX[j + 1];
    // F-part covariances of the steps' differences: u_j^T G u_l
    for (let j = 1; j <= steps; j++) {
      for (let l = 1; l <= j; l++) {
        let s = 0;
        for (let a = 0; a < L; a++) {
          const ua = u[j * L + a];
          if (ua === 0) continue;
          for (let b = 0; b < L; b++) s += ua * u[l * L + b] * Gs[a * L + b];
        }
        uGu[j * S + l] = s;
        uGu[l * S + j] = s;
      }
    }
    let probed = false;
    let left = r[o];
    for (let n = 0; n < nOrders; n++) {
      const h = orders[n];
      const cOff = (h - 2) * S;
      // exact F-part variance of the order-h term sum_j beta_j c_j He_h(D_j)
      let t = 0;
      for (let j = 1; j <= steps; j++) {
        const bj = beta[j] * coef[cOff + j];
        if (bj === 0) continue;
        for (let l = 1; l <= steps; l++) t += (bj * beta[l] * coef[cOff + l] * uGu[j * S + l] ** h) / FACTORIAL[h];
      }
      const given = Math.max(0, Math.min(left, t));
      target[n * outSize + o] = given;
      left -= given;
      if (!(given > 0)) continue;
      hermite = true;
      if (!probed) {
        // the window's probe values, then u_j . P_d for every step and probe
        for (let a = 0; a < L; a++) {
          const i = idx[s0 + a];
          for (let d = 0; d < p; d++) pv[a * p + d] = Fx[d * size + i];
        }
        for (let j = 1; j <= steps; j++) {
          const o = j * p;
          uP.fill(0, o, o + p);
          for (let a = 0; a < L; a++) {
            const ua = u[j * L + a];
            if (ua === 0) continue;
            for (let d = 0; d < p; d++) uP[o + d] += ua * pv[a * p + d];
          }
        }
        probed = true;
      }
      for (let c = 0; c < K; c++) {
        const a0 = probeOf(c, 0, p);
        const a1 = probeOf(c, 1, p);
        const a2 = probeOf(c, 2, p);
        let s = 0;
        for (let j = 1; j <= steps; j++) {
          const prod = uP[j * p + a0] * uP[j * p + a1] * (h > 2 ? uP[j * p + a2] : 1);
          s += beta[j] * coef[cOff + j] * prod;
        }
        Q[(n * K + c) * outSize + o] = s;
      }
    }
  }
  const extra = hermite ? K : 0;
  let natWeights: Float64Array | undefined;
  if (active?.values) {
    natWeights = new Float64Array(idx.length);
    for (let t = 0; t < idx.length; t++) natWeights[start[Math.floor(t / active.width)] + pos[t]] = weights[t];
  }
  const F = poolRows(Fx, rows, size, idx, weights, start, extra, active && { ...active, first: p }, natWeights);
  if (!hermite) return { ...x, m, F, r };
  // the orders share the K rows (see applyUnitRule)
  const block = F.subarray(rows * outSize);
  const buffer = nOrders > 1 ? new Float32Array(K * outSize) : block;
  for (let n = 0; n < nOrders; n++) {
    const Qn = n === 0 ? block : buffer;
    Qn.set(Q.subarray(n * K * outSize, (n + 1) * K * outSize));
    const given = scaleHermiteRows(Qn, 0, K, outSize, target.subarray(n * outSize, (n + 1) * outSize));
    if (n > 0) for (let j = 0; j < block.length; j++) block[j] += Qn[j];
    for (let o = 0; o < outSize; o++) r[o] = Math.max(0, r[o] - given[o]);
  }
  return { ...x, m, F, k: k + extra, r };
}

/** Affine ops: onnxruntime runs them (mean and JVPs); varianceNodes pushes r through (L o L). */
export const AFFINE_OPS: ReadonlySet<string> = new Set([
  'Conv',
  'ConvTranspose',
  'Gemm',
  'MatMul',
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Neg',
  'Sum',
  'BatchNormalization',
  'Pad',
  'Reshape',
  'Flatten',
  'Transpose',
  'Squeeze',
  'Unsqueeze',
  'Concat',
  'Slice',
  'Split',
  'Gather',
  'Expand',
  'Tile',
  'Identity',
  'Dropout',
  'AveragePool',
  'GlobalAveragePool',
  'ReduceMean',
  'ReduceSum',
]);

/** Ops with a moment rule of any kind. */
export function hasMomentRule(node: GraphNode): boolean {
  if (!isDefault(node)) return false;
  if (AFFINE_OPS.has(node.opType) || node.opType === 'MaxPool' || node.opType === 'Softmax') return true;
  return ['Relu', 'Abs', 'LeakyRelu', 'Clip', 'PRelu', 'Exp'].includes(node.opType) || node.opType in SMOOTH_FUNCTIONS;
}

/** What a variance-node builder needs to know about the graph. */
export interface VarianceContext {
  /** Whether a tensor depends on the noisy input. */
  isVariable(name: string): boolean;
  /** The name of a variable tensor's residual-variance counterpart. */
  rName(name: string): string;
  /** Per-sample shape of a tensor (batch axis dropped). */
  shape(name: string): number[];
  /** A fresh tensor name. */
  fresh(hint: string): string;
  /** The default-domain opset the nodes are built for. */
  opset: number;
  /** A float32 constant (added as an initializer); returns its name. */
  constant(values: number[], dims: number[]): string;
}

const node = (opType: string, inputs: string[], outputs: string[], attributes: GraphNode['attributes'] = []): GraphNode => ({
  name: outputs[0],
  opType,
  domain: '',
  inputs,
  outputs,
  attributes,
});

/**
 * Nodes that compute the residual variance of each variable output of an affine node from its
 * inputs' residual variances: diag(L diag(r) L^T) = (L o L) r for the node's linear part L.
 */
export function varianceNodes(n: GraphNode, ctx: VarianceContext): GraphNode[] {
  const V = (x: string) => x !== '' && ctx.isVariable(x);
  const R = (x: string) => (V(x) ? ctx.rName(x) : x);
  const out = n.outputs[0];
  const rOut = ctx.rName(out);
  const square = (c: string, nodes: GraphNode[]): string => {
    const s = ctx.fresh(`${c}_sq`);
    nodes.push(node('Mul', [c, c], [s]));
    return s;
  };
  const zerosLike = (c: string, nodes: GraphNode[]): string => {
    const z = ctx.fresh(`${c}_zero`);
    nodes.push(node('Mul', [c, ctx.constant([0], [])], [z]));
    return z;
  };
  const refuse = (why: string): never => {
    throw new NetmomentsError(`${n.opType} '${n.name}': ${why}; propagate has no moment rule for it`, { code: 'UNSUPPORTED' });
  };
  const nodes: GraphNode[] = [];
  const vars = n.inputs.filter(V);
  switch (n.opType) {
    case 'Conv':
    case 'ConvTranspose': {
      if (V(n.inputs[1]) || (n.inputs[2] && V(n.inputs[2]))) refuse('noisy weights');
      nodes.push(node(n.opType, [R(n.inputs[0]), square(n.inputs[1], nodes)], [rOut], n.attributes));
      return nodes;
    }
    case 'Gemm': {
      const [a, b] = n.inputs;
      if (V(a) && V(b)) refuse('both factors are noisy');
      const alpha = attrFloat(n, 'alpha', 1);
      const attrs = n.attributes.filter((x) => x.name === 'transA' || x.name === 'transB');
      attrs.push({ name: 'alpha', type: 1, f: alpha * alpha });
      // a zero C (the variance has no bias term): Gemm before opset 11 requires three inputs, and
      // before opset 7 a C of shape [1] broadcasts only with broadcast = 1
      const zeroC = ctx.constant([0], [1]);
      if (ctx.opset < 7) attrs.push({ name: 'broadcast', type: 2, i: 1 });
      nodes.push(node('Gemm', V(a) ? [R(a), square(b, nodes), zeroC] : [square(a, nodes), R(b), zeroC], [rOut], attrs));
      return nodes;
    }
    case 'MatMul': {
      const [a, b] = n.inputs;
      if (V(a) && V(b)) refuse('both factors are noisy');
      nodes.push(node('MatMul', V(a) ? [R(a), square(b, nodes)] : [square(a, nodes), R(b)], [rOut]));
      return nodes;
    }
    case 'Add':
    case 'Sub':
    case 'Sum': {
      // independent residuals add; a constant term adds none (broadcast to the output's shape)
      let acc = '';
      for (const x of n.inputs) {
        const term = V(x) ? R(x) : '';
        if (!term) continue;
        if (!acc) acc = term;
        else {
          const t = ctx.fresh(`${out}_racc`);
          nodes.push(node('Add', [acc, term], [t]));
          acc = t;
        }
      }
      const consts = n.inputs.filter((x) => x && !V(x));
      if (consts.length > 0 && ctx.shape(out).join(',') !== ctx.shape(vars[0]).join(',')) {
        nodes.push(node('Add', [acc, zerosLike(consts[0], nodes)], [rOut]));
      } else nodes.push(node('Identity', [acc], [rOut]));
      return nodes;
    }
    case 'Mul': {
      const [a, b] = n.inputs;
      if (V(a) && V(b)) refuse('a product of two noisy tensors');
      const c = V(a) ? b : a;
      nodes.push(node('Mul', [R(V(a) ? a : b), square(c, nodes)], [rOut]));
      return nodes;
    }
    case 'Div': {
      const [a, b] = n.inputs;
      if (V(b)) refuse('a noisy divisor');
      nodes.push(node('Div', [R(a), square(b, nodes)], [rOut]));
      return nodes;
    }
    case 'Neg':
    case 'Identity':
    case 'Dropout':
      nodes.push(node('Identity', [R(n.inputs[0])], [rOut]));
      return nodes;
    case 'BatchNormalization': {
      // y = scale (x - mean) / sqrt(var + eps) + B: r_y = scale^2 r / (var + eps), written as a
      // BatchNormalization with scale^2, zero B and mean, and var' = (var + eps)^2 - eps
      const [, scale, bias, mean, variance] = n.inputs;
      if ([scale, bias, mean, variance].some(V)) refuse('noisy parameters');
      const eps = attrFloat(n, 'epsilon', 1e-5);
      const e = ctx.constant([eps], []);
      const vpe = ctx.fresh(`${out}_vpe`);
      nodes.push(node('Add', [variance, e], [vpe]));
      const vpe2 = square(vpe, nodes);
      const v2 = ctx.fresh(`${out}_var2`);
      nodes.push(node('Sub', [vpe2, e], [v2]));
      const attrs = n.attributes.filter((x) => x.name === 'epsilon');
      nodes.push(node('BatchNormalization', [R(n.inputs[0]), square(scale, nodes), zerosLike(bias, nodes), zerosLike(mean, nodes), v2], [rOut], attrs));
      return nodes;
    }
    case 'Pad': {
      // constant padding adds units with no variance; edge/reflect copy variances like values
      const inputs = [R(n.inputs[0]), ...n.inputs.slice(1)];
      if (inputs.length > 2) inputs[2] = '';
      nodes.push(
        node(
          'Pad',
          inputs,
          [rOut],
          n.attributes.filter((x) => x.name !== 'value'),
        ),
      );
      return nodes;
    }
    case 'Concat': {
      nodes.push(
        node(
          'Concat',
          n.inputs.map((x) => (V(x) ? R(x) : zerosLike(x, nodes))),
          [rOut],
          n.attributes,
        ),
      );
      return nodes;
    }
    case 'Reshape':
    case 'Flatten':
    case 'Transpose':
    case 'Squeeze':
    case 'Unsqueeze':
    case 'Slice':
    case 'Gather':
    case 'Expand':
    case 'Tile':
    case 'ReduceSum': {
      if (n.inputs.slice(1).some(V)) refuse('noisy indices or shapes');
      nodes.push(node(n.opType, [R(n.inputs[0]), ...n.inputs.slice(1)], [rOut], n.attributes));
      return nodes;
    }
    case 'Split': {
      if (n.inputs.slice(1).some(V)) refuse('noisy split sizes');
      nodes.push(
        node(
          'Split',
          [R(n.inputs[0]), ...n.inputs.slice(1)],
          n.outputs.map((o) => (o ? ctx.rName(o) : '')),
          n.attributes,
        ),
      );
      return nodes;
    }
    case 'AveragePool': {
      const kernel = attrInts(n, 'kernel_shape') ?? [];
      const K = kernel.reduce((a, d) => a * d, 1);
      const pads = attrInts(n, 'pads') ?? [];
      const padded = pads.some((p) => p !== 0) || !['NOTSET', 'VALID'].includes(attrString(n, 'auto_pad', 'NOTSET'));
      const pooled = ctx.fresh(`${out}_rpool`);
      nodes.push(node('AveragePool', [R(n.inputs[0])], [pooled], n.attributes));
      if (padded && attrInt(n, 'count_include_pad', 0) === 0) {
        // each output averages K_i < K real units: r_out = sum r / K_i^2 = AveragePool(r) / K_i,
        // with K_i / K = AveragePool with count_include_pad = 1 of a tensor of ones
        const ones = ctx.fresh(`${out}_ones`);
        nodes.push(node('Add', [zerosLike(R(n.inputs[0]), nodes), ctx.constant([1], [])], [ones]));
        const frac = ctx.fresh(`${out}_frac`);
        const attrs = n.attributes.filter((x) => x.name !== 'count_include_pad');
        attrs.push({ name: 'count_include_pad', type: 2, i: 1 });
        nodes.push(node('AveragePool', [ones], [frac], attrs));
        const cnt = ctx.fresh(`${out}_count`);
        nodes.push(node('Mul', [frac, ctx.constant([K], [])], [cnt]));
        nodes.push(node('Div', [pooled, cnt], [rOut]));
      } else nodes.push(node('Mul', [pooled, ctx.constant([1 / K], [])], [rOut]));
      return nodes;
    }
    case 'GlobalAveragePool':
    case 'ReduceMean': {
      const inSize = ctx.shape(n.inputs[0]).reduce((a, d) => a * d, 1);
      const outSize = ctx.shape(out).reduce((a, d) => a * d, 1);
      const pooled = ctx.fresh(`${out}_rpool`);
      nodes.push(node(n.opType, [R(n.inputs[0]), ...n.inputs.slice(1)], [pooled], n.attributes));
      nodes.push(node('Mul', [pooled, ctx.constant([outSize / inSize], [])], [rOut]));
      return nodes;
    }
    default:
      return refuse('not an affine op');
  }
}
