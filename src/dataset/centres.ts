/**
 * Bank centres during a run: the per-centre quantities (A_c F, the Gram terms of
 * src/linearize/bankMoments.ts) formed once per centre and kept while memory allows, and the
 * assignment of each input to its nearest centre.
 */
import type { Analyzer } from '../analyze.js';
import type { Bank, BankCentre } from '../linearize/bank.js';
import { centreGram, type CentreGram } from '../linearize/bankMoments.js';
import { topOffset } from '../linearize/linearizer.js';
import { rowDots, type LinearAlgebra } from '../moments/linalg.js';

/** Per-centre quantities for one noise (formed once, kept while memory allows). */
interface CentreWork {
  /** The bank's centre: A (p x n) and D (d x n) stay float32 and are widened inside the products. */
  c: BankCentre;
  /** s, B, zb, c2 and (variance with p <= r) S, P, Q: src/linearize/bankMoments.ts. */
  gram: CentreGram;
  /** A F and D F, kept when the engine runs on them (variance with p > r). */
  AF?: Float64Array;
  DF?: Float64Array;
  gb: Float64Array;
  bytes: number;
}

/** The centres' per-noise quantities, least recently used dropped first once they pass `budget` bytes. */
export class CentreCache {
  private readonly map = new Map<number, CentreWork>();
  private bytes = 0;
  constructor(
    private readonly bank: Bank,
    private readonly F: Float64Array,
    private readonly r: number,
    private readonly n: number,
    private readonly p: number,
    private readonly d: number,
    private readonly la: LinearAlgebra,
    private readonly budget: number,
    /** 'mean': means only; 'gram': S per centre; 'engine': A F for the moments engine. */
    readonly mode: 'mean' | 'gram' | 'engine',
    private readonly sparse?: { support: Int32Array; sd: Float64Array },
  ) {}

  /**
   * X F (rows x r) for X (rows x n): with isotropic or diagonal noise F^T has one nonzero per row
   * (sd_k at support[k]), so X F is X's support columns scaled (no product); else one gemm.
   */
  private async project(X: Float32Array, rows: number): Promise<Float64Array> {
    const { n, r, F } = this;
    if (this.sparse) {
      const { support, sd } = this.sparse;
      const out = new Float64Array(rows * r);
      for (let u = 0; u < rows; u++) {
        const o = u * n;
        const q = u * r;
        for (let k = 0; k < r; k++) out[q + k] = X[o + support[k]] * sd[k];
      }
      return out;
    }
    return this.la.gemm(X, rows, n, F, r, n, { transB: true });
  }

  async get(i: number): Promise<CentreWork> {
    const hit = this.map.get(i);
    if (hit) {
      this.map.delete(i);
      this.map.set(i, hit);
      return hit;
    }
    const { p, d, r } = this;
    const c = this.bank.centre(i);
    const B = new Float64Array(c.B);
    const zb = new Float64Array(c.zb);
    const gb = new Float64Array(c.gb);
    let gram: CentreGram;
    let AF: Float64Array | undefined;
    let DF: Float64Array | undefined;
    if (this.mode === 'mean' && this.sparse) {
      // means only need s_v = |(A F)_v|: with one nonzero per row of F^T, no product is formed
      gram = { p, d, s: new Float64Array(p), B, zb, c2: topOffset(B, zb, gb, p, d) };
      const { support, sd } = this.sparse;
      const n = this.n;
      const A = c.A;
      if (r === n && sd.every((x) => x === sd[0])) {
        // isotropic noise on every element: s_v = sigma |A_v|
        const norms2 = rowDots(A, A, p, n);
        for (let v = 0; v < p; v++) gram.s[v] = sd[0] * Math.sqrt(norms2[v]);
      } else {
        const sd2 = Float64Array.from(sd, (x) => x * x);
        for (let v = 0; v < p; v++) {
          let t = 0;
          const o = v * n;
          for (let k = 0; k < r; k++) {
            const x = A[o + support[k]];
            t += x * x * sd2[k];
          }
          gram.s[v] = Math.sqrt(t);
        }
      }
    } else {
      AF = await this.project(c.A, p);
      DF = c.D ? await this.project(c.D, d) : undefined;
      gram = await centreGram(this.la, AF, DF, B, zb, gb, p, d, r, this.mode === 'gram');
    }
    const keep = this.mode === 'engine';
    const w: CentreWork = { c, gram, gb, AF: keep ? AF : undefined, DF: keep ? DF : undefined, bytes: 0 };
    w.bytes = 4 * (c.A.length + (c.D?.length ?? 0)) + 8 * ((gram.S?.length ?? 0) + B.length + (keep && AF ? AF.length + (DF?.length ?? 0) : 0));
    this.map.set(i, w);
    this.bytes += w.bytes;
    while (this.bytes > this.budget && this.map.size > 1) {
      const [k, v] = this.map.entries().next().value as [number, CentreWork];
      this.map.delete(k);
      this.bytes -= v.bytes;
    }
    return w;
  }
}

/** The support and standard deviations of isotropic or diagonal noise (F^T has one nonzero per row), else undefined. */
export function sparseDirections(analyzer: Analyzer): { support: Int32Array; sd: Float64Array } | undefined {
  const { noise } = analyzer;
  if (noise.sigma.kind === 'full') return undefined;
  const { F, r } = analyzer.directions;
  const n = analyzer.linearizer.n;
  const support = noise.support;
  if (support.length !== r) return undefined;
  return { support, sd: Float64Array.from(support, (j, k) => F[k * n + j]) };
}

/**
 * Nearest centre by |x - c|^2 = |x|^2 - 2 x.c + |c|^2 with the x.c of a chunk in one product
 * (ties to the lower index). Float64 throughout: for inputs of norm ~1e4 the rounding is ~1e-8,
 * far below any gap between two centres' distances that matters.
 */
export function centreAssigner(bank: Bank, n: number, la: LinearAlgebra): (mus: Float64Array[]) => Promise<Int32Array> {
  const k = bank.k;
  const C = new Float64Array(bank.centres);
  const cc = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let t = 0;
    for (let j = 0; j < n; j++) t += C[c * n + j] * C[c * n + j];
    cc[c] = t;
  }
  return async (mus) => {
    const m = mus.length;
    const X = new Float64Array(m * n);
    mus.forEach((mu, t) => X.set(mu, t * n));
    const XC = await la.gemm(X, m, n, C, k, n, { transB: true });
    const out = new Int32Array(m);
    for (let t = 0; t < m; t++) {
      let best = 0;
      let bd = Infinity;
      for (let c = 0; c < k; c++) {
        const v = cc[c] - 2 * XC[t * k + c];
        if (v < bd) {
          bd = v;
          best = c;
        }
      }
      out[t] = best;
    }
    return out;
  };
}
