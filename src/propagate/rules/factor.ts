/**
 * The moments a propagation step carries (TensorMoments: mean, factor with its probe rows, residual)
 * and the factor helpers the non-affine rules share: per-unit factor norms, the per-unit rescaling
 * of sketched rows, and the probe products that sketch the Hermite orders (see ./index.ts).
 */
import type { GraphNode } from '../../onnx/graph.js';
import type { GaussianImage } from '../../moments/piecewise.js';

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
 * The probe whose product sketches Hermite order h in column c (K = probes / 2 columns), t-th of
 * h: order 2 takes the pair (2c, 2c + 1), order 3 adds 2c + 2 (mod 2K). Any two columns, of the
 * same or of different orders, differ in a probe that one of them holds an odd number of times,
 * so their products are uncorrelated; each is an unbiased sketch of S_ij^h for S the covariance
 * of the probes' images (E[prod_t P_t,i P_t,j] = S_ij^h for independent probes).
 */
export function probeOf(c: number, t: number, probes: number): number {
  return t < 2 ? 2 * c + t : (2 * c + 2) % probes;
}

export const FACTORIAL = [1, 1, 2, 6];
