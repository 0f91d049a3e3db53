/**
 * Moments of a shallow piecewise-linear network under Gaussian input (docs/ARCHITECTURE.md, section 3):
 *
 *   g(x) = B relu(A x + c1) + D x + c2,     x ~ N(mu, Sigma),
 *   A: p x n, B: d x p, D: d x n (optional skip path), z = A x + c1 ~ N(m, S), S = A Sigma A^T,
 *   s_v = sqrt(S_vv), a_v = m_v / s_v.
 *
 * Mean (Bibi, Alfadly, Ghanem, CVPR 2018, Theorem 1; exact for any m):
 *   E[g] = B E[relu(z)] + D mu + c2,    E[relu(z_v)] = m_v Phi(a_v) + s_v phi(a_v).
 * Mean convention for the skip path: D x is linear, so E[D x] = D mu with the `mu` passed in
 * `ShallowNetwork.mu`; every constant (top(yb) - B yb - D xb from a linearization at xb) belongs
 * in c2. To avoid cancellation, pass mu - xb as `mu` and top(yb) - B yb as c2 (the same device as
 * m = bottom(xb) + A (mu - xb) for the pre-activation mean, see preActivationMean).
 *
 * Exact covariance, in centred form. Write relu(z_v) = E relu(z_v) + Phi(a_v)(z_v - m_v) + R_v; by
 * Stein's lemma Cov(relu(z_u), z_v) = Phi(a_u) S_uv, so the residuals R are uncorrelated with z (and
 * with x), and
 *   K = Cov(relu(z)) = diag(Phi(a)) S diag(Phi(a)) + C,   C_uv = s_u s_v c(a_u, a_v; rho_uv),
 * with c the pair correction of relu.ts (Rosenbaum 1961 rearranged; c vanishes when either unit is
 * surely on or surely off). With H = B diag(Phi(a)) A + D (the expected Jacobian of g), the skip
 * terms of docs/ARCHITECTURE.md, section 3 (D Sigma D^T + B diag(Phi) A Sigma D^T + transpose) fold into
 *   Cov(g) = H Sigma H^T + B_U C_UU B_U^T,
 * where U are the "uncertain" units: those with Phi(-|a|) >= decidedTail (1e-17). A unit with
 * Phi(-|a|) < 1e-17 is treated as exactly linear (a > 0: relu(z) = z, Phi = 1) or exactly off
 * (Phi = 0), which removes all its pair terms; a unit with s = 0 is the constant max(m, 0). The
 * mean is always computed with the exact formula.
 *
 * The paper's variance (Theorem 2; derived for m = 0 and applied by the paper for any m):
 *   var_paper(g_i) = B_i (C0 - m0 m0^T) B_i^T,  C0_uv = s_u s_v / (2pi) (sqrt(1 - rho^2) + rho (pi - arccos rho)),
 *   m0_v = s_v / sqrt(2pi),
 * computed in the same centred form: C0 - m0 m0^T = S / 4 + s_u s_v c0(rho), c0 from
 * reluPairCorrectionPaper. With a skip path the paper has no formula; we report the same zero-mean
 * assumption carried through, H0 Sigma H0^T + B C0' B^T with H0 = B A / 2 + D, so that the paper's
 * variance equals the exact one whenever m = 0.
 *
 * Memory: the pair matrix is never held whole. Pair terms are computed in row panels (at most
 * `panelElements` doubles), S for the panel by one product of noise factors, and folded into
 * W = C B_U^T (|U| x d) at once; Cov += B_U W at the end. Only the upper triangle of C is evaluated.
 *
 * Forms: everything above reads S = A Sigma A^T and the linear part through a CovarianceForm, so one
 * core (momentsFromForm) serves the noise factors of a network under a Noise (networkMoments), a
 * network already projected on a noise factor (standardMoments: Sigma = I in its columns), and a
 * bank centre's Gram matrix S held whole (src/linearize/bankMoments.ts). The noise is validated by
 * src/noise.ts validateNoise only; src/moments/surrogate.ts is the entry point for surrogates.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { NetmomentsError } from '../errors.js';
import { validateNoise, type Noise, type NoiseCovariance } from '../noise.js';
import { type LinearAlgebra, jsLinearAlgebra, matVec, rowDots, transpose } from './linalg.js';
import { pairCorrectionClosedForm, reluMean, reluPsi, reluVarianceCorrection } from './relu.js';
import { GL_W, GL_X, Phi, Phi2, phi } from './special.js';

export { validateNoise, type Noise, type NoiseCovariance } from '../noise.js';

/** A row-major float64 matrix. */
export interface Matrix {
  data: Float64Array;
  rows: number;
  cols: number;
}

/** g(x) = B relu(z) + D x + c2 with z ~ N(m, A Sigma A^T). */
export interface ShallowNetwork {
  /** p x n. */
  A: Matrix;
  /** d x p. */
  B: Matrix;
  /** d x n skip path (optional). */
  D?: Matrix;
  /** Pre-activation mean m = E[A x + c1] (p); see preActivationMean. */
  m: Float64Array;
  /** Output offset (d). */
  c2: Float64Array;
  /** Required with D: the vector the skip path's mean D mu is taken of (see the file comment). */
  mu?: Float64Array;
}

