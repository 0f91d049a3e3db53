/**
 * The moments a propagation step carries (TensorMoments: mean, factor with its probe rows, residual)
 * and the factor helpers the non-affine rules share: per-unit factor norms, the per-unit rescaling
 * of sketched rows, and the probe products that sketch the Hermite orders (see ./index.ts).
 */
import { graphConstant, type Graph, type GraphNode } from '../../onnx/graph.js';
import type { GaussianImage } from '../../moments/piecewise.js';

/** The Gaussian noise on the input of a propagation: its covariance Sigma. */
export type InputNoise =
  | { kind: 'isotropic'; sigma: number }
  | { kind: 'diagonal'; variance: ArrayLike<number> }
  /** factor [n, r] row-major: Sigma = factor factor^T */
  | { kind: 'lowrank'; factor: ArrayLike<number>; columns: number };

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

/** The value of a one-element constant (an initializer or a Constant node's output), or undefined. */
export function constantScalar(graph: Graph, name: string | undefined): number | undefined {
  const t = name ? graphConstant(graph, name) : undefined;
  return t && t.data.length === 1 ? Number(t.data[0]) : undefined;
}

/** Whether a node is of the default ONNX domain. */
export const isDefault = (n: GraphNode) => n.domain === '' || n.domain === 'ai.onnx';

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
export function scaleHermiteRows(F: Float32Array, at: number, K: number, size: number, target: Float64Array): Float64Array {
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
 * The probe whose product sketches Hermite order h in column c, t-th of h (P = probes). The first
 * P / 2 columns take disjoint pairs: order 2 the pair (2c, 2c + 1), order 3 adds 2c + 2 (mod P).
 * Column c = P / 2 + g P + a (g = 0, 1, ...) takes probes spaced by delta = g + 2: the pair
 * (a, a + delta) and the triple (a, a + delta, a + 2 delta) (mod P), so that more columns than
 * P / 2 come from the same probes. Any two columns, of the same or of different orders, differ in
 * a probe that one of them holds an odd number of times, so their products are uncorrelated; each
 * is an unbiased sketch of S_ij^h for S the covariance of the probes' images
 * (E[prod_t P_t,i P_t,j] = S_ij^h for independent probes). Columns sharing a probe are not
 * independent (their squared sums correlate by about 1 / the effective rank of S), unlike the
 * disjoint ones. maxHermiteColumns(P) columns are distinct.
 */
export function probeOf(c: number, t: number, probes: number): number {
  const half = probes >> 1;
  if (c < half) return t < 2 ? 2 * c + t : (2 * c + 2) % probes;
  const g = Math.floor((c - half) / probes);
  const a = (c - half) % probes;
  return (a + t * (g + 2)) % probes;
}

/**
 * How many distinct columns probeOf gives from P probes: the P / 2 disjoint ones and P per spacing
 * delta = 2 .. with 2 delta < P / 2 (so that no pair or triple repeats, even mod P).
 */
export function maxHermiteColumns(probes: number): number {
  const spacings = Math.max(0, Math.ceil(probes / 4) - 2);
  return (probes >> 1) + (probes >= 16 ? probes * spacings : 0);
}

export const FACTORIAL = [1, 1, 2, 6];

/**
 * A zeroed factor of `rows` rows of `size` whose buffer has room for `spare` more rows after it
 * (zeroed too), which appendResidualRows (./residual.ts) then fills instead of copying the factor.
 */
export function newFactor(rows: number, size: number, spare = 0): Float32Array {
  if (!(spare > 0)) return new Float32Array(rows * size);
  const F = new Float32Array((rows + spare) * size).subarray(0, rows * size);
  spareRows.set(F, spare);
  return F;
}

/** The rows of room after factors made by newFactor (only those: another array's buffer may be shared). */
const spareRows = new WeakMap<Float32Array, number>();

/** The first `rows` rows of a factor made by newFactor, the rows after them left as room (newFactor). */
export function truncateFactor(F: Float32Array, size: number, rows: number): Float32Array {
  const view = F.subarray(0, rows * size);
  spareRows.set(view, (spareRows.get(F) ?? 0) + F.length / size - rows);
  return view;
}

/** The factor F extended in place over `extra` of its spare rows, or undefined when it has fewer. */
export function extendFactor(F: Float32Array, size: number, extra: number): Float32Array | undefined {
  if ((spareRows.get(F) ?? 0) < extra) return undefined;
  return new Float32Array(F.buffer, F.byteOffset, F.length + extra * size);
}

/**
 * What a non-affine rule records for the reverse pass of the output covariance
 * (src/propagate/adjoint.ts), when the propagator asks: the linear map the rule applied to the
 * factor's rows (one of slope, pool, slices), the Hermite rows it appended (a copy, K x output
 * size) and its output's residual variance (fresh: noise that no factor row carries).
 */
export interface StepTape {
  /**
   * Asked by the propagator: how many Hermite columns to record (default: the K rows the rule
   * carries forward). More than K are sketched for the record alone (see tapeHermiteColumns).
   */
  hermiteColumns?: number;
  /** unit-wise: row i of the output = slope_i x row i of the input */
  slope?: Float64Array;
  /** MaxPool: output o = sum over t in start[o]..start[o+1]-1 of weights[t] x input idx[t] */
  pool?: { idx: Int32Array; weights: Float64Array; start: Int32Array };
  /**
   * Softmax, LogSoftmax: per slice (slice s = o * inner + t), the transpose of the D x D expected
   * Jacobian A (A^T u is the pullback of a cotangent u); Softmax's A is symmetric
   */
  slices?: { outer: number; D: number; inner: number; A: Float64Array };
  hermite?: Float32Array;
  r?: Float64Array;
}

/**
 * The Hermite columns a rule sketches when `asked` for that many for its record (StepTape.hermiteColumns):
 * at least the K it carries forward, at most what P probes give (maxHermiteColumns).
 */
export function tapeHermiteColumns(K: number, probes: number, asked?: number): number {
  if (!asked) return K;
  return Math.max(K, Math.min(asked, maxHermiteColumns(probes)));
}

/**
 * The forward rows of a rule that sketched more Hermite columns for its tape (Kt) than it carries
 * (K < Kt): the first K of the tape's columns (`block`, Kt x size, each unit's row at its exact
 * norm `given`), copied into F from row `at` and scaled per unit back to that norm. Returns the
 * carried residual: the tape's `r` (left as it is) plus what a unit's K columns cannot give (a
 * unit whose first K columns are all 0). The tape's rows and residual stay as they are: the reverse pass's output covariance counts
 * the order-2 and -3 parts with all Kt columns, which lowers the sketch's noise there
 * (relative sd about sqrt(2 / Kt)), while every step after carries only K rows.
 */
export function carryHermiteRows(
  F: Float32Array,
  at: number,
  K: number,
  size: number,
  block: Float32Array,
  given: Float64Array,
  r: Float64Array,
): Float64Array {
  F.set(block.subarray(0, K * size), at * size);
  const carried = scaleHermiteRows(F, at, K, size, given);
  return r.map((v, i) => v + given[i] - carried[i]);
}
