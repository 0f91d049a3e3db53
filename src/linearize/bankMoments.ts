/**
 * Moments of many inputs that share one linearization (a bank centre): the quantities that do not
 * depend on the input are formed once per centre, so each input costs matrix-vector work plus its
 * own pair terms (docs/ARCHITECTURE.md, section 4, cost model).
 *
 * In the noise's own coordinates (x = mu + F e, e ~ N(0, I_r); src/noise.ts noiseFactor) the
 * surrogate at centre c (src/moments/surrogate.ts, projected on F) is g = B relu(m + A F e) + D F e + c2
 * with, for input mean mu,
 *   m  = zb + A (mu - xb),   c2 = gb - B relu(zb) + D (mu - xb).
 * Per centre, the Gram form of the noise: S = (A F)(A F)^T (p x p), s_v = sqrt(S_vv),
 * P = (A F)(D F)^T (p x d), Q = (D F)(D F)^T. Per input the moments engine's core
 * (src/moments/network.ts momentsFromForm: unit states, mean, linear part, pair corrections) runs
 * with this form in place of the noise factors: the linear part H Sigma H^T (H = B diag(w) A + D,
 * w = 1 for units surely on, Phi(a) for uncertain ones) is
 *   Bw S_LL Bw^T + Bw P_L + (Bw P_L)^T + Q
 * with L the units on or uncertain and Bw = B_L diag(w), and the pair panels are gathered from S.
 * Instead of the engine's r-column noise factors (p x r per input, and a |U| x |U| x r product for
 * the pair panel), each input gathers S_LL and S_UU: for LeNet's last ReLU (p = 500, r = 784) that
 * is the difference between ~20M and ~1M multiply-adds per input. Used when p <= r and S fits
 * (`useCentreGram`); otherwise the caller runs surrogateMoments on A F directly.
 */
import { rowDots, type LinearAlgebra } from '../moments/linalg.js';
import { momentsFromForm, type CovarianceForm, type MomentsOptions, type NetworkMoments } from '../moments/network.js';
import { topOffset, type Surrogate } from '../moments/surrogate.js';

/** A centre's input-independent quantities for one noise. */
export interface CentreGram {
  p: number;
  d: number;
  /** S = (A F)(A F)^T, p x p (absent when only means are wanted). */
  S?: Float64Array;
  /** s_v = sqrt(S_vv). */
  s: Float64Array;
  /** (A F)(D F)^T (p x d) and (D F)(D F)^T (d x d) with a skip path. */
  P?: Float64Array;
  Q?: Float64Array;
  /** B (d x p). */
  B: Float64Array;
  zb: Float64Array;
  /** gb - B relu(zb) (d). */
  c2: Float64Array;
}

/** Whether the per-centre Gram matrix is worth it: p <= r and S under `maxBytes`. */
export function useCentreGram(p: number, r: number, maxBytes = 256 * 1024 * 1024): boolean {
  return p <= r && p * p * 8 <= maxBytes;
}

/**
 * Form a centre's quantities from A F (p x r), D F (d x r), B, zb, gb; `gram: false` skips S, P, Q
 * (means only: s from the rows of A F).
 */
export async function centreGram(
  la: LinearAlgebra,
  AF: Float64Array,
  DF: Float64Array | undefined,
  B: Float64Array,
  zb: Float64Array,
  gb: Float64Array,
  p: number,
  d: number,
  r: number,
  gram = true,
): Promise<CentreGram> {
  const s = new Float64Array(p);
  const g: CentreGram = { p, d, s, B, zb, c2: topOffset(B, zb, gb, p, d) };
  if (!gram) {
    const s2 = rowDots(AF, AF, p, r);
    for (let v = 0; v < p; v++) s[v] = Math.sqrt(s2[v]);
    return g;
  }
  const S = await la.gemm(AF, p, r, AF, p, r, { transB: true });
  // exact symmetry (the engine reads the upper triangle; the gathers read both)
  for (let u = 0; u < p; u++) for (let v = u + 1; v < p; v++) S[v * p + u] = S[u * p + v];
  for (let v = 0; v < p; v++) s[v] = S[v * p + v] > 0 ? Math.sqrt(S[v * p + v]) : 0;
  g.S = S;
  if (DF) {
    g.P = await la.gemm(AF, p, r, DF, d, r, { transB: true });
    g.Q = await la.gemm(DF, d, r, DF, d, r, { transB: true });
  }
  return g;
}

/** A surrogate projected on a noise factor (A F, D F with r columns) in its Gram form: centreGram. */
export function surrogateGram(la: LinearAlgebra, s: Surrogate, gram = true): Promise<CentreGram> {
  const p = s.zb.length;
  const d = s.gb.length;
  return centreGram(la, s.A, s.D, s.B, s.zb, s.gb, p, d, p > 0 ? s.A.length / p : 0, gram);
}