export interface MomentsOptions {
  /** Exact variance (default true). */
  variance?: boolean;
  /** The paper's Theorem 2 variance (default true). */
  paper?: boolean;
  /** Exact d x d covariance (default true). */
  covariance?: boolean;
  /** Dense products (default: plain TypeScript; use src/runtime/linalg.ts for onnxruntime). */
  linalg?: LinearAlgebra;
  /** A unit with Phi(-|a|) below this is treated as surely on/off (default 1e-17). */
  decidedTail?: number;
  /** Most doubles one pair panel may hold (default 4M = 32 MB). */
  panelElements?: number;
  /**
   * Threads for the pair terms: the main thread plus threads - 1 worker threads (default: the
   * available parallelism, at most 4). Falls back to one thread where workers cannot start (e.g.
   * when running from the TypeScript sources, which have no compiled worker script).
   */
  threads?: number;
}

/** Unit states (per pre-activation). */
export const UnitState = { Off: 0, On: 1, Uncertain: 2, Constant: 3 } as const;
export type UnitStateCode = (typeof UnitState)[keyof typeof UnitState];

export interface UnitStats {
  /** a_v = m_v / s_v (+-Infinity for s_v = 0; -Infinity when m_v = 0 too, since relu(0) = 0). */
  a: Float64Array;
  /** s_v = sqrt((A Sigma A^T)_vv). */
  s: Float64Array;
  /** Phi(a_v): the probability the unit is on (the exact value, also for decided units). */
  Phi: Float64Array;
  /** UnitState code per unit. */
  state: Uint8Array;
  on: number;
  off: number;
  uncertain: number;
  constant: number;
}

export interface NetworkMoments {
  mean: Float64Array;
  /** Exact variance (d), when asked. */
  variance?: Float64Array;
  /** The paper's Theorem 2 variance (d), when asked. */
  variancePaper?: Float64Array;
  /** Exact covariance (d x d row-major), when asked. */
  covariance?: Float64Array;
  units: UnitStats;
  /** Pair terms evaluated for the exact covariance (|U| (|U| + 1) / 2). */
  pairTerms: number;
  /** Pair terms evaluated for the paper's variance. */
  paperPairTerms: number;
  /** Threads that evaluated pair terms (1 unless worker threads were used). */
  pairThreads: number;
}

/**
 * Pre-activation mean m = bottom(xb) + A (mu - xb): the first-order expansion at the
 * linearization point xb, written so that the large terms A mu and c1 = bottom(xb) - A xb never
 * cancel each other (docs/ARCHITECTURE.md, section 3).
 */
export function preActivationMean(bottomAtXb: Float64Array, A: Matrix, mu: Float64Array, xb: Float64Array): Float64Array {
  if (bottomAtXb.length !== A.rows) throw new NetmomentsError(`bottom(xb) has ${bottomAtXb.length} values, A has ${A.rows} rows`);
  if (mu.length !== A.cols || xb.length !== A.cols) {
    throw new NetmomentsError(`mu and xb must have ${A.cols} values (A's columns), got ${mu.length} and ${xb.length}`);
  }
  const dx = new Float64Array(A.cols);
  for (let j = 0; j < A.cols; j++) dx[j] = mu[j] - xb[j];
  const m = matVec(A.data, A.rows, A.cols, dx);
  for (let v = 0; v < A.rows; v++) m[v] += bottomAtXb[v];
  return m;
}

/** Expected number of units whose sign differs from the sign at the mean: sum_v Phi(-|a_v|). */
export function expectedFlips(units: UnitStats): number {
  let t = 0;
  for (let v = 0; v < units.a.length; v++) if (units.s[v] > 0) t += Phi(-Math.abs(units.a[v]));
  return t;
}

function checkMatrix(M: Matrix, name: string, rows?: number, cols?: number): void {
  if (!(M.data instanceof Float64Array)) throw new NetmomentsError(`${name} must be a Float64Array`);
  if (M.data.length !== M.rows * M.cols) throw new NetmomentsError(`${name} has ${M.data.length} values, not ${M.rows}x${M.cols}`);
  if (rows !== undefined && M.rows !== rows) throw new NetmomentsError(`${name} has ${M.rows} rows, ${rows} expected`);
  if (cols !== undefined && M.cols !== cols) throw new NetmomentsError(`${name} has ${M.cols} columns, ${cols} expected`);
  checkFinite(M.data, name);
}

function checkFinite(x: Float64Array, name: string): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new NetmomentsError(`${name} holds a non-finite value (${x[i]}) at element ${i}`);
  }
}

/** L, R (rows x cols) with X Sigma X^T = L R^T; `same` when L and R are one array. */
export interface NoiseFactors {
  L: Float64Array;
  R: Float64Array;
  cols: number;
}

