/**
 * Bank centres during a run: the per-centre quantities (the centre projected on the noise factor,
 * A_c F and D_c F, and the Gram terms of src/linearize/bankMoments.ts) formed once per centre and
 * kept while memory allows, and the assignment of each input to its nearest centre.
 */
import type { Bank, BankCentre } from '../linearize/bank.js';
import { surrogateGram, type CentreGram } from '../linearize/bankMoments.js';
import { rowDots, type LinearAlgebra } from '../moments/linalg.js';
import { projectSurrogate, topOffset, type Surrogate } from '../moments/surrogate.js';
import type { NoiseFactor } from '../noise.js';
import { argmax } from '../util/argmax.js';

/** Per-centre quantities for one noise (formed once, kept while memory allows). */
interface CentreWork {
  /** The bank's centre: A (p x n) and D (d x n) stay float32 and are widened inside the products. */
  c: BankCentre;
  /** s, B, zb, c2 and (variance with p <= r) S, P, Q: src/linearize/bankMoments.ts. */
  gram: CentreGram;
  /** The centre projected on the noise factor (A F, D F), kept when the engine runs on it (variance with p > r). */
  projected?: Surrogate;
  bytes: number;
}

/** The centres' per-noise quantities, least recently used dropped first once they pass `budget` bytes. */
export class CentreCache {
  private readonly map = new Map<number, CentreWork>();
  private bytes = 0;
  constructor(
    private readonly bank: Bank,
    /** The noise factor F (Sigma = F F^T) the centres are projected on: src/noise.ts noiseFactor. */
    private readonly factor: NoiseFactor,
    private readonly la: LinearAlgebra,
    private readonly budget: number,
    /** 'mean': means only; 'gram': S per centre; 'engine': A F for the moments engine. */
    readonly mode: 'mean' | 'gram' | 'engine',
  ) {}

  async get(i: number): Promise<CentreWork> {
    const hit = this.map.get(i);
    if (hit) {
      this.map.delete(i);
      this.map.set(i, hit);
      return hit;
    }
    const c = this.bank.centre(i);
    let gram: CentreGram;
    let projected: Surrogate | undefined;
    if (this.mode === 'mean' && this.factor.kind === 'axes') gram = meanScales(c, this.factor);
    else {
      projected = await projectSurrogate(c, this.factor, this.la);
      gram = await surrogateGram(this.la, projected, this.mode === 'gram');
    }
    const keep = this.mode === 'engine' ? projected : undefined;
    const w: CentreWork = { c, gram, projected: keep, bytes: 0 };
    w.bytes = 4 * (c.A.length + (c.D?.length ?? 0)) + 8 * ((gram.S?.length ?? 0) + gram.B.length + (keep ? keep.A.length + (keep.D?.length ?? 0) : 0));
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

/**
 * A centre's quantities for means only under isotropic or diagonal noise (F's column k is
 * sd_k e_{support_k}): s_v = |(A F)_v| = sqrt(sum_k A_{v, support_k}^2 sd_k^2), read from A's
 * support columns without forming A F; with the same sd on every element, s_v = sd |A_v|.
 */
function meanScales(c: BankCentre, factor: Extract<NoiseFactor, { kind: 'axes' }>): CentreGram {
  const p = c.zb.length;
  const d = c.gb.length;
  const B = new Float64Array(c.B);
  const zb = new Float64Array(c.zb);
  const gb = new Float64Array(c.gb);
  const s = new Float64Array(p);
  const { n, r, support, sd } = factor;
  const A = c.A;
  if (r === n && sd.every((x) => x === sd[0])) {
    const norms2 = rowDots(A, A, p, n);
    for (let v = 0; v < p; v++) s[v] = sd[0] * Math.sqrt(norms2[v]);
  } else {
    const sd2 = Float64Array.from(sd, (x) => x * x);
    for (let v = 0; v < p; v++) {
      let t = 0;
      const o = v * n;
      for (let k = 0; k < r; k++) {
        const x = A[o + support[k]];
        t += x * x * sd2[k];
      }
      s[v] = Math.sqrt(t);
    }
  }
  return { p, d, s, B, zb, c2: topOffset(B, zb, gb, p, d) };
}

/**
 * Nearest centre by |x - c|^2 = |x|^2 - 2 x.c + |c|^2 with the x.c of a chunk in one product
 * (ties to the lower index). Float64 throughout: for inputs of norm ~1e4 the rounding is ~1e-8,
 * far below any gap between two centres' distances that matters. With `classes` (one per input)
 * and `centreClass` (the model's class at each centre's point), an input only takes a centre of
 * its own class, and gets -1 when there is none.
 */
export function centreAssigner(
  bank: Bank,
  n: number,
  la: LinearAlgebra,
  centreClass?: Int32Array,
): (mus: Float64Array[], classes?: ArrayLike<number>) => Promise<Int32Array> {
  const k = bank.k;
  const C = new Float64Array(bank.centres);
  const cc = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let t = 0;
    for (let j = 0; j < n; j++) t += C[c * n + j] * C[c * n + j];
    cc[c] = t;
  }
  return async (mus, classes) => {
    const m = mus.length;
    const X = new Float64Array(m * n);
    mus.forEach((mu, t) => X.set(mu, t * n));
    const XC = await la.gemm(X, m, n, C, k, n, { transB: true });
    const out = new Int32Array(m);
    for (let t = 0; t < m; t++) {
      const only = classes && centreClass ? classes[t] : undefined;
      let best = only === undefined ? 0 : -1;
      let bd = Infinity;
      for (let c = 0; c < k; c++) {
        if (only !== undefined && centreClass![c] !== only) continue;
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

/** The model's class at each centre's linearization point: argmax of the centre's gb = g(point). */
export function centreClasses(bank: Bank): Int32Array {
  return Int32Array.from({ length: bank.k }, (_, c) => argmax(bank.centre(c).gb));
}
