/**
 * Per-op moment rules of moment propagation (issue 13), one function per op family, each a pure
 * function of the node (attributes, constants) and the incoming moments, so that each can move
 * into the op registry's per-op file later. A tensor's moments are (m, F, r): mean m, covariance
 * F F^T + diag(r) with F stored direction-major ([k, size]: row d is the image of the d-th input
 * noise direction) and r >= 0 a residual variance per unit.
 *
 * Three kinds of rule:
 *  - unit-wise (Relu, LeakyRelu, PRelu, Clip, Abs, Sigmoid, Tanh, Exp, Erf, Sin, Cos, Softplus):
 *    statistical linearization. Per unit, with s^2 = |F_i|^2 + r_i, the exact mean and variance of
 *    f(x_i), x_i ~ N(m_i, s^2) (src/moments/piecewise.ts, smooth.ts); F_i passes scaled by the
 *    expected slope E f'(x_i) (Stein's lemma: cov(f(x_i), z) = E f'(x_i) cov(x_i, z) for every z
 *    jointly Gaussian with x_i, so the output's covariance with the input noise is exact); r takes
 *    the rest of the exact variance, var - slope^2 |F_i|^2 (clamped at 0).
 *  - MaxPool: Clark's max applied pairwise over each window (src/moments/clark.ts), the window's
 *    elements taken by decreasing mean; F passes with Clark's weights Phi(alpha), 1 - Phi(alpha),
 *    exact for the covariance with anything jointly Gaussian with the pair.
 *  - affine ops: run by onnxruntime (mean and the columns of F through JVPs of the segment);
 *    `varianceNodes` gives the nodes that push r through the squared linear part (L o L) r.
 *    Residual variances of different units are taken as uncorrelated (their correlated part is in F).
 */
import { NetmomentsError } from '../errors.js';
import { attrFloat, attrInt, attrInts, attrString, graphConstant, type Graph, type GraphNode } from '../onnx/graph.js';
import type { TensorValue } from '../onnx/tensor.js';
import { clarkMax } from '../moments/clark.js';
import { ABS, RELU, clip, leakyRelu, piecewiseLinearMoments, type GaussianImage, type PiecewiseLinear } from '../moments/piecewise.js';
import { SMOOTH_FUNCTIONS, expMoments, smoothMoments } from '../moments/smooth.js';

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
  const Fx = x.F;
  const F = new Float32Array((rows + orders.length * K) * size);
  for (let d = 0; d < rows; d++) {
    const o = d * size;
    for (let i = 0; i < size; i++) F[o + i] = slope[i] * Fx[o + i];
  }
  const target = new Float64Array(size);
  orders.forEach((h, n) => {
    const ch = coef[h - 2];
    const at = rows + n * K;
    for (let c = 0; c < K; c++) {
      const o = (at + c) * size;
      const p0 = probeOf(c, 0, p) * size;
      const p1 = probeOf(c, 1, p) * size;
      if (h === 2) for (let i = 0; i < size; i++) F[o + i] = ch[i] * Fx[p0 + i] * Fx[p1 + i];
      else {
        const p2 = probeOf(c, 2, p) * size;
        for (let i = 0; i < size; i++) F[o + i] = ch[i] * Fx[p0 + i] * Fx[p1 + i] * Fx[p2 + i];
      }
    }
    for (let i = 0; i < size; i++) target[i] = Math.min(r[i], (ch[i] * ch[i] * q[i] ** h) / FACTORIAL[h]);
    const given = scaleHermiteRows(F, at, K, size, target);
    for (let i = 0; i < size; i++) r[i] = Math.max(0, r[i] - given[i]);
  });
  return { ...x, m, F, k: x.k + orders.length * K, r };
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
 * lists for them (the others are 0).
 */