/**
 * Factors of X Sigma X^T for X (rows x n), Sigma on the noise's support S (X_S: X's columns S):
 * isotropic L = R = sigma X_S; diagonal L = R = X_S diag(sqrt v); full L = X_S Sigma_S, R = X_S;
 * low rank L = R = X_S F_S. A spec is validated first (validateNoise).
 */
export async function noiseFactors(la: LinearAlgebra, noise: Noise | NoiseCovariance, X: Float64Array, rows: number, n: number): Promise<NoiseFactors> {
  const { support, sigma } = validateNoise(noise, n);
  const q = support.length;
  const all = q === n; // support sorted and unique: all n elements in order
  const Xs = all ? X : gatherColumns(X, rows, n, support);
  switch (sigma.kind) {
    case 'isotropic': {
      const L = new Float64Array(rows * q);
      for (let i = 0; i < L.length; i++) L[i] = sigma.sigma * Xs[i];
      return { L, R: L, cols: q };
    }
    case 'diagonal': {
      const sq = Float64Array.from(sigma.variance, Math.sqrt);
      const L = new Float64Array(rows * q);
      for (let i = 0; i < rows; i++) for (let t = 0; t < q; t++) L[i * q + t] = Xs[i * q + t] * sq[t];
      return { L, R: L, cols: q };
    }
    case 'full': {
      const L = await la.gemm(Xs, rows, q, sigma.cov, q, q);
      return { L, R: Xs, cols: q };
    }
    case 'lowrank': {
      const L = await la.gemm(Xs, rows, q, sigma.factor, q, sigma.rank);
      return { L, R: L, cols: sigma.rank };
    }
  }
}

/** Columns `cols` of a rows x n row-major matrix: rows x |cols|. */
function gatherColumns(X: Float64Array, rows: number, n: number, cols: Int32Array): Float64Array {
  const q = cols.length;
  const out = new Float64Array(rows * q);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    const t = r * q;
    for (let k = 0; k < q; k++) out[t + k] = X[o + cols[k]];
  }
  return out;
}

function gatherRows(X: Float64Array, cols: number, idx: Int32Array): Float64Array {
  const out = new Float64Array(idx.length * cols);
  for (let t = 0; t < idx.length; t++) out.set(X.subarray(idx[t] * cols, idx[t] * cols + cols), t * cols);
  return out;
}

function gatherFactors(F: NoiseFactors, idx: Int32Array): NoiseFactors {
  const L = gatherRows(F.L, F.cols, idx);
  return { L, R: F.R === F.L ? L : gatherRows(F.R, F.cols, idx), cols: F.cols };
}

/** Columns idx of B (d x p), transposed: |idx| x d, optionally scaled per column. */
function gatherColumnsTransposed(B: Matrix, idx: Int32Array, scale?: Float64Array): Float64Array {
  const d = B.rows;
  const p = B.cols;
  const out = new Float64Array(idx.length * d);
  for (let i = 0; i < d; i++) {
    const bo = i * p;
    for (let t = 0; t < idx.length; t++) out[t * d + i] = B.data[bo + idx[t]] * (scale ? scale[t] : 1);
  }
  return out;
}

/** Half-nodes t in (0, 1) and weights of the three Gauss-Legendre rules: theta = asin(rho) * t. */
const HALF_T: Float64Array[] = GL_X.map((xs) => {
  const t = new Float64Array(2 * xs.length);
  for (let i = 0; i < xs.length; i++) {
    t[2 * i] = (1 - xs[i]) / 2;
    t[2 * i + 1] = (1 + xs[i]) / 2;
  }
  return t;
});
const HALF_W: Float64Array[] = GL_W.map((ws) => {
  const w = new Float64Array(2 * ws.length);
  for (let i = 0; i < ws.length; i++) w[2 * i] = w[2 * i + 1] = ws[i];
  return w;
});
const INV_FOUR_PI = 1 / (4 * Math.PI);
const INV_TWO_PI = 1 / (2 * Math.PI);

/**
 * Turn a panel of S values into C values in place. Panel rows are units r0..r0+rows-1, columns
 * units r0..r0+width-1 (so its first `rows` columns are the diagonal block). Only entries on or
 * above the diagonal are evaluated; the diagonal block's lower triangle is mirrored.
 * exact: C_uv = s_u s_v c(a_u, a_v; rho) (relu.ts: quadrature for |rho| < 0.925, closed form else);
 * paper: C_uv = s_u s_v c0(rho).
 */
export function pairPanel(...args: PairPanelArgs): void {
  pairPanelRows(...args, 0, args[1]);
}

/** pairPanel's arguments: the panel, its rows and width, its first unit r0, the units' s, a and diag, and the paper flag. */
type PairPanelArgs = [panel: Float64Array, rows: number, width: number, r0: number, s: Float64Array, a: Float64Array, diag: Float64Array, paper: boolean];

/**
 * pairPanel for panel rows [rowStart, rowEnd) only. Threads that take disjoint row ranges of one
 * panel never touch each other's entries: a row range writes its own rows at and right of the
 * diagonal and mirrors into rows below it, at columns left of their diagonal, which those rows'
 * owner neither reads nor writes.
 */
