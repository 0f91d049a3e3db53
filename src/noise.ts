/**
 * Input noise x ~ N(mu, Sigma): the one `Noise` value, validated here and nowhere else, and its
 * factor Sigma = F F^T.
 *
 * Sigma forms (a NoiseSpec, over all n input elements in the layout rule's flattening):
 *   isotropic sigma      Sigma = sigma^2 I
 *   diagonal             Sigma = diag(v)          (--noise-var, n values >= 0)
 *   full                 Sigma = C                (--noise-cov, n x n symmetric PSD)
 *   lowrank              Sigma = F F^T            (F n x rank, for callers that hold a factor)
 * A window R,C,H,W keeps the noise only on the elements whose row falls in [R, R+H) and column in
 * [C, C+W), all channels included; rows and columns are the image axes of data/layout.ts's image
 * layout rule (the last two axes of [C, H, W], the two before the last of [H, W, C]).
 *
 * `validateNoise` turns a spec (and a window's element set) into a `Noise`: `support` lists the
 * input elements with nonzero variance, and Sigma is kept on the support only (Sigma_full =
 * P^T Sigma_S P with P selecting `support`). Only those columns of the Jacobian A (and D) enter
 * A Sigma A^T, so the linearizer computes only those columns: a 7x7 window on MNIST needs 49 JVP
 * columns instead of 784. The moments engine, the Monte Carlo sampler and the gradients accept a
 * spec too and validate it through the same function.
 *
 * `noiseFactor` gives F without materialising it: for isotropic and diagonal noise its columns
 * are scaled coordinate axes (sd_k at element support_k), for a full covariance the eigen-factor
 * on the support (covarianceFactor), for a low-rank spec the given factor's support rows.
 */
import { EigenvalueDecomposition, Matrix as MlMatrix } from 'ml-matrix';
import { NetmomentsError } from './errors.js';
import { describeGeometry, requireImageGeometry, type LayoutChoice } from './data/layout.js';

/** Sigma as a user states it (--sigma, --noise-var, --noise-cov): over all n input elements. */
export type NoiseSpec =
  { kind: 'isotropic'; sigma: number } | { kind: 'diagonal'; variance: Float64Array } | { kind: 'full'; cov: Float64Array /* row-major square */ };

/** Sigma in any form: a spec, or F F^T from a factor (F rows x rank row-major); over all n elements, or inside a `Noise` over its support. */
export type NoiseCovariance = NoiseSpec | { kind: 'lowrank'; factor: Float64Array; rank: number };

/** The validated noise: Sigma over n input elements, zero outside `support`. */
export interface Noise {
  /** Number of input elements n. */
  n: number;
  /** Sorted input indices with nonzero variance (length q), inside the window when one was given. */
  support: Int32Array;
  /** Sigma on the support: isotropic (sigma), diagonal (q variances), full (q x q) or low rank (q x rank). */
  sigma: NoiseCovariance;
  /** Largest marginal standard deviation (for messages and step sizes). */
  maxStd: number;
}

/**
 * A factor F (n x r) of the noise, Sigma = F F^T, held without its zero rows:
 *   axes   column k of F is sd_k e_{support_k} (isotropic and diagonal noise; r = q)
 *   dense  the rows `support` of F, q x r row-major (a full covariance's eigen-factor, a low-rank factor)
 * In the noise's own coordinates x = mu + F e, e ~ N(0, I_r).
 */
export type NoiseFactor =
  | { kind: 'axes'; n: number; r: number; support: Int32Array; sd: Float64Array }
  | { kind: 'dense'; n: number; r: number; support: Int32Array; factor: Float64Array };

export interface InputWindow {
  row: number;
  col: number;
  height: number;
  width: number;
}

/**
 * Indices of the input elements inside a window of the image axes of `shape` (all channels):
 * rows and columns as the image layout rule of data/layout.ts reads the shape under `layout`
 * (the last two axes of [C, H, W] or [H, W]; the two before the last of [H, W, C]). Sorted.
 */
