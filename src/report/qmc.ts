/**
 * Class probabilities for many inputs with one shared point set. The moments engine's
 * classProbabilities (src/moments/classprob.ts) draws a fresh randomized-QMC set per call, which
 * costs ~0.1 s per input at 65k points; a dataset report needs thousands of inputs per second.
 *
 * Here the standard normal points are made once per run: K independent Cranley-Patterson shifts
 * of one Halton set of N points (Halton 1960, prime bases; Owen, "Monte Carlo theory, methods and
 * examples", ch. 17), mapped through Phi^{-1}. For an input with output y ~ N(mean, cov),
 * y = mean + L e with L the pivoted-Cholesky factor of cov (columns in pivot order, so the best
 * Halton coordinates drive the largest variances, as in classprob.ts), and
 * P(argmax y = j) is the fraction of points whose argmax is j (ties to the first maximal index),
 * averaged over the shifts; the standard error is the spread across shifts / sqrt(K).
 *
 * The shift of Halton coordinate t comes from its own generator seeded by (seed, t), so the point
 * set depends only on (seed, N, K) and never on which inputs were seen before: every input of a
 * report, of a shard, or of a resumed run is estimated with the same points.
 */
import { NetmomentsError } from '../errors.js';
import { pivotedCholesky } from '../moments/classprob.js';
import { type LinearAlgebra, jsLinearAlgebra } from '../moments/linalg.js';
import { Rng } from '../moments/montecarlo.js';
import { PhiInv } from '../moments/special.js';

export interface SharedProbabilities {
  probabilities: Float64Array;
  /** Largest standard error across classes. */
  stdErr: number;
  /** P(argmax != trueClass). */
  flip: number;
  /** Its standard error. */
  flipStdErr: number;
}

function primes(k: number): number[] {
  const out: number[] = [];
  for (let x = 2; out.length < k; x++) if (out.every((p) => p * p > x || x % p !== 0)) out.push(x);
  return out;
}

function radicalInverse(i: number, b: number): number {
  let f = 1 / b;
  let r = 0;
  while (i > 0) {
    r += f * (i % b);
    i = Math.floor(i / b);
    f /= b;
  }
  return r;
}

export class SharedClassProbabilities {
  /** (K N) x d standard normal points, row-major. */
  private readonly E: Float64Array;
  readonly samples: number;

  /**
   * @param d outputs
   * @param total points in all (split into `shifts` shifts of total / shifts)
   */
  constructor(
    readonly d: number,
    total: number,
    readonly seed: number,
    readonly shifts = 8,
    private readonly la: LinearAlgebra = jsLinearAlgebra,
  ) {
    if (!(Number.isInteger(total) && total >= shifts * 16)) {
      throw new NetmomentsError(`the class-probability sample count must be a whole number >= ${shifts * 16}, got ${total}`, { code: 'BAD_USAGE' });
    }
    const N = Math.floor(total / shifts);
    this.samples = N * shifts;
    const rows = this.samples;
    const E = new Float64Array(rows * d);
    const bases = primes(d);
    const lo = 1 / 9007199254740992;
    for (let t = 0; t < d; t++) {
      const rng = new Rng(((seed >>> 0) * 1000003 + t * 7919 + 17) >>> 0);
      for (let k = 0; k < shifts; k++) {
        const shift = rng.nextDouble();
        for (let i = 0; i < N; i++) {
          let u = radicalInverse(i + 1, bases[t]) + shift;
          if (u >= 1) u -= 1;
          if (u < lo) u = lo;
          else if (u > 1 - lo) u = 1 - lo;
          E[(k * N + i) * d + t] = PhiInv(u);
        }
      }
    }
    this.E = E;
  }

  /** Class probabilities of N(mean, cov) (d x d) and the probability that argmax differs from trueClass. */
  async estimate(mean: Float64Array, cov: Float64Array, trueClass: number): Promise<SharedProbabilities> {
    const d = this.d;
    const K = this.shifts;
    const N = this.samples / K;
    const { L, rank } = pivotedCholesky(cov, d, 1e-12);
    const probabilities = new Float64Array(d);
    if (rank === 0) {
      let best = 0;
      for (let j = 1; j < d; j++) if (mean[j] > mean[best]) best = j;
      probabilities[best] = 1;
      return { probabilities, stdErr: 0, flip: best === trueClass ? 0 : 1, flipStdErr: 0 };
    }
    // L padded to d x d (columns beyond the rank are zero): Y = E Lp^T
    const Lp = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let t = 0; t < rank; t++) Lp[i * d + t] = L[i * rank + t];
    const Y = await this.la.gemm(this.E, this.samples, d, Lp, d, d, { transB: true });
    const per = new Float64Array(K * d);
    for (let k = 0; k < K; k++) {
      for (let i = 0; i < N; i++) {
        const o = (k * N + i) * d;
        let best = 0;
        let bv = Y[o] + mean[0];
        for (let j = 1; j < d; j++) {
          const v = Y[o + j] + mean[j];
          if (v > bv) {
            bv = v;
            best = j;
          }
        }
        per[k * d + best] += 1;
      }
    }
    let stdErr = 0;
    let flipStdErr = 0;
    for (let j = 0; j < d; j++) {
      let m = 0;
      for (let k = 0; k < K; k++) m += per[k * d + j] / N;
      m /= K;
      let v = 0;
      for (let k = 0; k < K; k++) v += (per[k * d + j] / N - m) ** 2;
      const se = Math.sqrt(v / (K - 1) / K);
      probabilities[j] = m;
      stdErr = Math.max(stdErr, se);
      if (j === trueClass) flipStdErr = se;
    }
    return { probabilities, stdErr, flip: Math.max(0, 1 - probabilities[trueClass]), flipStdErr };
  }
}
