/**
 * The surrogate of a split network and the one entry point to its moments.
 *
 * Two-stage linearization at a point xb (docs/ARCHITECTURE.md, section 3) gives
 *
 *   g(x) = B relu(A x + c1) + D x + c2,     A: p x n, B: d x p, D: d x n (tensors that skip the cut),
 *
 * held as its expansion at xb, zb = A xb + c1 = bottom(xb) and gb = B relu(zb) + D xb + c2 = top(yb),
 * so that for an input mean mu, with delta = mu - xb,
 *
 *   m = E[A x + c1] = zb + A delta,     c = gb - B relu(zb) + D delta     (topOffset + D delta)
 *
 * and no large term (A mu against c1) ever cancels. `Surrogate` is that one type; its views:
 *   - a bank centre (src/linearize/bank.ts BankCentre) is a float32 Surrogate plus its index and point;
 *   - the plain matrices c1 = zb - A xb, c2 = gb - B relu(zb) - D xb (AffineSurrogate, `netmoments
 *     linearize`) are a Surrogate plus c1, c2 (surrogateOffsets);
 *   - the factored form: A and D projected on a noise factor F (Sigma = F F^T, src/noise.ts), i.e. A F
 *     (p x r) and D F (d x r), is a Surrogate whose columns are the noise's own coordinates
 *     x = mu + F e, e ~ N(0, I_r) (the linearizer computes it by JVPs along F's columns:
 *     PointLinearization); projectSurrogate forms it from a plain Surrogate;
 *   - the moments engine's ShallowNetwork (src/moments/network.ts) is a Surrogate about mu
 *     (surrogateNetwork).
 *
 * surrogateMoments(surrogate, noise, options) is the entry point: with a Noise the surrogate's
 * columns are the n input elements and the engine forms A Sigma A^T from its noise factors; with
 * the NoiseFactor the surrogate was projected on, Sigma in its columns is I_r. The Gram form of a
 * bank centre (S = (A F)(A F)^T held whole, src/linearize/bankMoments.ts) goes through the same core
 * (momentsFromForm) with S in place of the factors.
 */
import { NetmomentsError } from '../errors.js';
import type { Noise, NoiseFactor } from '../noise.js';
import { type LinearAlgebra, jsLinearAlgebra } from './linalg.js';
import { type MomentsOptions, type NetworkMoments, type ShallowNetwork, networkMoments, standardMoments } from './network.js';

/**
 * g(x) = B relu(A x + c1) + D x + c2 as its expansion at the linearization point (file comment).
 * Columns of A and D: the n input elements, or in the factored form the r coordinates of a noise factor.
 */
export interface Surrogate<T extends Float32Array | Float64Array = Float64Array> {
  /** A (p x columns, row-major). */
  A: T;
  /** B (d x p). */
  B: T;
  /** D (d x columns) when tensors skip the cut. */
  D?: T;
  /** zb = bottom(xb) (p). */
  zb: T;
  /** gb = top(relu(zb)), the model output at the point (d). */
  gb: T;
}

/** The input mean's offset from the linearization point, through the surrogate: A delta (p) and D delta (d). */
export interface SurrogateOffset {
  A?: Float64Array;
  D?: Float64Array;
}

/**
 * top(yb) - B yb with yb = relu(zb) (d): the surrogate's output offset before the skip path
 * (c2 = this - D xb), kept apart from D xb so that the large terms never cancel.
 */
export function topOffset(B: ArrayLike<number>, zb: ArrayLike<number>, gb: ArrayLike<number>, p: number, d: number): Float64Array {
  const out = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    let sum = 0;
    for (let u = 0; u < p; u++) sum += B[i * p + u] * (zb[u] > 0 ? zb[u] : 0);
    out[i] = gb[i] - sum;
  }
  return out;
}

/** The plain offsets c1 = zb - A xb (p) and c2 = gb - B relu(zb) - D xb (d) of a surrogate over the n inputs, xb the point. */
export function surrogateOffsets(s: Surrogate, point: ArrayLike<number>): { c1: Float64Array; c2: Float64Array } {
  const n = point.length;
  const p = s.zb.length;
  const d = s.gb.length;
  const c1 = new Float64Array(p);
  for (let u = 0; u < p; u++) {
    let t = 0;
    for (let i = 0; i < n; i++) t += s.A[u * n + i] * point[i];
    c1[u] = s.zb[u] - t;
  }
  const offset = topOffset(s.B, s.zb, s.gb, p, d);
  const c2 = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    let t = 0;
    if (s.D) for (let j = 0; j < n; j++) t += s.D[i * n + j] * point[j];
    c2[i] = offset[i] - t;
  }
  return { c1, c2 };
}