export function windowIndices(shape: readonly number[], w: InputWindow, file?: string, layout: LayoutChoice = 'auto'): Int32Array {
  const g = requireImageGeometry(shape, layout, '--window', file);
  const H = g.height;
  const W = g.width;
  if (
    !(Number.isInteger(w.row) && Number.isInteger(w.col) && Number.isInteger(w.height) && Number.isInteger(w.width)) ||
    w.row < 0 ||
    w.col < 0 ||
    w.height < 1 ||
    w.width < 1 ||
    w.row + w.height > H ||
    w.col + w.width > W
  ) {
    throw new NetmomentsError(`--window ${w.row},${w.col},${w.height},${w.width} does not fit inside the input ${describeGeometry(shape, g)}`, {
      code: 'BAD_USAGE',
      file,
    });
  }
  const C = g.channels;
  const out = new Int32Array(g.planes * C * w.height * w.width);
  let k = 0;
  if (g.layout === 'chw') {
    for (let c = 0; c < C; c++) {
      for (let i = w.row; i < w.row + w.height; i++) {
        for (let j = w.col; j < w.col + w.width; j++) out[k++] = (c * H + i) * W + j;
      }
    }
  } else {
    for (let p = 0; p < g.planes; p++) {
      for (let i = w.row; i < w.row + w.height; i++) {
        for (let j = w.col; j < w.col + w.width; j++) for (let c = 0; c < C; c++) out[k++] = ((p * H + i) * W + j) * C + c;
      }
    }
  }
  return out;
}

/** Parse "R,C,H,W". */
export function parseWindow(text: string): InputWindow {
  const parts = text.split(',').map((s) => Number(s.trim()));
  if (parts.length !== 4 || parts.some((v) => !Number.isInteger(v))) {
    throw new NetmomentsError(`--window expects four integers R,C,H,W (top row, left column, height, width), got '${text}'`, {
      code: 'BAD_USAGE',
    });
  }
  return { row: parts[0], col: parts[1], height: parts[2], width: parts[3] };
}

/**
 * The check of a standard deviation as an option states it (`what`, e.g. '--sigma'): finite and
 * >= 0, or > 0 with `positive` (for analyses that need some noise). Every sigma check calls this.
 */
export function checkSigma(sigma: number, what = '--sigma', positive = false): void {
  if (!Number.isFinite(sigma) || sigma < 0 || (positive && sigma === 0)) {
    throw new NetmomentsError(`${what} must be a finite number ${positive ? '>' : '>='} 0, got ${sigma}`, { code: 'BAD_USAGE' });
  }
}

/** Whether `noise` is a validated Noise rather than a spec. */
export function isNoise(noise: Noise | NoiseCovariance): noise is Noise {
  return (noise as Noise).support instanceof Int32Array;
}

/**
 * The one validation of noise: a spec for n input elements (shapes, finiteness, symmetry and sign
 * of a covariance's diagonal), reduced to its support, optionally intersected with a window's
 * elements. A Noise passes through when it is for n elements.
 */
