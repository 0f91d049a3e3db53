/**
 * Moments of many inputs that share one linearization (a bank centre): the quantities that do not
 * depend on the input are formed once per centre, so each input costs matrix-vector work plus its
 * own pair terms (DESIGN.md section 2, cost model).
 *
 * In the noise's own coordinates (x = mu + F e, e ~ N(0, I_r); src/analyze.ts) the surrogate at
 * centre c is g = B relu(m + A F e) + D F e + c2 with, for input mu,
 *   m  = zb + A (mu - xb),   c2 = gb - B relu(zb) + D (mu - xb).
 * Per centre: S = (A F)(A F)^T (p x p), s_v = sqrt(S_vv), P = (A F)(D F)^T (p x d), Q = (D F)(D F)^T.
 * Per input, with a = m / s and the unit states of src/moments/network.ts (surely on / off when
 * Phi(-|a|) < 1e-17, constant when s = 0), exactly the engine's formulas:
 *   E[g]   = B E[relu(z)] + c2,                         E[relu(z_v)] = reluMean(m_v, s_v)
 *   Cov(g) = Bw S_LL Bw^T + Bw P_L + (Bw P_L)^T + Q + B_U C_UU B_U^T
 * where L are the units that are on or uncertain, Bw = B_L diag(w) with w = 1 (on) or Phi(a)
 * (uncertain) (this is H Sigma H^T of network.ts with H = B diag(Phi) A + D), U the uncertain
 * units and C their pair corrections, evaluated by the engine's pairPanel from S_UU. Instead of
 * the engine's r-column noise factors (p x r per input, and a |U| x |U| x r product for the pair
 * panel), each input gathers S_LL and S_UU: for LeNet's last ReLU (p = 500, r = 784) that is the
 * difference between ~20M and ~1M multiply-adds per input. Used when p <= r and S fits
 * (`useCentreGram`); otherwise the caller runs the engine on A F directly.
 */
import { rowDots, type LinearAlgebra } from '../moments/linalg.js';
import { pairPanel, UnitState } from '../moments/network.js';
import { reluMean, reluVarianceCorrection } from '../moments/relu.js';
import { Phi } from '../moments/special.js';
import { topOffset } from './linearizer.js';

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

const tails = new Map<number, number>();