/** Sizes [p, d, columns] of a surrogate, checked. */
export function surrogateSizes(s: Surrogate<Float32Array | Float64Array>): [number, number, number] {
  const p = s.zb.length;
  const d = s.gb.length;
  const cols = p > 0 ? s.A.length / p : 0;
  if (!Number.isInteger(cols)) throw new NetmomentsError(`the surrogate's A has ${s.A.length} values, not a multiple of its ${p} units`);
  if (s.B.length !== d * p) throw new NetmomentsError(`the surrogate's B has ${s.B.length} values, ${d}x${p} expected`);
  if (s.D && s.D.length !== d * cols) throw new NetmomentsError(`the surrogate's D has ${s.D.length} values, ${d}x${cols} expected`);
  return [p, d, cols];
}

const f64 = (a: Float32Array | Float64Array): Float64Array => (a instanceof Float64Array ? a : Float64Array.from(a));

/**
 * The engine's network for a surrogate about the input mean (file comment): m = zb + A delta,
 * c2 = topOffset + D delta; the skip path's mean is in c2, so `mu` is the zero vector.
 */
export function surrogateNetwork(s: Surrogate<Float32Array | Float64Array>, offset: SurrogateOffset = {}): ShallowNetwork {
  const [p, d, cols] = surrogateSizes(s);
  const m = Float64Array.from(s.zb, (v, u) => v + (offset.A ? offset.A[u] : 0));
  const c2 = topOffset(s.B, s.zb, s.gb, p, d);
  if (offset.D) for (let i = 0; i < d; i++) c2[i] += offset.D[i];
  return {
    A: { data: f64(s.A), rows: p, cols },
    B: { data: f64(s.B), rows: d, cols: p },
    D: s.D ? { data: f64(s.D), rows: d, cols } : undefined,
    m,
    c2,
    mu: s.D ? new Float64Array(cols) : undefined,
  };
}

function isFactor(noise: Noise | NoiseFactor): noise is NoiseFactor {
  return (noise as NoiseFactor).r !== undefined;
}

/**
 * A surrogate over the n inputs projected on a noise factor: A F (p x r) and D F (d x r), the
 * factored form (file comment). Isotropic and diagonal factors pick and scale A's columns.
 */
export async function projectSurrogate(
  s: Surrogate<Float32Array | Float64Array>,
  factor: NoiseFactor,
  linalg: LinearAlgebra = jsLinearAlgebra,
): Promise<Surrogate> {
  const [p, d, n] = surrogateSizes(s);
  if (n !== factor.n) throw new NetmomentsError(`the surrogate has ${n} input columns, the noise is for ${factor.n}`);
  const project = async (X: Float32Array | Float64Array, rows: number): Promise<Float64Array> => {
    const { r, support } = factor;
    if (factor.kind === 'axes') {
      const out = new Float64Array(rows * r);
      for (let u = 0; u < rows; u++) for (let k = 0; k < r; k++) out[u * r + k] = X[u * n + support[k]] * factor.sd[k];
      return out;
    }
    const q = support.length;
    const Xs = new Float64Array(rows * q);
    for (let u = 0; u < rows; u++) for (let k = 0; k < q; k++) Xs[u * q + k] = X[u * n + support[k]];
    return linalg.gemm(Xs, rows, q, factor.factor, q, r);
  };
  return { A: await project(s.A, p), B: f64(s.B), D: s.D ? await project(s.D, d) : undefined, zb: f64(s.zb), gb: f64(s.gb) };
}

export interface SurrogateMomentsOptions extends MomentsOptions {
  /** The input mean's offset from the linearization point (absent: mu = xb). */
  offset?: SurrogateOffset;
}

/**
 * The moments of a surrogate at the input mean mu = xb + delta (`options.offset`: A delta, D delta):
 * mean (the paper's Theorem 1), exact variance and covariance, and the paper's variance, as
 * src/moments/network.ts computes them. `noise` is the Noise over the surrogate's n input columns,
 * or the NoiseFactor the surrogate is projected on (its r columns are then the noise's coordinates,
 * Sigma = I_r in them).
 */
export async function surrogateMoments(
  s: Surrogate<Float32Array | Float64Array>,
  noise: Noise | NoiseFactor,
  options: SurrogateMomentsOptions = {},
): Promise<NetworkMoments> {
  const net = surrogateNetwork(s, options.offset);
  if (isFactor(noise)) {
    if (net.A.cols !== noise.r) throw new NetmomentsError(`the surrogate has ${net.A.cols} columns, the noise factor ${noise.r}`);
    return standardMoments(net, options);
  }
  return networkMoments(net, noise, options);
}

/**
 * surrogateMoments for a surrogate whose columns are the coordinates of some noise factor (e ~
 * N(0, I_columns)), for callers that hold the projection but not the factor.
 */
export function projectedMoments(s: Surrogate<Float32Array | Float64Array>, options: SurrogateMomentsOptions = {}): Promise<NetworkMoments> {
  return standardMoments(surrogateNetwork(s, options.offset), options);
}
