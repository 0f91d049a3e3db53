/**
 * Input noise x ~ N(mu, Sigma) as the user states it, validated and reduced to the input
 * elements it touches.
 *
 * Sigma forms (all in the layout rule's flattening, n input elements):
 *   isotropic sigma      Sigma = sigma^2 I
 *   diagonal             Sigma = diag(v)          (--noise-var, n values >= 0)
 *   full                 Sigma = C                (--noise-cov, n x n symmetric PSD)
 * A window R,C,H,W keeps the noise only on the elements whose row falls in [R, R+H) and column in
 * [C, C+W), all channels included; rows and columns are the image axes of data/layout.ts's image
 * layout rule (the last two axes of [C, H, W], the two before the last of [H, W, C]).
 *
 * `support` lists the input elements with nonzero variance. Only those columns of the Jacobian A
 * (and D) enter A Sigma A^T, so the linearizer computes only those columns: a 7x7 window on MNIST
 * needs 49 JVP columns instead of 784.
 */
import { NetmomentsError } from './errors.js';
import { describeGeometry, requireImageGeometry, type LayoutChoice } from './data/layout.js';

export type NoiseSpec = { kind: 'isotropic'; sigma: number } | { kind: 'diagonal'; variance: Float64Array } | { kind: 'full'; cov: Float64Array };

export interface InputWindow {
  row: number;
  col: number;
  height: number;
  width: number;
}

/** The noise restricted to its support: Sigma_full = P^T Sigma_W P with P selecting `support`. */
export interface ReducedNoise {
  /** Number of input elements n. */
  n: number;
  /** Sorted input indices with nonzero variance (length r). */
  support: Int32Array;
  /** Sigma on the support: isotropic (sigma), diagonal (r variances) or full (r x r). */
  sigma: { kind: 'isotropic'; sigma: number } | { kind: 'diagonal'; variance: Float64Array } | { kind: 'full'; cov: Float64Array };
  /** Largest marginal standard deviation (for messages and step sizes). */
  maxStd: number;
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
 * Validate a noise spec for n input elements and reduce it to its support (optionally intersected
 * with a window's elements).
 */
export function reduceNoise(spec: NoiseSpec, n: number, windowElements?: Int32Array, file?: string): ReducedNoise {
  const inWindow = windowElements ? new Uint8Array(n) : undefined;
  if (inWindow && windowElements) for (const i of windowElements) inWindow[i] = 1;
  const keep = (i: number) => (inWindow ? inWindow[i] === 1 : true);

  if (spec.kind === 'isotropic') {
    if (!Number.isFinite(spec.sigma) || spec.sigma < 0) {
      throw new NetmomentsError(`--sigma must be a finite number >= 0, got ${spec.sigma}`, { code: 'BAD_USAGE' });
    }
    const support = windowElements ? Int32Array.from([...windowElements].sort((a, b) => a - b)) : Int32Array.from({ length: n }, (_, i) => i);
    return { n, support: spec.sigma === 0 ? new Int32Array(0) : support, sigma: { kind: 'isotropic', sigma: spec.sigma }, maxStd: spec.sigma };
  }

  if (spec.kind === 'diagonal') {
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

  // full covariance
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