/** The largest |a| with Phi(-|a|) >= tail (a unit beyond it is decided: surely on or off). */
function tailThreshold(tail: number): number {
  let t = tails.get(tail);
  if (t === undefined) {
    let lo = 0;
    let hi = 40;
    for (let k = 0; k < 200; k++) {
      const mid = 0.5 * (lo + hi);
      if (Phi(-mid) >= tail) lo = mid;
      else hi = mid;
    }
    t = lo;
    tails.set(tail, t);
  }
  return t;
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
 * `variance: false` gives the mean only.
 */
export async function inputMoments(
  la: LinearAlgebra,
  g: CentreGram,
  Adelta: Float64Array,
  Ddelta: Float64Array | undefined,
  variance: boolean,
  decidedTail = 1e-17,
): Promise<InputMoments> {
  const { p, d, S, s, B } = g;
  const er = new Float64Array(p);
  let uncertain = 0;
  if (!variance) {
    // means only: E relu per unit, and the uncertain count by |a| against the decided tail
    const aTail = tailThreshold(decidedTail);
    for (let v = 0; v < p; v++) {
      const mv = g.zb[v] + Adelta[v];
      const sv = s[v];
      er[v] = reluMean(mv, sv);
      if (sv > 0 && Math.abs(mv / sv) <= aTail) uncertain++;
    }
    const mean = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      let t = 0;
      const o = i * p;
      for (let v = 0; v < p; v++) t += B[o + v] * er[v];
      mean[i] = t + g.c2[i] + (Ddelta ? Ddelta[i] : 0);
    }
    return { mean, uncertain };
  }
  const m = new Float64Array(p);
  const a = new Float64Array(p);
  const P = new Float64Array(p);
  const state = new Uint8Array(p);
  for (let v = 0; v < p; v++) {
    const mv = g.zb[v] + Adelta[v];
    m[v] = mv;
    const sv = s[v];
    er[v] = reluMean(mv, sv);
    if (sv === 0) {
      a[v] = mv > 0 ? Infinity : -Infinity;
      P[v] = mv > 0 ? 1 : 0;
      state[v] = UnitState.Constant;
      continue;
    }
    const av = mv / sv;
    a[v] = av;
    P[v] = Phi(av);
    if (Phi(-Math.abs(av)) < decidedTail) state[v] = av > 0 ? UnitState.On : UnitState.Off;
    else {
      state[v] = UnitState.Uncertain;
      uncertain++;
    }
  }
  const mean = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    let t = 0;
    const o = i * p;
    for (let v = 0; v < p; v++) t += B[o + v] * er[v];
    mean[i] = t + g.c2[i] + (Ddelta ? Ddelta[i] : 0);
  }
  if (!S) throw new Error('inputMoments: the centre was formed for means only');

  // linear (Stein) part over L = on or uncertain
  const L: number[] = [];
  for (let v = 0; v < p; v++) if (state[v] === UnitState.On || state[v] === UnitState.Uncertain) L.push(v);
  const l = L.length;
  const cov = new Float64Array(d * d);
  if (l > 0) {
    const Bw = new Float64Array(d * l);
    for (let i = 0; i < d; i++) for (let t = 0; t < l; t++) Bw[i * l + t] = B[i * p + L[t]] * (state[L[t]] === UnitState.On ? 1 : P[L[t]]);
    const SLL = new Float64Array(l * l);
    for (let t = 0; t < l; t++) {
      const o = L[t] * p;
      for (let q = 0; q < l; q++) SLL[t * l + q] = S[o + L[q]];
    }
    const T = await la.gemm(Bw, d, l, SLL, l, l);
    const lin = await la.gemm(T, d, l, Bw, d, l, { transB: true });
    cov.set(lin);
    if (g.P) {
      const PL = new Float64Array(l * d);
      for (let t = 0; t < l; t++) PL.set(g.P.subarray(L[t] * d, (L[t] + 1) * d), t * d);
      const X = await la.gemm(Bw, d, l, PL, l, d);
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i * d + j] += X[i * d + j] + X[j * d + i];
    }
  }
  if (g.Q) for (let k = 0; k < d * d; k++) cov[k] += g.Q[k];

  // pair corrections over the uncertain units
  if (uncertain > 0) {
    const U = new Int32Array(uncertain);
    for (let v = 0, t = 0; v < p; v++) if (state[v] === UnitState.Uncertain) U[t++] = v;
    const q = uncertain;
    const panel = new Float64Array(q * q);
    for (let t = 0; t < q; t++) {
      const o = U[t] * p;
      for (let k = t + 1; k < q; k++) panel[t * q + k] = S[o + U[k]];
    }
    const sU = Float64Array.from(U, (v) => s[v]);
    const aU = Float64Array.from(U, (v) => a[v]);
    const diag = Float64Array.from(U, (v) => s[v] * s[v] * reluVarianceCorrection(a[v]));
    pairPanel(panel, q, q, 0, sU, aU, diag, false);
    const BtU = new Float64Array(q * d);
    for (let i = 0; i < d; i++) for (let t = 0; t < q; t++) BtU[t * d + i] = B[i * p + U[t]];
    const W = await la.gemm(panel, q, q, BtU, q, d);
    const covC = await la.gemm(BtU, q, d, W, q, d, { transA: true });
    for (let k = 0; k < d * d; k++) cov[k] += covC[k];
  }
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) {
      const v = 0.5 * (cov[i * d + j] + cov[j * d + i]);
      cov[i * d + j] = v;
      cov[j * d + i] = v;
    }
  }
  const varv = Float64Array.from({ length: d }, (_, i) => cov[i * d + i]);
  return { mean, variance: varv, covariance: cov, uncertain };
}
