/**
 * What the paper's experiments (tightness, sensitivity, fooling, attacks) share: the surrogate of
 * a model at one point kept in the input's own coordinates, its restriction to a subset of input
 * elements (a noise window, the attacked pixels), small statistics, and Monte Carlo
 * through the real model for a low-rank noise factor with the sample products on the LinearAlgebra.
 *
 * Surrogate at a point xb (docs/ARCHITECTURE.md, section 3): g(x) ~ B relu(zb + A (x - xb)) + D (x - xb) + c2',
 * c2' = g(xb) - B relu(zb). Every network handed to the moments engine is written in the offset
 * delta = mu - xb (m = zb + A delta, the skip mean D delta), never through c1 = zb - A xb, so that
 * nothing cancels at pixel scale.
 */
import type { ImageGeometry } from '../data/layout.js';
import { channelAffine, type Preprocessing } from '../data/preprocess.js';
import { NetmomentsError } from '../errors.js';
import type { Linearizer } from '../linearize/linearizer.js';
import type { ShallowNetwork } from '../moments/network.js';
import { topOffset, type Surrogate } from '../moments/surrogate.js';
import { type LinearAlgebra, jsLinearAlgebra } from '../moments/linalg.js';
import { MomentAccumulator, Rng, type MonteCarloResult } from '../moments/montecarlo.js';

/** The two-stage surrogate at one point over all n input columns (src/moments/surrogate.ts), with its sizes and top offset. */
export interface PointSurrogate extends Surrogate {
  n: number;
  p: number;
  d: number;
  /** The linearization point (float32, as the model sees it). */
  point: Float32Array;
  /** g(xb) - B relu(zb) (d): topOffset. */
  c2: Float64Array;
}

/** One Jacobian per point: A, B (and D) with identity directions through the linearizer. */
export async function pointSurrogate(lin: Linearizer, point: Float32Array): Promise<PointSurrogate> {
  const s = await lin.surrogate(point);
  const { n, p, d } = lin;
  return { n, p, d, point: Float32Array.from(point), A: s.A, zb: s.zb, B: s.B, c2: topOffset(s.B, s.zb, s.gb, p, d), D: s.D, gb: s.gb };
}

/** Columns `cols` of a rows x n row-major matrix: rows x |cols|. */
export function selectColumns(M: Float64Array, rows: number, n: number, cols: Int32Array): Float64Array {
  const q = cols.length;
  const out = new Float64Array(rows * q);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    const t = r * q;
    for (let k = 0; k < q; k++) out[t + k] = M[o + cols[k]];
  }
  return out;
}

/**
 * The surrogate restricted to the input elements `cols` (a window, the attacked pixels): the noise
 * and the mean offset live on those elements only, x = xb + P^T (delta + e), e ~ N(0, Sigma_S).
 * A_S = A P^T (p x |S|), D_S likewise; `As`/`Ds` may be passed when already sliced.
 */
export class RestrictedSurrogate {
  readonly q: number;
  readonly As: Float64Array;
  readonly Ds?: Float64Array;

  constructor(
    readonly s: PointSurrogate,
    readonly cols: Int32Array,
    sliced?: { As: Float64Array; Ds?: Float64Array },
  ) {
    this.q = cols.length;
    this.As = sliced?.As ?? selectColumns(s.A, s.p, s.n, cols);
    this.Ds = s.D ? (sliced?.Ds ?? selectColumns(s.D, s.d, s.n, cols)) : undefined;
  }

  /** The restriction as a Surrogate whose columns are the elements `cols` (A_S, D_S), for surrogateMoments. */
  get surrogate(): Surrogate {
    return { A: this.As, B: this.s.B, D: this.Ds, zb: this.s.zb, gb: this.s.gb };
  }

  /** The moments engine's network for the offset delta (|S| values) from the point. */
  network(delta?: Float64Array): ShallowNetwork {
    const { p, d } = this.s;
    const q = this.q;
    const m = Float64Array.from(this.s.zb);
    if (delta) {
      if (delta.length !== q) throw new Error(`RestrictedSurrogate.network: ${delta.length} offsets for ${q} columns`);
      for (let u = 0; u < p; u++) {
        let t = 0;
        const o = u * q;
        for (let k = 0; k < q; k++) t += this.As[o + k] * delta[k];
        m[u] += t;
      }
    }
    return {
      A: { data: this.As, rows: p, cols: q },
      B: { data: this.s.B, rows: d, cols: p },
      D: this.Ds ? { data: this.Ds, rows: d, cols: q } : undefined,
      m,
      c2: this.s.c2,
      mu: this.Ds ? (delta ? Float64Array.from(delta) : new Float64Array(q)) : undefined,
    };
  }
}

/** All n indices 0..n-1. */
export function allIndices(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

export interface MeanStd {
  mean: number;
  std: number;
  /** Values that entered (non-finite ones are left out and counted in `dropped`). */
  count: number;
  dropped: number;
}

/** Mean and sample standard deviation of the finite values. */
export function meanStd(values: ArrayLike<number>): MeanStd {
  let s = 0;
  let c = 0;
  for (let i = 0; i < values.length; i++)
    if (Number.isFinite(values[i])) {
      s += values[i];
      c++;
    }
  const mean = c > 0 ? s / c : Number.NaN;
  let v = 0;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) v += (values[i] - mean) ** 2;
  return { mean, std: c > 1 ? Math.sqrt(v / (c - 1)) : 0, count: c, dropped: values.length - c };
}