export function pairPanelRows(...args: [...PairPanelArgs, rowStart: number, rowEnd: number]): void {
  const [panel, rows, width, r0, s, a, diag, paper, rowStart, rowEnd] = args;
  const T0 = HALF_T[0],
    T1 = HALF_T[1],
    T2 = HALF_T[2];
  const W0 = HALF_W[0],
    W1 = HALF_W[1],
    W2 = HALF_W[2];
  // Per-unit values the closed form (|rho| >= 0.925) needs, on the side a <= 0 it is evaluated on.
  const Pn = new Float64Array(width); // Phi(-|a|)
  const Sn = new Float64Array(width); // psi(-|a|)
  const Ph = new Float64Array(width); // phi(a)
  if (!paper) {
    for (let lj = rowStart; lj < width; lj++) {
      const x = -Math.abs(a[r0 + lj]);
      Pn[lj] = Phi(x);
      Sn[lj] = reluPsi(x);
      Ph[lj] = phi(x);
    }
  }
  for (let li = rowStart; li < rowEnd; li++) {
    const u = r0 + li;
    const su = s[u];
    const au = a[u];
    const row = li * width;
    panel[row + li] = diag[u];
    for (let lj = li + 1; lj < width; lj++) {
      const v = r0 + lj;
      const sv = s[v];
      const ss = su * sv;
      let rho = panel[row + lj] / ss;
      if (rho > 1) rho = 1;
      else if (rho < -1) rho = -1;
      let c: number;
      if (paper) {
        c = (rho * Math.asin(rho) - (rho * rho) / (1 + Math.sqrt((1 - rho) * (1 + rho)))) * INV_TWO_PI;
      } else if (rho === 0) {
        c = 0;
      } else {
        const ar = rho < 0 ? -rho : rho;
        if (ar < 0.925) {
          const T = ar < 0.3 ? T0 : ar < 0.75 ? T1 : T2;
          const W = ar < 0.3 ? W0 : ar < 0.75 ? W1 : W2;
          const av = a[v];
          const asr = Math.asin(rho);
          const hs = 0.5 * (au * au + av * av);
          const hk = au * av;
          let sum = 0;
          for (let q = 0; q < T.length; q++) {
            const sn = Math.sin(asr * T[q]);
            sum += W[q] * (rho - sn) * Math.exp((sn * hk - hs) / (1 - sn * sn));
          }
          c = sum * asr * INV_FOUR_PI;
        } else {
          // Rosenbaum's closed form after the flips that make a, b <= 0 (pairCorrectionClosedForm,
          // inlined with the per-unit values above)
          let ap = au;
          let bp = a[v];
          let rp = rho;
          if (ap > 0) {
            ap = -ap;
            rp = -rp;
          }
          if (bp > 0) {
            bp = -bp;
            rp = -rp;
          }
          const rr = Math.sqrt((1 - rp) * (1 + rp));
          if (rr === 0) c = pairCorrectionClosedForm(au, a[v], rho);
          else {
            const phA = Ph[li];
            const phB = Ph[lj];
            const tb = (bp - rp * ap) / rr;
            const e = (ap * bp + rp) * Phi2(ap, bp, rp) + ap * phB * Phi((ap - rp * bp) / rr) + bp * phA * Phi(tb) + rr * phA * phi(tb);
            c = e - Sn[li] * Sn[lj] - rp * Pn[li] * Pn[lj];
          }
        }
      }
      const val = ss * c;
      panel[row + lj] = val;
      if (lj < rows) panel[lj * width + li] = val;
    }
  }
}

/**
 * S over a set of q units, panel by panel: rows r0..r1-1 and columns r0..q-1 of S (row-major,
 * (r1 - r0) x (q - r0)); only the entries above the diagonal are read. A fresh array per call (the
 * pair code overwrites it).
 */
export type PanelSource = (r0: number, r1: number) => Promise<Float64Array>;

/**
 * W = C B_U^T (q x d) for the q units of `s`/`a`, C their pair-correction matrix, computed panel by
 * panel (see the file comment). F are the units' noise factors (S = F.L F.R^T), Bt = B_U^T (q x d).
 */
export async function foldPairs(la: LinearAlgebra, F: NoiseFactors, ...rest: PairFoldArgs): Promise<{ W: Float64Array; pairs: number; threads: number }> {
  const k = F.cols;
  const [s] = rest;
  const q = s.length;
  const panels: PanelSource = (r0, r1) => la.gemm(F.L.subarray(r0 * k, r1 * k), r1 - r0, k, F.R.subarray(r0 * k, q * k), q - r0, k, { transB: true });
  return foldPairPanels(la, panels, ...rest);
}

/** What foldPairs and foldPairPanels fold: the units (s, a, diag), Bt = B_U^T (q x d), d, the paper flag, the panel size, the threads (default 1). */
type PairFoldArgs = [
  s: Float64Array,
  a: Float64Array,
  diag: Float64Array,
  Bt: Float64Array,
  d: number,
  paper: boolean,
  panelElements: number,
  threads?: number,
];

