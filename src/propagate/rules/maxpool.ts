/** MaxPool (optionally fused with the Relu after it): window moments and Hermite rows (see ./index.ts). */
import { attrInts, attrString, type GraphNode } from '../../onnx/graph.js';
import { clarkMax } from '../../moments/clark.js';
import { Rng } from '../../moments/montecarlo.js';
import { LATTICE_SHIFTS, windowMax } from '../../moments/windowmax.js';
import {
  FACTORIAL,
  carryHermiteRows,
  maxHermiteColumns,
  newFactor,
  probeOf,
  tapeHermiteColumns,
  truncateFactor,
  scaleHermiteRows,
  type StepTape,
  type TensorMoments,
} from './factor.js';

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
  // (row, window) pairs holding a nonzero, one bit each ([row][window / 32]), listed after the pass
  const words = (outSize + 31) >> 5;
  const nonzero = new Int32Array(k * words);
  const v = new Float64Array(64);
  // windows of 4 (2 x 2 pools) and 9 (3 x 3) first, one at a time over all rows, their Gram
  // entries summed in locals (in increasing row order, as the blocked pass below does)
  const done = new Uint8Array(outSize);
  for (let o = 0; o < outSize; o++) {
    const s0 = start[o];
    const L = start[o + 1] - s0;
    const g0 = gStart[o];
    if (L === 4) {
      // 2 x 2 windows
      const i0 = nat[s0];
      const i1 = nat[s0 + 1];
      const i2 = nat[s0 + 2];
      const i3 = nat[s0 + 3];
      let g00 = 0,
        g01 = 0,
        g02 = 0,
        g03 = 0,
        g11 = 0,
        g12 = 0,
        g13 = 0,
        g22 = 0,
        g23 = 0,
        g33 = 0;
      for (let d = 0; d < k; d++) {
        const row = (first + d) * size;
        const v0 = Fx[row + i0];
        const v1 = Fx[row + i1];
        const v2 = Fx[row + i2];
        const v3 = Fx[row + i3];
        if (v0 === 0 && v1 === 0 && v2 === 0 && v3 === 0) continue;
        nonzero[d * words + (o >> 5)] |= 1 << (o & 31);
        g00 += v0 * v0;
        g01 += v0 * v1;
        g02 += v0 * v2;
        g03 += v0 * v3;
        g11 += v1 * v1;
        g12 += v1 * v2;
        g13 += v1 * v3;
        g22 += v2 * v2;
        g23 += v2 * v3;
        g33 += v3 * v3;
      }
      G[g0] = g00;
      G[g0 + 1] = g01;
      G[g0 + 2] = g02;
      G[g0 + 3] = g03;
      G[g0 + 5] = g11;
      G[g0 + 6] = g12;
      G[g0 + 7] = g13;
      G[g0 + 10] = g22;
      G[g0 + 11] = g23;
      G[g0 + 15] = g33;
      done[o] = 1;
    } else if (L === 9) {
      // 3 x 3 windows, unrolled: the 45 Gram entries summed in locals over the rows in order
      const i0 = nat[s0 + 0];
      const i1 = nat[s0 + 1];
      const i2 = nat[s0 + 2];
      const i3 = nat[s0 + 3];
      const i4 = nat[s0 + 4];
      const i5 = nat[s0 + 5];
      const i6 = nat[s0 + 6];
      const i7 = nat[s0 + 7];
      const i8 = nat[s0 + 8];
      let g00 = 0,
        g01 = 0,
        g02 = 0,
        g03 = 0,
        g04 = 0,
        g05 = 0,
        g06 = 0,
        g07 = 0,
        g08 = 0,
        g11 = 0,
        g12 = 0,
        g13 = 0,
        g14 = 0,
        g15 = 0,
        g16 = 0,
        g17 = 0,
        g18 = 0,
        g22 = 0,
        g23 = 0,
        g24 = 0,
        g25 = 0,
        g26 = 0,
        g27 = 0,
        g28 = 0,
        g33 = 0,
        g34 = 0,
        g35 = 0,
        g36 = 0,
        g37 = 0,
        g38 = 0,
        g44 = 0,
        g45 = 0,
        g46 = 0,
        g47 = 0,
        g48 = 0,
        g55 = 0,
        g56 = 0,
        g57 = 0,
        g58 = 0,
        g66 = 0,
        g67 = 0,
        g68 = 0,
        g77 = 0,
        g78 = 0,
        g88 = 0;
      for (let d = 0; d < k; d++) {
        const row = (first + d) * size;
        const v0 = Fx[row + i0];
        const v1 = Fx[row + i1];
        const v2 = Fx[row + i2];
        const v3 = Fx[row + i3];
        const v4 = Fx[row + i4];
        const v5 = Fx[row + i5];
        const v6 = Fx[row + i6];
        const v7 = Fx[row + i7];
        const v8 = Fx[row + i8];
        if (v0 === 0 && v1 === 0 && v2 === 0 && v3 === 0 && v4 === 0 && v5 === 0 && v6 === 0 && v7 === 0 && v8 === 0) continue;
        nonzero[d * words + (o >> 5)] |= 1 << (o & 31);
        g00 += v0 * v0;
        g01 += v0 * v1;
        g02 += v0 * v2;
        g03 += v0 * v3;
        g04 += v0 * v4;
        g05 += v0 * v5;
        g06 += v0 * v6;
        g07 += v0 * v7;
        g08 += v0 * v8;
        g11 += v1 * v1;
        g12 += v1 * v2;
        g13 += v1 * v3;
        g14 += v1 * v4;
        g15 += v1 * v5;
        g16 += v1 * v6;
        g17 += v1 * v7;
        g18 += v1 * v8;
        g22 += v2 * v2;
        g23 += v2 * v3;
        g24 += v2 * v4;
        g25 += v2 * v5;
        g26 += v2 * v6;
        g27 += v2 * v7;
        g28 += v2 * v8;
        g33 += v3 * v3;
        g34 += v3 * v4;
        g35 += v3 * v5;
        g36 += v3 * v6;
        g37 += v3 * v7;
        g38 += v3 * v8;
        g44 += v4 * v4;
        g45 += v4 * v5;
        g46 += v4 * v6;
        g47 += v4 * v7;
        g48 += v4 * v8;
        g55 += v5 * v5;
        g56 += v5 * v6;
        g57 += v5 * v7;
        g58 += v5 * v8;
        g66 += v6 * v6;
        g67 += v6 * v7;
        g68 += v6 * v8;
        g77 += v7 * v7;
        g78 += v7 * v8;
        g88 += v8 * v8;
      }
      G[g0 + 0] = g00;
      G[g0 + 1] = g01;
      G[g0 + 2] = g02;
      G[g0 + 3] = g03;
      G[g0 + 4] = g04;
      G[g0 + 5] = g05;
      G[g0 + 6] = g06;
      G[g0 + 7] = g07;
      G[g0 + 8] = g08;
      G[g0 + 10] = g11;
      G[g0 + 11] = g12;
      G[g0 + 12] = g13;
      G[g0 + 13] = g14;
      G[g0 + 14] = g15;
      G[g0 + 15] = g16;
      G[g0 + 16] = g17;
      G[g0 + 17] = g18;
      G[g0 + 20] = g22;
      G[g0 + 21] = g23;
      G[g0 + 22] = g24;
      G[g0 + 23] = g25;
      G[g0 + 24] = g26;
      G[g0 + 25] = g27;
      G[g0 + 26] = g28;
      G[g0 + 30] = g33;
      G[g0 + 31] = g34;
      G[g0 + 32] = g35;
      G[g0 + 33] = g36;
      G[g0 + 34] = g37;
      G[g0 + 35] = g38;
      G[g0 + 40] = g44;
      G[g0 + 41] = g45;
      G[g0 + 42] = g46;
      G[g0 + 43] = g47;
      G[g0 + 44] = g48;
      G[g0 + 50] = g55;
      G[g0 + 51] = g56;
      G[g0 + 52] = g57;
      G[g0 + 53] = g58;
      G[g0 + 60] = g66;
      G[g0 + 61] = g67;
      G[g0 + 62] = g68;
      G[g0 + 70] = g77;
      G[g0 + 71] = g78;
      G[g0 + 80] = g88;
      done[o] = 1;
    }
  }
  // windows in blocks whose Grams stay in cache while every row adds to them (each G entry still
  // sums the rows in increasing order: the same result as a row-by-row sweep)
  const BLOCK = 128;
  for (let o0 = 0; o0 < outSize; o0 += BLOCK) {
    const o1 = Math.min(outSize, o0 + BLOCK);
    for (let d = 0; d < k; d++) {
      const row = (first + d) * size;
      const bits = d * words;
      for (let o = o0; o < o1; o++) {
        if (done[o]) continue;
        const s0 = start[o];
        const L = start[o + 1] - s0;
        let any = false;
        for (let a = 0; a < L; a++) {
          const f = Fx[row + nat[s0 + a]];
          v[a] = f;
          if (f !== 0) any = true;
        }
        if (!any) continue;
        nonzero[bits + (o >> 5)] |= 1 << (o & 31);
        const g0 = gStart[o];
        for (let a = 0; a < L; a++) {
          const va = v[a];
          const ga = g0 + a * L;
          for (let b = a; b < L; b++) G[ga + b] += va * v[b];
        }
      }
    }
  }
  let count = 0;
  for (let j = 0; j < nonzero.length; j++) {
    let w = nonzero[j];
    while (w !== 0) {
      w &= w - 1;
      count++;
    }
  }
  const list = new Int32Array(count);
  count = 0;
  for (let d = 0; d < k; d++) {
    const bits = d * words;
    for (let j = 0; j < words; j++) {
      let w = nonzero[bits + j];
      while (w !== 0) {
        const low = w & -w;
        list[count++] = (j << 5) + (31 - Math.clz32(low));
        w ^= low;
      }
    }
    rowStart[d + 1] = count;
  }
  for (let o = 0; o < outSize; o++) {
    const L = start[o + 1] - start[o];
    const g0 = gStart[o];
    for (let a = 0; a < L; a++) for (let b = 0; b < a; b++) G[g0 + a * L + b] = G[g0 + b * L + a];
  }
  return { G, rowStart, windows: list };
}

