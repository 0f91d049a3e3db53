/**
 * A split at a unit-wise piecewise-linear op other than ReLU (LeakyRelu, PRelu, Clip = ReLU6), as
 * a ReLU surrogate with more units, so that every moment formula of src/moments/ (Theorem 1,
 * Rosenbaum's second moments, the paper's variance) applies unchanged.
 *
 * A continuous piecewise-linear f with kinks t_1 < ... < t_K and slopes s_0 (below t_1), ..., s_K
 * (above t_K) is, for every z,
 *
 *   f(z) = f(t_1) + s_1 relu(z - t_1) - s_0 relu(t_1 - z) + sum_{k=2..K} (s_k - s_{k-1}) relu(z - t_k)
 *
 * (both sides are continuous, equal at t_1 and have the same slope on every piece). So with
 * z = A x + c1, B f(z) = B f(t_1) + B' relu(A' x + c1') where each term j (sign e_j, kink t_j,
 * weight w_j) contributes p units: rows e_j A, offsets e_j (c1 - t_j), columns of B scaled by w_j.
 * The constant B f(t_1) needs no term: the surrogate's output offset is gb - B' relu(zb')
 * (src/moments/surrogate.ts topOffset), which absorbs it. Terms whose weight is 0 for every unit
 * are dropped: ReLU keeps one term (itself), Clip [min, max] and LeakyRelu two.
 */
import type { UnitPieces } from '../onnx/ops/splitPieces.js';

export interface ReluTerm {
  /** +1: relu(z - t); -1: relu(t - z). */
  sign: 1 | -1;
  t: number;
  /** Per-unit weight (p). */
  w: Float64Array;
}

/** The ReLU terms of f (file comment). */
export function reluTerms(pieces: UnitPieces): ReluTerm[] {
  const { at, slopes } = pieces;
  const p = slopes[0].length;
  const terms: ReluTerm[] = [{ sign: 1, t: at[0], w: Float64Array.from(slopes[1]) }];
  terms.push({ sign: -1, t: at[0], w: Float64Array.from(slopes[0], (s) => -s) });
  for (let k = 1; k < at.length; k++) {
    const w = new Float64Array(p);
    for (let u = 0; u < p; u++) w[u] = slopes[k + 1][u] - slopes[k][u];
    terms.push({ sign: 1, t: at[k], w });
  }
  return terms.filter((term) => term.w.some((v) => v !== 0));
}

/** Is f plain ReLU (one term relu(z) with weight 1)? */
export function isPlainRelu(terms: readonly ReluTerm[]): boolean {
  return terms.length === 1 && terms[0].sign === 1 && terms[0].t === 0 && terms[0].w.every((v) => v === 1);
}

/**
 * The ReLU form of a factored surrogate (A: p x r, B: d x p, zb: p, Adelta: p): A' (p' x r),
 * B' (d x p'), zb' and Adelta' (p'), p' = terms x p; unit j p + u is term j of unit u.
 */
export function expandToRelu(
  s: { A: Float64Array; B: Float64Array; zb: Float64Array; Adelta?: Float64Array },
  terms: readonly ReluTerm[],
  r: number,
  d: number,
): { A: Float64Array; B: Float64Array; zb: Float64Array; Adelta?: Float64Array } {
  const p = s.zb.length;
  const q = terms.length * p;
  const A = new Float64Array(q * r);
  const B = new Float64Array(d * q);
  const zb = new Float64Array(q);
  const Adelta = s.Adelta ? new Float64Array(q) : undefined;
  terms.forEach((term, j) => {
    const e = term.sign;
    for (let u = 0; u < p; u++) {
      const row = j * p + u;
      zb[row] = e * (s.zb[u] - term.t);
      if (Adelta) Adelta[row] = e * s.Adelta![u];
      const src = s.A.subarray(u * r, (u + 1) * r);
      const dst = A.subarray(row * r, (row + 1) * r);
      for (let k = 0; k < r; k++) dst[k] = e * src[k];
    }
    for (let i = 0; i < d; i++) {
      const bi = s.B.subarray(i * p, (i + 1) * p);
      const off = i * q + j * p;
      for (let u = 0; u < p; u++) B[off + u] = term.w[u] * bi[u];
    }
  });
  return { A, B, zb, Adelta };
}