/** foldPairs with S read from any panel source (noise factors, or a Gram matrix gathered). */
export async function foldPairPanels(
  la: LinearAlgebra,
  panelOf: PanelSource,
  ...args: PairFoldArgs
): Promise<{ W: Float64Array; pairs: number; threads: number }> {
  const [s, a, diag, Bt, d, paper, panelElements, threads = 1] = args;
  const q = s.length;
  const W = new Float64Array(q * d);
  if (q === 0 || d === 0) return { W, pairs: 0, threads: 1 };
  // Worker threads only pay off for many pairs (each panel is copied to shared memory once).
  const pool = threads > 1 && q * q > 2e5 ? await PairPool.get(threads - 1, s, a, diag) : null;
  const bs = Math.max(1, Math.min(q, Math.floor(panelElements / q)));
  let pairs = 0;
  try {
    for (let r0 = 0; r0 < q; r0 += bs) {
      const r1 = Math.min(q, r0 + bs);
      const rows = r1 - r0;
      const width = q - r0;
      const panel = await panelOf(r0, r1);
      if (pool) await pool.run(panel, rows, width, r0, paper);
      else pairPanel(panel, rows, width, r0, s, a, diag, paper);
      pairs += (rows * (rows + 1)) / 2 + rows * (width - rows);
      const w1 = await la.gemm(panel, rows, width, Bt.subarray(r0 * d, q * d), width, d);
      for (let i = 0; i < rows * d; i++) W[r0 * d + i] += w1[i];
      const rest = width - rows;
      if (rest > 0) {
        // the off-diagonal block transposed (rest x rows): a plain product runs ~15% faster than transA
        const offT = new Float64Array(rest * rows);
        for (let li = 0; li < rows; li++) {
          const o = li * width + rows;
          for (let lj = 0; lj < rest; lj++) offT[lj * rows + li] = panel[o + lj];
        }
        const w2 = await la.gemm(offT, rest, rows, Bt.subarray(r0 * d, r1 * d), rows, d);
        const base = r1 * d;
        for (let i = 0; i < rest * d; i++) W[base + i] += w2[i];
      }
    }
  } finally {
    pool?.close();
  }
  return { W, pairs, threads: pool ? pool.threads : 1 };
}

/**
 * Worker threads that evaluate row ranges of a pair panel (pairPanelRows) while the main thread
 * does its own range. The panel travels in a SharedArrayBuffer; each thread's rows are chosen so
 * the pair counts are balanced. Workers are started once per process and unref'd.
 */
class PairPool {
  private static workers: Worker[] | null | undefined;
  private static nextId = 1;
  /** Folds may run concurrently (several networkMoments calls awaiting at once): units are per fold. */
  private readonly fold = PairPool.nextId++;

  private constructor(
    private readonly workers: Worker[],
    private readonly s: Float64Array,
    private readonly a: Float64Array,
    private readonly diag: Float64Array,
  ) {}

  private static start(count: number): Worker[] | null {
    if (PairPool.workers !== undefined && (PairPool.workers === null || PairPool.workers.length >= count)) return PairPool.workers;
    const script = new URL('./pairWorker.js', import.meta.url);
    let path: string;
    try {
      path = fileURLToPath(script);
    } catch {
      PairPool.workers = null;
      return null;
    }
    if (!existsSync(path)) {
      PairPool.workers = null;
      return null;
    }
    const ws = PairPool.workers ?? [];
    while (ws.length < count) {
      const w = new Worker(script);
      w.unref();
      ws.push(w);
    }
    PairPool.workers = ws;
    return ws;
  }

  static async get(count: number, s: Float64Array, a: Float64Array, diag: Float64Array): Promise<PairPool | null> {
    const all = PairPool.start(count);
    if (!all) return null;
    const pool = new PairPool(all.slice(0, count), s, a, diag);
    for (const w of pool.workers) w.postMessage({ type: 'units', fold: pool.fold, s, a, diag });
    return pool;
  }

  /** Let the workers drop this fold's units. */
  close(): void {
    for (const w of this.workers) w.postMessage({ type: 'drop', fold: this.fold });
  }