/** The Gram form of a centre as the moments core reads it (src/moments/network.ts CovarianceForm). */
export function gramForm(la: LinearAlgebra, g: CentreGram): CovarianceForm {
  const { p, d, B } = g;
  const needS = (): Float64Array => {
    if (!g.S) throw new Error('inputMoments: the centre was formed for means only');
    return g.S;
  };
  return {
    s: g.s,
    panels(idx) {
      const S = needS();
      const q = idx.length;
      return async (r0, r1) => {
        const rows = r1 - r0;
        const width = q - r0;
        const panel = new Float64Array(rows * width);
        for (let li = 0; li < rows; li++) {
          const o = idx[r0 + li] * p;
          const row = li * width;
          for (let lj = li + 1; lj < width; lj++) panel[row + lj] = S[o + idx[r0 + lj]];
        }
        return panel;
      };
    },
    async linear(L, w, covariance) {
      const S = needS();
      const l = L.length;
      const cov = new Float64Array(d * d);
      if (l > 0) {
        const Bw = new Float64Array(d * l);
        for (let i = 0; i < d; i++) for (let t = 0; t < l; t++) Bw[i * l + t] = B[i * p + L[t]] * w[t];
        const SLL = new Float64Array(l * l);
        for (let t = 0; t < l; t++) {
          const o = L[t] * p;
          for (let k = 0; k < l; k++) SLL[t * l + k] = S[o + L[k]];
        }
        const T = await la.gemm(Bw, d, l, SLL, l, l);
        cov.set(await la.gemm(T, d, l, Bw, d, l, { transB: true }));
        if (g.P) {
          const PL = new Float64Array(l * d);
          for (let t = 0; t < l; t++) PL.set(g.P.subarray(L[t] * d, (L[t] + 1) * d), t * d);
          const X = await la.gemm(Bw, d, l, PL, l, d);
          for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i * d + j] += X[i * d + j] + X[j * d + i];
        }
      }
      if (g.Q) for (let k = 0; k < d * d; k++) cov[k] += g.Q[k];
      return covariance ? cov : Float64Array.from({ length: d }, (_, i) => cov[i * d + i]);
    },
  };
}

export interface InputMoments {
  mean: Float64Array;
  variance?: Float64Array;
  covariance?: Float64Array;
  /** Units whose sign is uncertain (they carry the pair terms). */
  uncertain: number;
}

/**
 * Moments for one input at a centre: `Adelta` = A (mu - xb) (p), `Ddelta` = D (mu - xb) (d).
 * `variance: false` gives the mean only. The moments core of src/moments/network.ts with the
 * centre's Gram form (file comment), on one thread.
 */
export async function inputMoments(
  la: LinearAlgebra,
  g: CentreGram,
  Adelta: Float64Array,
  Ddelta: Float64Array | undefined,
  variance: boolean,
  decidedTail = 1e-17,
): Promise<InputMoments> {
  const m = Float64Array.from(g.zb, (z, v) => z + Adelta[v]);
  const mo = await momentsFromForm({ data: g.B, rows: g.d, cols: g.p }, m, g.c2, Ddelta, gramForm(la, g), {
    variance,
    covariance: variance,
    paper: false,
    linalg: la,
    decidedTail,
    threads: 1,
  });
  return { mean: mo.mean, variance: mo.variance, covariance: mo.covariance, uncertain: mo.units.uncertain };
}

/**
 * The moments of a linearization held in its Gram form (src/linearize/linearizer.ts
 * PointLinearization.S = (A F)(A F)^T, no skip path) at the input mean mu = xb + delta: the moments
 * core with m = zb + A delta, c2 = gb - B relu(zb), and S in place of the noise factors (gramForm),
 * the same numbers surrogateMoments gives from A F up to rounding.
 */
export async function gramMoments(
  la: LinearAlgebra,
  lin: { S: Float64Array; B: Float64Array; zb: Float64Array; gb: Float64Array; Adelta?: Float64Array },
  options: MomentsOptions = {},
): Promise<NetworkMoments> {
  const p = lin.zb.length;
  const d = lin.gb.length;
  if (lin.S.length !== p * p) throw new Error(`gramMoments: S has ${lin.S.length} values for ${p} units`);
  const s = Float64Array.from({ length: p }, (_, v) => (lin.S[v * p + v] > 0 ? Math.sqrt(lin.S[v * p + v]) : 0));
  const g: CentreGram = { p, d, S: lin.S, s, B: lin.B, zb: lin.zb, c2: topOffset(lin.B, lin.zb, lin.gb, p, d) };
  const m = Float64Array.from(lin.zb, (z, v) => z + (lin.Adelta ? lin.Adelta[v] : 0));
  return momentsFromForm({ data: lin.B, rows: d, cols: p }, m, g.c2, undefined, gramForm(la, g), { ...options, linalg: la });
}