export function validateNoise(spec: NoiseCovariance | Noise, n: number, windowElements?: Int32Array, file?: string): Noise {
  if (isNoise(spec)) {
    if (spec.n !== n) throw new NetmomentsError(`the noise is for ${spec.n} input elements, the input has ${n}`, { file });
    if (!windowElements) return spec;
    const win = Uint8Array.from({ length: n }, () => 0);
    for (const i of windowElements) win[i] = 1;
    const keep = Int32Array.from(spec.support.keys()).filter((k) => win[spec.support[k]] === 1);
    return restrict(spec, keep);
  }
  const inWindow = windowElements ? new Uint8Array(n) : undefined;
  if (inWindow && windowElements) for (const i of windowElements) inWindow[i] = 1;
  const keep = (i: number) => (inWindow ? inWindow[i] === 1 : true);

  switch (spec.kind) {
    case 'isotropic': {
      checkSigma(spec.sigma);
      const support = windowElements ? Int32Array.from([...windowElements].sort((a, b) => a - b)) : Int32Array.from({ length: n }, (_, i) => i);
      return { n, support: spec.sigma === 0 ? new Int32Array(0) : support, sigma: { kind: 'isotropic', sigma: spec.sigma }, maxStd: spec.sigma };
    }
    case 'diagonal': {
      if (spec.variance.length !== n) {
        throw new NetmomentsError(`the noise variance has ${spec.variance.length} elements, the model input has ${n}`, { file });
      }
      const idx: number[] = [];
      let maxVar = 0;
      for (let i = 0; i < n; i++) {
        const v = spec.variance[i];
        if (!Number.isFinite(v)) throw new NetmomentsError(`the noise variance holds a non-finite value at element ${i}`, { file });
        if (v < 0) throw new NetmomentsError(`the noise variance is negative (${v}) at element ${i}`, { file });
        if (v > 0 && keep(i)) {
          idx.push(i);
          maxVar = Math.max(maxVar, v);
        }
      }
      const support = Int32Array.from(idx);
      return { n, support, sigma: { kind: 'diagonal', variance: Float64Array.from(idx, (i) => spec.variance[i]) }, maxStd: Math.sqrt(maxVar) };
    }
    case 'full': {
      if (spec.cov.length !== n * n) {
        throw new NetmomentsError(`the noise covariance has ${spec.cov.length} elements, a ${n}x${n} matrix (${n * n}) is needed`, { file });
      }
      let scale = 0;
      for (let i = 0; i < n * n; i++) {
        const v = spec.cov[i];
        if (!Number.isFinite(v)) throw new NetmomentsError(`the noise covariance holds a non-finite value at element ${i}`, { file });
        scale = Math.max(scale, Math.abs(v));
      }
      const tol = 1e-9 * Math.max(scale, 1e-300);
      for (let i = 0; i < n; i++) {
        if (spec.cov[i * n + i] < -tol) {
          throw new NetmomentsError(`the noise covariance is not positive semi-definite: diagonal element ${i} is ${spec.cov[i * n + i]}`, { file });
        }
        for (let j = i + 1; j < n; j++) {
          if (Math.abs(spec.cov[i * n + j] - spec.cov[j * n + i]) > tol) {
            throw new NetmomentsError(
              `the noise covariance is not symmetric: element (${i},${j}) is ${spec.cov[i * n + j]} but (${j},${i}) is ${spec.cov[j * n + i]}`,
              { file },
            );
          }
        }
      }
      const idx: number[] = [];
      let maxVar = 0;
      for (let i = 0; i < n; i++) {
        if (spec.cov[i * n + i] > 0 && keep(i)) {
          idx.push(i);
          maxVar = Math.max(maxVar, spec.cov[i * n + i]);
        }
      }
      const r = idx.length;
      const cov = new Float64Array(r * r);
      for (let a = 0; a < r; a++) for (let b = 0; b < r; b++) cov[a * r + b] = 0.5 * (spec.cov[idx[a] * n + idx[b]] + spec.cov[idx[b] * n + idx[a]]);
      return { n, support: Int32Array.from(idx), sigma: { kind: 'full', cov }, maxStd: Math.sqrt(maxVar) };
    }
    case 'lowrank': {
      const rank = spec.rank;
      if (!(Number.isInteger(rank) && rank >= 0)) throw new NetmomentsError(`the noise factor rank must be a non-negative integer, got ${rank}`, { file });
      if (spec.factor.length !== n * rank) throw new NetmomentsError(`the noise factor has ${spec.factor.length} values, ${n}x${rank} expected`, { file });
      const idx: number[] = [];
      let maxVar = 0;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let k = 0; k < rank; k++) {
          const f = spec.factor[i * rank + k];
          if (!Number.isFinite(f)) throw new NetmomentsError(`the noise factor holds a non-finite value (${f}) at element ${i * rank + k}`, { file });
          v += f * f;
        }
        if (v > 0 && keep(i)) {
          idx.push(i);
          maxVar = Math.max(maxVar, v);
        }
      }
      const factor = new Float64Array(idx.length * rank);
      idx.forEach((i, t) => factor.set(spec.factor.subarray(i * rank, (i + 1) * rank), t * rank));
      return { n, support: Int32Array.from(idx), sigma: { kind: 'lowrank', factor, rank }, maxStd: Math.sqrt(maxVar) };
    }
    default:
      throw new NetmomentsError(`unknown noise kind '${(spec as { kind: string }).kind}'`, { code: 'BAD_USAGE' });
  }
}