  async run(panel: Float64Array, rows: number, width: number, r0: number, paper: boolean): Promise<void> {
    const parts = this.workers.length + 1;
    // row cut points with equal pair counts: rows near the top of a panel hold more pairs
    const total = rows * width - (rows * (rows - 1)) / 2;
    const cuts = [0];
    let acc = 0;
    for (let li = 0; li < rows && cuts.length < parts; li++) {
      acc += width - li;
      if (acc >= (total * cuts.length) / parts) cuts.push(li + 1);
    }
    while (cuts.length < parts) cuts.push(rows);
    cuts.push(rows);
    const shared = new Float64Array(new SharedArrayBuffer(panel.byteLength));
    shared.set(panel);
    const done = this.workers.map((w, t) =>
      this.call(w, { type: 'rows', fold: this.fold, panel: shared, rows, width, r0, paper, rowStart: cuts[t + 1], rowEnd: cuts[t + 2] }),
    );
    pairPanelRows(shared, rows, width, r0, this.s, this.a, this.diag, paper, cuts[0], cuts[1]);
    try {
      await Promise.all(done);
    } catch {
      // a worker died: `panel` still holds the S values, so do the whole panel here
      pairPanel(panel, rows, width, r0, this.s, this.a, this.diag, paper);
      return;
    }
    panel.set(shared);
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  private call(w: Worker, msg: Record<string, unknown>): Promise<void> {
    const id = PairPool.nextId++;
    return new Promise<void>((resolve, reject) => {
      const onMessage = (reply: { id: number; error?: string }) => {
        if (reply.id !== id) return;
        w.off('message', onMessage);
        w.off('error', onError);
        if (reply.error) reject(new Error(`pair worker failed: ${reply.error}`));
        else resolve();
      };
      const onError = (e: unknown) => {
        w.off('message', onMessage);
        PairPool.workers = undefined;
        reject(e);
      };
      w.on('message', onMessage);
      w.once('error', onError);
      w.ref();
      w.postMessage({ ...msg, id });
    }).finally(() => w.unref());
  }
}

/** out[i] = sum_u Bt[u, i] W[u, i]. */
function columnDots(Bt: Float64Array, W: Float64Array, q: number, d: number): Float64Array {
  const out = new Float64Array(d);
  for (let u = 0; u < q; u++) {
    const o = u * d;
    for (let i = 0; i < d; i++) out[i] += Bt[o + i] * W[o + i];
  }
  return out;
}

function symmetrize(M: Float64Array, d: number): void {
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) {
      const v = 0.5 * (M[i * d + j] + M[j * d + i]);
      M[i * d + j] = v;
      M[j * d + i] = v;
    }
  }
}

/** H = B_L diag(w_L) A_L (+ D): d x n, over the units idx with weights w (one per idx entry). */
async function expectedJacobian(la: LinearAlgebra, net: ShallowNetwork, idx: Int32Array, w: Float64Array): Promise<Float64Array> {
  const d = net.B.rows;
  const n = net.A.cols;
  let H: Float64Array;
  if (idx.length === 0) H = new Float64Array(d * n);
  else {
    const BL = transpose(gatherColumnsTransposed(net.B, idx, w), idx.length, d); // d x |L|
    const AL = gatherRows(net.A.data, n, idx); // |L| x n
    H = await la.gemm(BL, d, idx.length, AL, idx.length, n);
  }
  if (net.D) for (let i = 0; i < H.length; i++) H[i] += net.D.data[i];
  return H;
}

/** Shapes and values of a network description; returns [n, p, d]. */
export function validateNetwork(net: ShallowNetwork): [number, number, number] {
  const n = net.A.cols;
  const p = net.A.rows;
  const d = net.B.rows;
  checkMatrix(net.A, 'A');
  checkMatrix(net.B, 'B', undefined, p);
  if (net.m.length !== p) throw new NetmomentsError(`the pre-activation mean has ${net.m.length} values, A has ${p} rows`);
  checkFinite(net.m, 'the pre-activation mean');
  if (net.c2.length !== d) throw new NetmomentsError(`the output offset c2 has ${net.c2.length} values, B has ${d} rows`);
  checkFinite(net.c2, 'the output offset c2');
  if (net.D) {
    checkMatrix(net.D, 'D', d, n);
    if (!net.mu) throw new NetmomentsError('a skip path D needs the input mean mu (for E[D x] = D mu)', { code: 'BAD_USAGE' });
  }
  if (net.mu) {
    if (net.mu.length !== n) throw new NetmomentsError(`mu has ${net.mu.length} values, the input has ${n}`);
    checkFinite(net.mu, 'mu');
  }
  return [n, p, d];
}

/**
 * Unit states from the pre-activation means m and standard deviations s: a = m / s, Phi(a), and
 * surely on / off (Phi(-|a|) < decidedTail), uncertain, or constant (s = 0).
 */
export function unitStates(m: Float64Array, s: Float64Array, decidedTail = 1e-17): UnitStats {
  const p = m.length;
  const a = new Float64Array(p);
  const P = new Float64Array(p);
  const state = new Uint8Array(p);
  let on = 0,
    off = 0,
    uncertain = 0,
    constant = 0;
  for (let v = 0; v < p; v++) {
    const mv = m[v];
    const sv = s[v];
    if (sv === 0) {
      a[v] = mv > 0 ? Infinity : -Infinity;
      P[v] = mv > 0 ? 1 : 0;
      state[v] = UnitState.Constant;
      constant++;
      continue;
    }
    const av = mv / sv;
    a[v] = av;
    P[v] = Phi(av);
    if (Phi(-Math.abs(av)) < decidedTail) {
      if (av > 0) {
        state[v] = UnitState.On;
        on++;
      } else {
        state[v] = UnitState.Off;
        off++;
      }
    } else {
      state[v] = UnitState.Uncertain;
      uncertain++;
    }
  }
  return { a, s, Phi: P, state, on, off, uncertain, constant };
}

/**
 * Per-unit statistics: s from the noise factors of A, a = m / s, Phi(a), and the unit state.
 * Returns the factors too (rows for all p units) for reuse by the pair terms.
 */
