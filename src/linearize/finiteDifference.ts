/**
 * Central finite differences with batched forward passes: the fallback for ops without a tangent
 * rule, and a cross-check of the JVP Jacobians. Points are float32 (what the model reads); the
 * step actually taken is the float32 difference of the two perturbed coordinates, not the nominal
 * step, so rounding of x +- h does not bias the quotient.
 */
import { NetmomentsError } from '../errors.js';

/** Runs the model on `count` points (row-major [count, n]) and returns [count, m] outputs. */
export type BatchFunction = (points: Float32Array, count: number) => Promise<Float32Array | Float64Array>;

export interface JacobianResult {
  /** rows x cols, row-major: J[r * cols + c] = d output_r / d input_{columns[c]}. */
  J: Float64Array;
  rows: number;
  cols: number;
  /** The output at the point (float64 copy of the float32 model output). */
  outputValue: Float64Array;
}

export interface ColumnOptions {
  /** Input coordinates to differentiate by (default 'all'), in this order. */
  columns?: Int32Array | 'all';
  /** Directions per batch (default: from a memory budget). */
  chunk?: number;
}

export function resolveColumns(columns: Int32Array | 'all' | undefined, n: number): Int32Array {
  if (columns === undefined || columns === 'all') return Int32Array.from({ length: n }, (_, i) => i);
  for (const c of columns) {
    if (!Number.isInteger(c) || c < 0 || c >= n) {
      throw new NetmomentsError(`Jacobian column ${c} is outside the input's ${n} elements`, { code: 'BAD_USAGE' });
    }
  }
  return columns;
}

/** Default FD step: 1e-3 of the point's largest magnitude (at least 1e-3). */
export function defaultStep(point: ArrayLike<number>): number {
  let m = 1;
  for (let i = 0; i < point.length; i++) m = Math.max(m, Math.abs(point[i]));
  return 1e-3 * m;
}

/**
 * J[:, columns] of the function `fn` at `point` by central differences with step `step`, batching
 * `chunk` columns (2 * chunk points) per call of `fn`.
 */
export async function finiteDifferenceJacobian(
  fn: BatchFunction,
  point: ArrayLike<number>,
  step: number,
  options: ColumnOptions = {},
): Promise<JacobianResult> {
  if (!(step > 0) || !Number.isFinite(step)) throw new NetmomentsError(`finite-difference step must be positive, not ${step}`, { code: 'BAD_USAGE' });
  const n = point.length;
  const x = Float32Array.from(point);
  const cols = resolveColumns(options.columns, n);
  const f0 = await fn(x, 1);
  const rows = f0.length;
  const outputValue = Float64Array.from(f0);
  const J = new Float64Array(rows * cols.length);
  const chunk = Math.max(1, Math.min(cols.length, options.chunk ?? Math.max(1, Math.floor((64 << 20) / (8 * (n + rows))))));
  const pts = new Float32Array(2 * chunk * n);
  const den = new Float64Array(chunk);
  for (let c0 = 0; c0 < cols.length; c0 += chunk) {
    const m = Math.min(chunk, cols.length - c0);
    for (let d = 0; d < m; d++) {
      const j = cols[c0 + d];
      const plus = pts.subarray(2 * d * n, (2 * d + 1) * n);
      const minus = pts.subarray((2 * d + 1) * n, (2 * d + 2) * n);
      plus.set(x);
      minus.set(x);
      plus[j] = Math.fround(x[j] + step);
      minus[j] = Math.fround(x[j] - step);
      den[d] = plus[j] - minus[j];
      if (den[d] === 0) throw new NetmomentsError(`finite-difference step ${step} vanishes in float32 at input element ${j} (${x[j]})`, { code: 'BAD_USAGE' });
    }
    const f = await fn(pts.subarray(0, 2 * m * n), 2 * m);
    if (f.length !== 2 * m * rows) throw new Error(`finite differences: batch function returned ${f.length} values, expected ${2 * m * rows}`);
    for (let d = 0; d < m; d++) {
      const fp = 2 * d * rows;
      const fm = (2 * d + 1) * rows;
      const col = c0 + d;
      for (let r = 0; r < rows; r++) J[r * cols.length + col] = (f[fp + r] - f[fm + r]) / den[d];
    }
  }
  return { J, rows, cols: cols.length, outputValue };
}

/**
 * Directional derivatives J d_i for k directions (row-major [k, n]) by central differences:
 * (f(x + h d) - f(x - h d)) / 2h. Returns [k, m].
 */
export async function finiteDifferenceJvp(
  fn: BatchFunction,
  point: ArrayLike<number>,
  directions: ArrayLike<number>,
  k: number,
  step: number,
  chunk = 64,
): Promise<{ tangents: Float64Array; outputValue: Float64Array }> {
  const n = point.length;
  if (directions.length !== k * n) throw new NetmomentsError(`${directions.length} tangent values for ${k} directions of ${n} elements`, { code: 'BAD_USAGE' });
  const f0 = await fn(Float32Array.from(point), 1);
  const rows = f0.length;
  const out = new Float64Array(k * rows);
  const pts = new Float32Array(2 * chunk * n);
  for (let d0 = 0; d0 < k; d0 += chunk) {
    const m = Math.min(chunk, k - d0);
    for (let d = 0; d < m; d++) {
      for (let i = 0; i < n; i++) {
        const v = directions[(d0 + d) * n + i];
        pts[2 * d * n + i] = point[i] + step * v;
        pts[(2 * d + 1) * n + i] = point[i] - step * v;
      }
    }
    const f = await fn(pts.subarray(0, 2 * m * n), 2 * m);
    for (let d = 0; d < m; d++) {
      for (let r = 0; r < rows; r++) out[(d0 + d) * rows + r] = (f[2 * d * rows + r] - f[(2 * d + 1) * rows + r]) / (2 * step);
    }
  }
  return { tangents: out, outputValue: Float64Array.from(f0) };
}