/** A validated noise kept on the support positions `keep` (indices into its support). */
function restrict(noise: Noise, keep: Int32Array): Noise {
  const support = Int32Array.from(keep, (k) => noise.support[k]);
  const s = noise.sigma;
  const q = noise.support.length;
  let sigma: NoiseCovariance;
  let maxVar = 0;
  switch (s.kind) {
    case 'isotropic':
      sigma = s;
      maxVar = support.length > 0 ? s.sigma * s.sigma : 0;
      break;
    case 'diagonal':
      sigma = { kind: 'diagonal', variance: Float64Array.from(keep, (k) => s.variance[k]) };
      for (const k of keep) maxVar = Math.max(maxVar, s.variance[k]);
      break;
    case 'full': {
      const r = keep.length;
      const cov = new Float64Array(r * r);
      for (let a = 0; a < r; a++) for (let b = 0; b < r; b++) cov[a * r + b] = s.cov[keep[a] * q + keep[b]];
      for (const k of keep) maxVar = Math.max(maxVar, s.cov[k * q + k]);
      sigma = { kind: 'full', cov };
      break;
    }
    case 'lowrank': {
      const factor = new Float64Array(keep.length * s.rank);
      keep.forEach((k, t) => {
        const row = s.factor.subarray(k * s.rank, (k + 1) * s.rank);
        factor.set(row, t * s.rank);
        maxVar = Math.max(
          maxVar,
          row.reduce((a, f) => a + f * f, 0),
        );
      });
      sigma = { kind: 'lowrank', factor, rank: s.rank };
      break;
    }
  }
  return { n: noise.n, support, sigma, maxStd: Math.sqrt(maxVar) };
}

/**
 * The factor F of the noise (see NoiseFactor). A full covariance is factored by its
 * eigendecomposition on the support (covarianceFactor: negative eigenvalues beyond round-off are an
 * error naming the most negative one; `file` names the covariance's file in that error).
 */
export function noiseFactor(noise: Noise, file?: string): NoiseFactor {
  const { n, support } = noise;
  const q = support.length;
  const s = noise.sigma;
  switch (s.kind) {
    case 'isotropic':
      return { kind: 'axes', n, r: q, support, sd: new Float64Array(q).fill(s.sigma) };
    case 'diagonal':
      return { kind: 'axes', n, r: q, support, sd: Float64Array.from(s.variance, Math.sqrt) };
    case 'lowrank':
      return { kind: 'dense', n, r: s.rank, support, factor: s.factor };
    case 'full': {
      let factored: CovarianceFactor;
      try {
        factored = covarianceFactor(s.cov, q, 1e-9, 'the noise covariance');
      } catch (e) {
        if (e instanceof NetmomentsError && !e.file && file) throw new NetmomentsError(e.message, { file, code: e.code });
        throw e;
      }
      return { kind: 'dense', n, r: factored.rank, support, factor: factored.factor };
    }
  }
}

/** Row k (0 <= k < r) of F^T, i.e. F's column k, added into `out` (n values) times `scale`, its zeros skipped. */
export function addFactorColumn(f: NoiseFactor, k: number, out: Float64Array | Float32Array, scale = 1): void {
  if (f.kind === 'axes') {
    out[f.support[k]] += scale * f.sd[k];
    return;
  }
  const { support, factor, r } = f;
  for (let i = 0; i < support.length; i++) {
    const v = factor[i * r + k];
    if (v !== 0) out[support[i]] += scale * v;
  }
}