export async function unitStatistics(
  la: LinearAlgebra,
  net: ShallowNetwork,
  noise: Noise | NoiseCovariance,
  decidedTail = 1e-17,
): Promise<{ units: UnitStats; factors: NoiseFactors }> {
  const [n, p] = [net.A.cols, net.A.rows];
  const factors = await noiseFactors(la, noise, net.A.data, p, n);
  return { units: unitStates(net.m, unitStd(factors, p), decidedTail), factors };
}

/** s_v = sqrt(S_vv) from the units' noise factors (0 where S_vv <= 0). */
function unitStd(F: NoiseFactors, p: number): Float64Array {
  const s2 = rowDots(F.L, F.R, p, F.cols);
  return Float64Array.from(s2, (v) => (v > 0 ? Math.sqrt(v) : 0));
}

/** E[g] = B E[relu(z)] + c2 (+ D mu, given as `Dmu`) from the unit statistics. */
function meanOf(B: Matrix, m: Float64Array, units: UnitStats, c2: Float64Array, Dmu?: Float64Array): Float64Array {
  const p = B.cols;
  const er = new Float64Array(p);
  for (let v = 0; v < p; v++) er[v] = reluMean(m[v], units.s[v]);
  const mean = matVec(B.data, B.rows, p, er);
  for (let i = 0; i < mean.length; i++) mean[i] += c2[i];
  if (Dmu) for (let i = 0; i < mean.length; i++) mean[i] += Dmu[i];
  return mean;
}

/** Mean E[g] = B E[relu(z)] + D mu + c2. */
export function networkMean(net: ShallowNetwork, units: UnitStats): Float64Array {
  return meanOf(net.B, net.m, units, net.c2, net.D && net.mu ? matVec(net.D.data, net.D.rows, net.D.cols, net.mu) : undefined);
}

/**
 * How the moments reach S = A Sigma A^T (p x p) and the linear part's output covariance; both
 * forms give the same numbers up to rounding (see factorForm and src/linearize/bankMoments.ts):
 *   factors  S = L R^T from noise factors of A; H Sigma H^T from noise factors of H
 *   gram     S held whole, with A Sigma D^T and D Sigma D^T for a skip path
 */
export interface CovarianceForm {
  /** s_v = sqrt(S_vv) for every unit (p). */
  s: Float64Array;
  /** S over the units `idx`, panel by panel. */
  panels(idx: Int32Array): PanelSource;
  /**
   * The linear part H y with H = B_L diag(w) A_L + D over the units L (w one weight per L entry):
   * its covariance H Sigma H^T (d x d) when `covariance`, else its variance (d).
   */
  linear(L: Int32Array, w: Float64Array, covariance: boolean): Promise<Float64Array>;
}

/** The factor form of a network under a noise (S and H Sigma H^T from noiseFactors). */
export async function factorForm(la: LinearAlgebra, net: ShallowNetwork, noise: Noise | NoiseCovariance): Promise<CovarianceForm> {
  const [n, p, d] = [net.A.cols, net.A.rows, net.B.rows];
  const factors = await noiseFactors(la, noise, net.A.data, p, n);
  return factorFormOf(la, net, factors, (H) => noiseFactors(la, noise, H, d, n));
}

/**
 * The factor form of a network whose columns are the noise's own coordinates (A = A F, D = D F
 * for Sigma = F F^T, the input e ~ N(0, I_r)): the factors are the matrices themselves.
 */
export function standardForm(la: LinearAlgebra, net: ShallowNetwork): CovarianceForm {
  const r = net.A.cols;
  return factorFormOf(la, net, { L: net.A.data, R: net.A.data, cols: r }, async (H) => ({ L: H, R: H, cols: r }));
}

function factorFormOf(la: LinearAlgebra, net: ShallowNetwork, factors: NoiseFactors, factorsOfH: (H: Float64Array) => Promise<NoiseFactors>): CovarianceForm {
  const [p, d] = [net.A.rows, net.B.rows];
  return {
    s: unitStd(factors, p),
    panels(idx) {
      const F = gatherFactors(factors, idx);
      const k = F.cols;
      const q = idx.length;
      return (r0, r1) => la.gemm(F.L.subarray(r0 * k, r1 * k), r1 - r0, k, F.R.subarray(r0 * k, q * k), q - r0, k, { transB: true });
    },
    async linear(L, w, covariance) {
      const HF = await factorsOfH(await expectedJacobian(la, net, L, w));
      return covariance ? la.gemm(HF.L, d, HF.cols, HF.R, d, HF.cols, { transB: true }) : rowDots(HF.L, HF.R, d, HF.cols);
    },
  };
}

/**
 * The core of the moments (see the file comment): mean, exact variance and covariance, and the
 * paper's variance of B relu(z) + (D y) + c2 (+ Dmu) with z ~ N(m, S), S and the linear part given
 * by `form`.
 */