function poolRows(
  Fx: Float32Array,
  rows: number,
  size: number,
  idx: Int32Array,
  weights: Float64Array,
  start: Int32Array,
  extraRows: number,
  active: { rowStart: Int32Array; windows: Int32Array; first: number } | undefined,
): Float32Array {
  const outSize = start.length - 1;
  const F = new Float32Array((rows + extraRows) * outSize);
  const all4 = idx.length === 4 * outSize;
  for (let d = 0; d < rows; d++) {
    const row = d * size;
    const dst = d * outSize;
    if (active && d >= active.first) {
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

/** A MaxPool step's cache of window Gram matrices, valid for one factor array (see applyMaxPool). */
export interface MaxPoolGram {
  F?: Float32Array;
  k?: number;
  G?: Float64Array;
  active?: { rowStart: Int32Array; windows: Int32Array };
}

/**
 * Clark's pairwise max over each window (see the header), in weight form: the running max after
 * combining elements 0..j of a window passes the factor as sum_a w_a F_{i_a} (Clark's weights
 * multiplied along the way), so cov(running max, element j) = sum_a w_a G_{a j} (residuals of
 * different units taken as uncorrelated) needs only the window's Gram matrix
 * G_{ab} = F_{i_a} . F_{i_b}, computed in one pass over the factor; a second pass writes the
 * output rows sum_a w_a F_{i_a}. The residual is Clark's variance minus w^T G w.
 *
 * Hermite rows: step j is max(R, X_j) = X_j + relu(D_j), D_j = R - X_j = u_j^T x_window, whose
 * order-h Hermite part (h = 2, 3) has the coefficient c_j = E relu^(h)(D_j) (clarkMax's curvature
 * and third) and reaches the window's max scaled by beta_j, the product of the later steps'
 * weights of the running max. The window's term sum_j beta_j c_j He_h(D_j) is sketched from the
 * probes as sum_j beta_j c_j prod_t (u_j . P_t) (see probeOf) and scaled to its exact F-part
 * variance sum_jl beta_j beta_l c_j c_l (u_j^T G u_l)^h / h! (at most the residual left).
 */
export function applyMaxPool(windows: readonly Int32Array[], x: TensorMoments, cache: MaxPoolGram = {}, hermiteOrder = 3): TensorMoments {
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
  let active: { rowStart: Int32Array; windows: Int32Array } | undefined;
  if (cache.F === Fx && cache.k === k && cache.G) {
    G = cache.G;
    active = cache.active;
  } else {
    const grams = windowGrams(Fx, p, k, size, nat, start, gStart);
    G = grams.G;
    // the sparse pass pays when at most half the (row, window) pairs hold a nonzero
    active = grams.windows.length <= (k * outSize) / 2 ? { rowStart: grams.rowStart, windows: grams.windows.slice() } : undefined;
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
  // probes unit-major, for the Hermite sketch
  const orders = K > 0 ? [2, 3].filter((h) => h <= hermiteOrder) : [];
  const nOrders = orders.length;
  const PT = new Float64Array(nOrders > 0 ? size * p : 0);
  for (let d = 0; d < (nOrders > 0 ? p : 0); d++) for (let i = 0; i < size; i++) PT[i * p + d] = Fx[d * size + i];
  const m = new Float64Array(outSize);
  const r = new Float64Array(outSize);
  const weights = new Float64Array(idx.length);
  const Q = new Float64Array(nOrders * K * outSize); // [order][column][window]
  const target = new Float64Array(nOrders * outSize);
  const Gs = new Float64Array(maxLen * maxLen); // the window's Gram in sorted order
  const u = new Float64Array(maxLen * maxLen); // u_j: D_j's coefficients over the window (sorted order)
  const uGu = new Float64Array(maxLen * maxLen);
  const coef = new Float64Array(2 * maxLen); // E relu'', E relu''' of D_j
  const wX = new Float64Array(maxLen);
  const beta = new Float64Array(maxLen);
  const uP = new Float64Array(maxLen * Math.max(p, 1));
  let hermite = false;
  for (let o = 0; o < outSize; o++) {
    const s0 = start[o];
    const L = start[o + 1] - s0;
    const g0 = gStart[o];
    for (let a = 0; a < L; a++) for (let b = 0; b < L; b++) Gs[a * L + b] = G[g0 + pos[s0 + a] * L + pos[s0 + b]];
    const i0 = idx[s0];
    let mean = x.m[i0];
    let variance = Gs[0] + x.r[i0];
    weights[s0] = 1;
    u.fill(0, 0, L * L);
    for (let j = 1; j < L; j++) {
      const ij = idx[s0 + j];
      let cov = 0;
      for (let a = 0; a < j; a++) {
        cov += weights[s0 + a] * Gs[a * L + j];
        u[j * L + a] = weights[s0 + a];
      }
      u[j * L + j] = -1;
      const c = clarkMax(mean, variance, x.m[ij], Gs[j * L + j] + x.r[ij], cov);
      mean = c.mean;
      variance = c.variance;
      coef[j] = c.curvature;
      coef[maxLen + j] = c.third;
      wX[j] = c.weightX;
      for (let a = 0; a < j; a++) weights[s0 + a] *= c.weightX;
      weights[s0 + j] = 1 - c.weightX;
    }
    let wGw = 0;
    for (let a = 0; a < L; a++) for (let b = 0; b < L; b++) wGw += weights[s0 + a] * weights[s0 + b] * Gs[a * L + b];
    m[o] = mean;
    r[o] = Math.max(0, variance - wGw);
    if (nOrders === 0 || L < 2) continue;
    beta[L - 1] = 1;
    for (let j = L - 2; j >= 1; j--) beta[j] = beta[j + 1] * wX[j + 1];
    // F-part covariances of the steps' differences: u_j^T G u_l
    for (let j = 1; j < L; j++) {
      for (let l = 1; l <= j; l++) {
        let s = 0;
        for (let a = 0; a <= j; a++) {
          const ua = u[j * L + a];
          if (ua === 0) continue;
          for (let b = 0; b <= l; b++) s += ua * u[l * L + b] * Gs[a * L + b];
        }
        uGu[j * L + l] = s;
        uGu[l * L + j] = s;
      }
    }
    let probed = false;
    let left = r[o];
    for (let n = 0; n < nOrders; n++) {
      const h = orders[n];
      const cOff = (h - 2) * maxLen;
      // exact F-part variance of the order-h term sum_j beta_j c_j He_h(D_j)
      let t = 0;
      for (let j = 1; j < L; j++) {
        const bj = beta[j] * coef[cOff + j];
        if (bj === 0) continue;
        for (let l = 1; l < L; l++) t += (bj * beta[l] * coef[cOff + l] * uGu[j * L + l] ** h) / FACTORIAL[h];
      }
      const given = Math.max(0, Math.min(left, t));
      target[n * outSize + o] = given;
      left -= given;
      if (!(given > 0)) continue;
      hermite = true;
      if (!probed) {
        // u_j . P_d for every step and probe
        for (let j = 1; j < L; j++) {
          for (let d = 0; d < p; d++) {
            let s = 0;
            for (let a = 0; a <= j; a++) s += u[j * L + a] * PT[idx[s0 + a] * p + d];
            uP[j * p + d] = s;
          }
        }
        probed = true;
      }
      for (let c = 0; c < K; c++) {
        const a0 = probeOf(c, 0, p);
        const a1 = probeOf(c, 1, p);
        const a2 = probeOf(c, 2, p);
        let s = 0;
        for (let j = 1; j < L; j++) {
          const prod = uP[j * p + a0] * uP[j * p + a1] * (h > 2 ? uP[j * p + a2] : 1);
          s += beta[j] * coef[cOff + j] * prod;
        }
        Q[(n * K + c) * outSize + o] = s;
      }
    }
  }
  const extra = hermite ? orders.length * K : 0;
  const F = poolRows(Fx, rows, size, idx, weights, start, extra, active && { ...active, first: p });
  if (!hermite) return { ...x, m, F, r };
  F.set(Q, rows * outSize);
  for (let n = 0; n < nOrders; n++) {
    const given = scaleHermiteRows(F, rows + n * K, K, outSize, target.subarray(n * outSize, (n + 1) * outSize));
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
  if (AFFINE_OPS.has(node.opType) || node.opType === 'MaxPool') return true;
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
      nodes.push(node('Gemm', V(a) ? [R(a), square(b, nodes)] : [square(a, nodes), R(b)], [rOut], attrs));
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