/**
 * The pooled factor rows: out[d, o] = sum_t weights[t] F[d, idx[t]] over window o's entries
 * (start[o]..start[o+1]) for rows 0..rows-1; rows from `first` on visit only the windows `active`
 * lists for them (the others are 0), reading its stored values with the weights in natural window
 * order (natWeights) when it has them.
 */
function poolRows(
  F: Float32Array,
  Fx: Float32Array,
  rows: number,
  size: number,
  idx: Int32Array,
  weights: Float64Array,
  start: Int32Array,
  active: (SparseWindows & { first: number }) | undefined,
  natWeights?: Float64Array,
): Float32Array {
  const outSize = start.length - 1;
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
        const t = start[o];
        if (start[o + 1] - t === 9) {
          // 3 x 3 windows unrolled: the same sum, 0 + term_0 + ... + term_8 left to right
          F[dst + o] =
            0 +
            weights[t + 0] * Fx[row + idx[t + 0]] +
            weights[t + 1] * Fx[row + idx[t + 1]] +
            weights[t + 2] * Fx[row + idx[t + 2]] +
            weights[t + 3] * Fx[row + idx[t + 3]] +
            weights[t + 4] * Fx[row + idx[t + 4]] +
            weights[t + 5] * Fx[row + idx[t + 5]] +
            weights[t + 6] * Fx[row + idx[t + 6]] +
            weights[t + 7] * Fx[row + idx[t + 7]] +
            weights[t + 8] * Fx[row + idx[t + 8]];
          continue;
        }
        let acc = 0;
        for (let t = start[o]; t < start[o + 1]; t++) acc += weights[t] * Fx[row + idx[t]];
        F[dst + o] = acc;
      }
    }
  }
  return F;
}