export async function momentsFromForm(
  B: Matrix,
  m: Float64Array,
  c2: Float64Array,
  Dmu: Float64Array | undefined,
  form: CovarianceForm,
  options: MomentsOptions = {},
): Promise<NetworkMoments> {
  const p = B.cols;
  const d = B.rows;
  const la = options.linalg ?? jsLinearAlgebra;
  const wantCov = options.covariance ?? true;
  const wantVar = (options.variance ?? true) || wantCov;
  const wantPaper = options.paper ?? true;
  const panelElements = options.panelElements ?? 4_000_000;
  const decidedTail = options.decidedTail ?? 1e-17;
  const threads = options.threads ?? Math.min(4, availableParallelism());

  const units = unitStates(m, form.s, decidedTail);
  const mean = meanOf(B, m, units, c2, Dmu);
  const result: NetworkMoments = { mean, units, pairTerms: 0, paperPairTerms: 0, pairThreads: 1 };

  if (wantVar) {
    // Linear (Stein) part: H Sigma H^T with H = B diag(Phi) A + D over units that are on or uncertain.
    const lin: number[] = [];
    for (let v = 0; v < p; v++) if (units.state[v] === UnitState.On || units.state[v] === UnitState.Uncertain) lin.push(v);
    const L = Int32Array.from(lin);
    const wL = Float64Array.from(lin, (v) => (units.state[v] === UnitState.On ? 1 : units.Phi[v]));
    const linear = await form.linear(L, wL, wantCov);

    // Correction part over the uncertain units.
    const U = Int32Array.from({ length: p }, (_, v) => v).filter((v) => units.state[v] === UnitState.Uncertain);
    const q = U.length;
    const sU = Float64Array.from(U, (v) => units.s[v]);
    const aU = Float64Array.from(U, (v) => units.a[v]);
    const diagU = Float64Array.from(U, (v) => units.s[v] * units.s[v] * reluVarianceCorrection(units.a[v]));
    const BtU = gatherColumnsTransposed(B, U);
    const { W, pairs, threads: used } = await foldPairPanels(la, form.panels(U), sU, aU, diagU, BtU, d, false, panelElements, threads);
    result.pairTerms = pairs;
    result.pairThreads = Math.max(result.pairThreads, used);

    if (wantCov) {
      const cov = linear;
      if (q > 0) {
        const covC = await la.gemm(transpose(BtU, q, d), d, q, W, q, d);
        for (let i = 0; i < cov.length; i++) cov[i] += covC[i];
      }
      symmetrize(cov, d);
      result.covariance = cov;
      result.variance = Float64Array.from({ length: d }, (_, i) => cov[i * d + i]);
    } else {
      const v = linear;
      const vc = columnDots(BtU, W, q, d);
      for (let i = 0; i < d; i++) v[i] += vc[i];
      result.variance = v;
    }
  }

  if (wantPaper) {
    const P = Int32Array.from({ length: p }, (_, v) => v).filter((v) => units.s[v] > 0);
    const half = new Float64Array(P.length).fill(0.5);
    const v0 = await form.linear(P, half, false);
    const sP = Float64Array.from(P, (v) => units.s[v]);
    const aP = new Float64Array(P.length);
    const c0diag = (Math.PI / 2 - 1) / (2 * Math.PI);
    const diagP = Float64Array.from(P, (v) => units.s[v] * units.s[v] * c0diag);
    const BtP = gatherColumnsTransposed(B, P);
    const { W, pairs, threads: used } = await foldPairPanels(la, form.panels(P), sP, aP, diagP, BtP, d, true, panelElements, threads);
    result.paperPairTerms = pairs;
    result.pairThreads = Math.max(result.pairThreads, used);
    const vc = columnDots(BtP, W, P.length, d);
    for (let i = 0; i < d; i++) v0[i] += vc[i];
    result.variancePaper = v0;
  }
  return result;
}

/**
 * Mean, exact variance and covariance, and the paper's variance of g(x) = B relu(A x + c1) + D x + c2
 * under x ~ N(mu, Sigma); see the file comment for the formulas and conventions. `noise` is a
 * validated Noise (src/noise.ts) or a spec, validated here by the same function.
 */
export async function networkMoments(net: ShallowNetwork, noise: Noise | NoiseCovariance, options: MomentsOptions = {}): Promise<NetworkMoments> {
  const [n] = validateNetwork(net);
  const valid = validateNoise(noise, n);
  const form = await factorForm(options.linalg ?? jsLinearAlgebra, net, valid);
  return momentsFromForm(net.B, net.m, net.c2, skipMean(net), form, options);
}

/**
 * The moments of a network whose columns are the noise's own coordinates (A = A F, D = D F with
 * Sigma = F F^T, the input e ~ N(0, I_r)): what a surrogate projected on a noise factor is.
 */
export async function standardMoments(net: ShallowNetwork, options: MomentsOptions = {}): Promise<NetworkMoments> {
  validateNetwork(net);
  return momentsFromForm(net.B, net.m, net.c2, skipMean(net), standardForm(options.linalg ?? jsLinearAlgebra, net), options);
}

function skipMean(net: ShallowNetwork): Float64Array | undefined {
  return net.D && net.mu ? matVec(net.D.data, net.D.rows, net.D.cols, net.mu) : undefined;
}