/** The factor F (n x r) given as the r rows of F^T, n values each (the noise's directions), held dense on all n elements. */
export function factorFromRows(rows: Float64Array, r: number, n: number): NoiseFactor {
  if (rows.length !== r * n) throw new Error(`factorFromRows: ${rows.length} values for r = ${r}, n = ${n}`);
  const F = new Float64Array(n * r);
  for (let k = 0; k < r; k++) for (let i = 0; i < n; i++) F[i * r + k] = rows[k * n + i];
  return { kind: 'dense', n, r, support: Int32Array.from({ length: n }, (_, i) => i), factor: F };
}

export interface CovarianceFactor {
  /** n x rank row-major, Sigma = F F^T up to the dropped eigenvalues. */
  factor: Float64Array;
  rank: number;
  /** All eigenvalues, descending. */
  eigenvalues: Float64Array;
}

/**
 * Eigen-factor of a symmetric PSD matrix: F = V diag(sqrt(lambda)) over eigenvalues above
 * tol = relTol * max|lambda|. Throws NetmomentsError, naming the most negative eigenvalue, when
 * some eigenvalue is below -tol (the matrix is not positive semi-definite).
 * Source: symmetric eigendecomposition (Householder tridiagonalization + QL, ml-matrix).
 */
export function covarianceFactor(cov: Float64Array, n: number, relTol = 1e-9, what = 'the noise covariance'): CovarianceFactor {
  if (cov.length !== n * n) throw new NetmomentsError(`${what} has ${cov.length} values, a ${n}x${n} matrix is needed`);
  if (n === 0) return { factor: new Float64Array(0), rank: 0, eigenvalues: new Float64Array(0) };
  // The decomposition squares entries: beyond ~1e150 it overflows to NaN and ml-matrix's QL
  // iteration then fails with a TypeError instead of an answer.
  let largest = 0;
  for (let i = 0; i < cov.length; i++) largest = Math.max(largest, Math.abs(cov[i]));
  if (!(largest <= 1e150)) {
    throw new NetmomentsError(
      `${what} holds ${Number.isNaN(largest) ? 'NaN' : largest.toPrecision(3)}, ${Number.isFinite(largest) ? 'too large to factor in float64' : 'a non-finite value'}`,
    );
  }
  const rows: number[][] = [];
  for (let i = 0; i < n; i++) {
    const r = new Array<number>(n);
    for (let j = 0; j < n; j++) r[j] = 0.5 * (cov[i * n + j] + cov[j * n + i]);
    rows.push(r);
  }
  const eig = new EigenvalueDecomposition(new MlMatrix(rows), { assumeSymmetric: true });
  const lam = eig.realEigenvalues;
  const V = eig.eigenvectorMatrix;
  const order = lam.map((_, i) => i).sort((x, y) => lam[y] - lam[x]);
  let maxAbs = 0;
  for (const l of lam) maxAbs = Math.max(maxAbs, Math.abs(l));
  const tol = relTol * maxAbs;
  const minLam = lam[order[n - 1]];
  if (minLam < -tol) {
    throw new NetmomentsError(
      `${what} is not positive semi-definite: its most negative eigenvalue is ${minLam.toPrecision(6)} ` +
        `(largest ${lam[order[0]].toPrecision(6)}; eigenvalues down to -${tol.toPrecision(3)} are accepted as rounding)`,
    );
  }
  const keep = order.filter((i) => lam[i] > tol);
  const rank = keep.length;
  const factor = new Float64Array(n * rank);
  for (let t = 0; t < rank; t++) {
    const sq = Math.sqrt(lam[keep[t]]);
    for (let i = 0; i < n; i++) factor[i * rank + t] = V.get(i, keep[t]) * sq;
  }
  return { factor, rank, eigenvalues: Float64Array.from(order, (i) => lam[i]) };
}
