/**
 * Dense float64 matrix products behind one small interface, so that the moments engine can run
 * its big products (A Sigma A^T blocks, B K B^T) on onnxruntime's float64 Gemm kernel
 * (src/runtime/linalg.ts) while tests and small problems use the plain TypeScript loops here.
 *
 * All matrices are row-major. `a` is stored as aRows x aCols and `b` as bRows x bCols;
 * op(a) = transA ? a^T : a (likewise b). The result op(a) op(b) is a new row-major Float64Array of
 * op(a)'s rows x op(b)'s columns. An operand may be a Float32Array (a bank's A, stored as float32):
 * it is widened to float64, which is exact, and every product and sum is float64, so the result
 * equals the product of the widened copy without that copy being made by the caller.
 */

export interface GemmOptions {
  transA?: boolean;
  transB?: boolean;
}

/** A row-major matrix operand: float64, or float32 widened exactly to float64. */
export type Matrix = Float64Array | Float32Array;

export interface LinearAlgebra {
  gemm(a: Matrix, aRows: number, aCols: number, b: Matrix, bRows: number, bCols: number, opts?: GemmOptions): Promise<Float64Array>;
}

/** Shape of op(a) op(b): [rows, inner, cols]; throws on inconsistent arguments (a programming error). */
export function gemmShape(a: Matrix, aRows: number, aCols: number, b: Matrix, bRows: number, bCols: number, opts: GemmOptions = {}): [number, number, number] {
  if (a.length !== aRows * aCols) throw new Error(`gemm: a has ${a.length} elements, expected ${aRows}x${aCols}`);
  if (b.length !== bRows * bCols) throw new Error(`gemm: b has ${b.length} elements, expected ${bRows}x${bCols}`);
  const m = opts.transA ? aCols : aRows;
  const k = opts.transA ? aRows : aCols;
  const kb = opts.transB ? bCols : bRows;
  const n = opts.transB ? bRows : bCols;
  if (k !== kb) throw new Error(`gemm: inner dimensions differ (${k} vs ${kb})`);
  return [m, k, n];
}

/** Row-major transpose of a rows x cols matrix (blocked for the cache). */
export function transpose(a: Matrix, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  const BS = 32;
  for (let i0 = 0; i0 < rows; i0 += BS) {
    const i1 = Math.min(rows, i0 + BS);
    for (let j0 = 0; j0 < cols; j0 += BS) {
      const j1 = Math.min(cols, j0 + BS);
      for (let i = i0; i < i1; i++) {
        const ro = i * cols;
        for (let j = j0; j < j1; j++) t[j * rows + i] = a[ro + j];
      }
    }
  }
  return t;
}

/**
 * C = op(A) op(B) in plain TypeScript, synchronously. op(A) and op(B) are first brought to
 * untransposed row-major form (an O(size) copy when a transpose is asked), then multiplied by an
 * i-k-j loop blocked over k (128) and j (512) so a panel of B stays in cache, with four rows of C
 * updated per pass over a row of B.
 */
export function gemmSync(a: Matrix, aRows: number, aCols: number, b: Matrix, bRows: number, bCols: number, opts: GemmOptions = {}): Float64Array {
  const [m, k, n] = gemmShape(a, aRows, aCols, b, bRows, bCols, opts);
  const A = opts.transA ? transpose(a, aRows, aCols) : a; // m x k
  const B = opts.transB ? transpose(b, bRows, bCols) : b; // k x n
  const C = new Float64Array(m * n);
  if (m === 0 || n === 0 || k === 0) return C;
  const KB = 128;
  const NB = 512;
  for (let k0 = 0; k0 < k; k0 += KB) {
    const k1 = Math.min(k, k0 + KB);
    for (let j0 = 0; j0 < n; j0 += NB) {
      const j1 = Math.min(n, j0 + NB);
      let i = 0;
      for (; i + 4 <= m; i += 4) {
        const c0 = i * n;
        const c1 = c0 + n;
        const c2 = c1 + n;
        const c3 = c2 + n;
        const a0 = i * k;
        const a1 = a0 + k;
        const a2 = a1 + k;
        const a3 = a2 + k;
        for (let kk = k0; kk < k1; kk++) {
          const x0 = A[a0 + kk];
          const x1 = A[a1 + kk];
          const x2 = A[a2 + kk];
          const x3 = A[a3 + kk];
          const bo = kk * n;
          for (let j = j0; j < j1; j++) {
            const y = B[bo + j];
            C[c0 + j] += x0 * y;
            C[c1 + j] += x1 * y;
            C[c2 + j] += x2 * y;
            C[c3 + j] += x3 * y;
          }
        }
      }
      for (; i < m; i++) {
        const c0 = i * n;
        const a0 = i * k;
        for (let kk = k0; kk < k1; kk++) {
          const x0 = A[a0 + kk];
          if (x0 === 0) continue;
          const bo = kk * n;
          for (let j = j0; j < j1; j++) C[c0 + j] += x0 * B[bo + j];
        }
      }
    }
  }
  return C;
}

/** The plain-TypeScript LinearAlgebra (synchronous work behind a resolved promise). */
export const jsLinearAlgebra: LinearAlgebra = {
  gemm(a, aRows, aCols, b, bRows, bCols, opts) {
    try {
      return Promise.resolve(gemmSync(a, aRows, aCols, b, bRows, bCols, opts));
    } catch (e) {
      return Promise.reject(e);
    }
  },
};

/** Row-wise dot products: out[i] = sum_j x[i, j] y[i, j] for two rows x cols matrices. */
export function rowDots(x: Matrix, y: Matrix, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    const o = i * cols;
    for (let j = 0; j < cols; j++) s += x[o + j] * y[o + j];
    out[i] = s;
  }
  return out;
}

/** y = M x for a rows x cols row-major M. */
export function matVec(M: Float64Array, rows: number, cols: number, x: Float64Array): Float64Array {
  const y = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    const o = i * cols;
    for (let j = 0; j < cols; j++) s += M[o + j] * x[j];
    y[i] = s;
  }
  return y;
}

/** y = M^T x for a rows x cols row-major M (x has `rows` entries). */
export function matTVec(M: Float64Array, rows: number, cols: number, x: Float64Array): Float64Array {
  const y = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const xi = x[i];
    if (xi === 0) continue;
    const o = i * cols;
    for (let j = 0; j < cols; j++) y[j] += M[o + j] * xi;
  }
  return y;
}