/** The W input values of each active (row, window) pair, in natural window order (SparseWindows.values). */
function activeValues(Fx: Float32Array, first: number, k: number, size: number, nat: Int32Array, active: SparseWindows): Float32Array {
  const W = active.width;
  const values = new Float32Array(active.windows.length * W);
  for (let d = 0; d < k; d++) {
    const row = (first + d) * size;
    for (let e = active.rowStart[d]; e < active.rowStart[d + 1]; e++) {
      const o = active.windows[e];
      for (let a = 0; a < W; a++) values[e * W + a] = Fx[row + nat[o * W + a]];
    }
  }
  return values;
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
export function applyMaxPool(
  windows: readonly Int32Array[],
  x: TensorMoments,
  cache: MaxPoolGram = {},
  hermiteOrder = 3,
  floor = -Infinity,
  columns = x.probes >> 1,
  spare = 0,
  tape?: StepTape,
): TensorMoments {
  const size = x.m.length;
  const outSize = windows.length;
  const p = x.probes;
  const k = x.k;
  const rows = p + k;
  const K = Math.min(columns, maxHermiteColumns(p));
  // Kt >= K columns are sketched when the tape asks for more (carryHermiteRows)
  const Kt = tapeHermiteColumns(K, p, tape?.hermiteColumns);
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
    // the second call on the same factor (the input noise's image, the same for every input):
    // from now on the active windows' values are read contiguously; a factor seen once (every
    // later MaxPool's) is gathered directly instead, as storing its values would cost as much
    if (active && !active.values && nat.length === active.width * outSize) active.values = activeValues(Fx, p, k, size, nat, active);
  } else {
    const grams = windowGrams(Fx, p, k, size, nat, start, gStart);
    G = grams.G;
    // the sparse pass pays when at most half the (row, window) pairs hold a nonzero
    const count = grams.windows.length;
    active = count <= (k * outSize) / 2 ? { rowStart: grams.rowStart, windows: grams.windows, width: start[1] - start[0] } : undefined;
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
    // insertion sort (windows are short), stable like Array.prototype.sort
    const w = windows[o];
    const s0 = start[o];
    for (let a = 0; a < w.length; a++) {
      const ma = x.m[w[a]];
      let b = a;
      while (b > 0 && x.m[idx[s0 + b - 1]] < ma) {
        pos[s0 + b] = pos[s0 + b - 1];
        idx[s0 + b] = idx[s0 + b - 1];
        b--;
      }
      pos[s0 + b] = a;
      idx[s0 + b] = w[a];
    }
  }
  const orders = Kt > 0 ? [2, 3].filter((h) => h <= hermiteOrder) : [];
  const nOrders = orders.length;
  const floored = Number.isFinite(floor);
  const m = new Float64Array(outSize);
  const r = new Float64Array(outSize);
  const weights = new Float64Array(idx.length);
  // the output factor, with K Hermite rows after the pooled ones (dropped when no window has a
  // Hermite part); order 2's sketch goes straight into them, order 3's into a buffer ([column][window])
  const F = newFactor(rows + (nOrders > 0 ? K : 0), outSize, spare);
  const Q = [
    Kt === K ? F.subarray(rows * outSize) : new Float32Array(nOrders > 0 ? Kt * outSize : 0),
    nOrders > 1 ? new Float32Array(Kt * outSize) : undefined,
  ];
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
  const Gu = new Float64Array(S * maxLen); // G u_l (sorted order)
  const coef = new Float64Array(2 * S); // E relu'', E relu''' of D_j
  const wX = new Float64Array(S);
  const beta = new Float64Array(S);
  const bc = new Float64Array(2 * S); // beta_j c_j, order 2 then order 3
  const uP = new Float64Array(S * Math.max(p, 1));
  const Rp = new Float64Array(Math.max(p, 1)); // the running max's probe values, R_j
  // each column's probes (probeOf), looked up once
  const probeIdx = new Int32Array(3 * Kt);
  for (let c = 0; c < Kt; c++) for (let t = 0; t < 3; t++) probeIdx[3 * c + t] = probeOf(c, t, p);
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
    // a window without residual (decided: its max is one element, linear) has no Hermite part
    if (nOrders === 0 || !(r[o] > 0)) continue;
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
    // F-part covariances of the steps' differences, u_j^T G u_l: first G u_l for every step, then
    // the dot products (u_j is nonzero on its first j + 1 entries only, the floor's on all L)
    for (let l = 1; l <= steps; l++) {
      const nl = Math.min(l + 1, L);
      for (let a = 0; a < L; a++) {
        let v = 0;
        for (let b = 0; b < nl; b++) v += Gs[a * L + b] * u[l * L + b];
        Gu[l * L + a] = v;
      }
    }
    for (let j = 1; j <= steps; j++) {
      const nj = Math.min(j + 1, L);
      for (let l = 1; l <= j; l++) {
        let g = 0;
        for (let a = 0; a < nj; a++) g += u[j * L + a] * Gu[l * L + a];
        uGu[j * S + l] = g;
        uGu[l * S + j] = g;
      }
    }
    // the exact F-part variance of each order's term sum_j beta_j c_j He_h(D_j), given out of the
    // residual in turn (order 2 first)
    let left = r[o];
    let any = false;
    for (let n = 0; n < nOrders; n++) {
      const h = orders[n];
      const cOff = (h - 2) * S;
      let t = 0;
      for (let j = 1; j <= steps; j++) {
        const bj = beta[j] * coef[cOff + j];
        if (bj === 0) continue;
        for (let l = 1; l <= steps; l++) {
          const g = uGu[j * S + l];
          t += bj * beta[l] * coef[cOff + l] * (h === 2 ? g * g : g * g * g);
        }
      }
      t /= FACTORIAL[h];
      const given = Math.max(0, Math.min(left, t));
      target[n * outSize + o] = given;
      left -= given;
      // beta_j c_j of this order, 0 where the order gives nothing (its sketch is then 0)
      for (let j = 1; j <= steps; j++) bc[n * S + j] = given > 0 ? beta[j] * coef[cOff + j] : 0;
      if (given > 0) any = true;
    }
    if (!any) continue;
    hermite = true;
    // u_j . P_d for every step and probe: u_j = cw^(j) - e_j (the floor's: cw^(L)), with Clark's
    // running weights cw^(j+1) = wX_j cw^(j) + (1 - wX_j) e_j, so R_j = cw^(j) . P follows
    // R_1 = P_0, R_(j+1) = wX_j R_j + (1 - wX_j) P_j
    for (let a = 0; a < L; a++) {
      const i = idx[s0 + a];
      for (let d = 0; d < p; d++) pv[a * p + d] = Fx[d * size + i];
    }
    for (let d = 0; d < p; d++) Rp[d] = pv[d];
    for (let j = 1; j <= steps; j++) {
      const o = j * p;
      if (j < L) {
        const w = wX[j];
        const pj = j * p;
        for (let d = 0; d < p; d++) {
          const pd = pv[pj + d];
          uP[o + d] = Rp[d] - pd;
          Rp[d] = w * Rp[d] + (1 - w) * pd;
        }
      } else for (let d = 0; d < p; d++) uP[o + d] = Rp[d];
    }
    // both orders' sketches in one pass over the columns (order 2: the product of the column's first
    // two probes' values, order 3: of all three)
    const Q2 = Q[0]!;
    const Q3 = Q[1];
    const b3 = nOrders > 1 ? S : 0;
    for (let c = 0; c < Kt; c++) {
      const a0 = probeIdx[3 * c];
      const a1 = probeIdx[3 * c + 1];
      const a2 = probeIdx[3 * c + 2];
      let s2 = 0;
      let s3 = 0;
      for (let jp = p, j = 1; j <= steps; j++, jp += p) {
        const q = uP[jp + a0] * uP[jp + a1];
        s2 += bc[j] * q;
        s3 += bc[b3 + j] * (q * uP[jp + a2]);
      }
      Q2[c * outSize + o] = s2;
      if (Q3) Q3[c * outSize + o] = s3;
    }
  }
  let natWeights: Float64Array | undefined;
  if (active?.values) {
    natWeights = new Float64Array(idx.length);
    for (let t = 0; t < idx.length; t++) natWeights[start[Math.floor(t / active.width)] + pos[t]] = weights[t];
  }
  poolRows(F, Fx, rows, size, idx, weights, start, active && { ...active, first: p }, natWeights);
  if (tape) {
    tape.pool = { idx, weights, start };
    tape.r = r;
  }
  if (!hermite) return { ...x, m, F: nOrders > 0 ? truncateFactor(F, outSize, rows) : F, r };
  // the orders share the K rows (see applyUnitRule)
  const block = Q[0]!;
  const givenAll = new Float64Array(outSize);
  for (let n = 0; n < nOrders; n++) {
    const Qn = Q[n]!;
    const given = scaleHermiteRows(Qn, 0, Kt, outSize, target.subarray(n * outSize, (n + 1) * outSize));
    if (n > 0) for (let j = 0; j < block.length; j++) block[j] += Qn[j];
    for (let o = 0; o < outSize; o++) {
      r[o] = Math.max(0, r[o] - given[o]);
      givenAll[o] += given[o];
    }
  }
  const rForward = Kt > K ? carryHermiteRows(F, rows, K, outSize, block, givenAll, r) : r;
  if (tape) tape.hermite = Kt === K ? block.slice() : block;
  return { ...x, m, F, k: k + K, r: rForward };
}