export interface OriginFit {
  /** Least-squares slope of y = slope * x (through the origin): sum(x y) / sum(x^2). */
  slope: number;
  /** 1 - SS_res / SS_tot with SS_tot about the mean of y (can be negative). */
  r2: number;
  /** 1 - SS_res / sum(y^2): the usual R^2 of a fit through the origin. */
  r2Uncentered: number;
  points: number;
}

/** Fit y = slope * x through the origin (Figure 2 of the paper: y = Monte Carlo, x = analytic). */
export function fitThroughOrigin(x: ArrayLike<number>, y: ArrayLike<number>): OriginFit {
  if (x.length !== y.length) throw new Error('fitThroughOrigin: x and y differ in length');
  let sxy = 0,
    sxx = 0,
    sy = 0,
    syy = 0,
    c = 0;
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]) || !Number.isFinite(y[i])) continue;
    sxy += x[i] * y[i];
    sxx += x[i] * x[i];
    sy += y[i];
    syy += y[i] * y[i];
    c++;
  }
  const slope = sxx > 0 ? sxy / sxx : Number.NaN;
  let ssr = 0;
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i]) && Number.isFinite(y[i])) ssr += (y[i] - slope * x[i]) ** 2;
  const ybar = c > 0 ? sy / c : 0;
  const sst = syy - c * ybar * ybar;
  return {
    slope,
    r2: sst > 0 ? 1 - ssr / sst : ssr === 0 ? 1 : Number.NaN,
    r2Uncentered: syy > 0 ? 1 - ssr / syy : Number.NaN,
    points: c,
  };
}

/** JSON-safe number: non-finite values become null (documented per field where they can occur). */
export function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

/**
 * Monte Carlo through the real model for x = mu + F e, e ~ N(0, I_r), F^T given as r x n rows
 * (`Ft`); the products e F^T run on the LinearAlgebra (onnxruntime's float64 Gemm), so a full-rank
 * factor of a 400-pixel input costs one Gemm per batch rather than a JavaScript triple loop.
 */
export async function monteCarloFactor(
  evaluate: (xs: Float32Array, count: number) => Promise<Float64Array>,
  d: number,
  mu: Float64Array,
  Ft: Float64Array,
  r: number,
  options: { samples: number; seed: number; batchSize?: number; linalg?: LinearAlgebra },
): Promise<MonteCarloResult> {
  const n = mu.length;
  if (Ft.length !== r * n) throw new Error(`monteCarloFactor: ${Ft.length} factor values for r = ${r}, n = ${n}`);
  const total = options.samples;
  if (!(Number.isInteger(total) && total >= 2))
    throw new NetmomentsError(`the number of Monte Carlo samples must be an integer >= 2, got ${total}`, { code: 'BAD_USAGE' });
  const la = options.linalg ?? jsLinearAlgebra;
  const bs = options.batchSize ?? 1000;
  const rng = new Rng(options.seed);
  const acc = new MomentAccumulator(d);
  for (let done = 0; done < total;) {
    const b = Math.min(bs, total - done);
    const eps = new Float64Array(b * r);
    rng.fillNormal(eps);
    const X = r > 0 ? await la.gemm(eps, b, r, Ft, r, n) : new Float64Array(b * n);
    const xs = new Float32Array(b * n);
    for (let k = 0; k < b; k++) for (let i = 0; i < n; i++) xs[k * n + i] = mu[i] + X[k * n + i];
    acc.addBatch(await evaluate(xs, b), b);
    done += b;
  }
  return acc.result();
}

/**
 * Pixels (0..255, clipped and rounded) of an image given in model units: the inverse of the input
 * preprocessing (data/preprocess.ts, model = (x - mean[c]) / std[c] * scale + offset with
 * x = pixel/255), applied per channel c:
 *
 *   pixel = 255 * (((v - offset) / scale) * std[c] + mean[c])
 *
 * i.e. x = (v - b[c]) / a[c] with channelAffine's a, b. The channel of each value is read from the
 * image geometry (channels-first or channels-last); one mean or std value applies to every channel.
 */
export function toPixels(values: ArrayLike<number>, p: Preprocessing, g: ImageGeometry): Uint8Array {
  const { a, b } = channelAffine(p, g.channels);
  const out = new Uint8Array(values.length);
  const hw = g.height * g.width;
  for (let i = 0; i < values.length; i++) {
    const c = g.layout === 'chw' ? Math.floor(i / hw) % g.channels : i % g.channels;
    const t = ((values[i] - b[c]) / a[c]) * 255;
    out[i] = t <= 0 ? 0 : t >= 255 ? 255 : Math.round(t);
  }
  return out;
}

/**
 * Parse "a,b,c" into finite numbers (--mean, --std, --max-var, sweep's --sigma list); an empty
 * item ("1,,2", a trailing comma) is refused, not skipped. `expects` says what the option takes in
 * the error ("--sigma expects <expects>, got '...'").
 */
export function parseNumberList(text: string, what: string, expects = 'a comma-separated list of numbers'): number[] {
  const parts = String(text)
    .split(',')
    .map((s) => s.trim());
  const out = parts.map((p) => (p === '' ? Number.NaN : Number(p)));
  if (out.some((v) => !Number.isFinite(v))) {
    throw new NetmomentsError(`${what} expects ${expects}, got '${text}'`, { code: 'BAD_USAGE' });
  }
  return out;
}
