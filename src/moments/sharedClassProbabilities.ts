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
 * report, of a shard, or of a resumed run is estimated with the same points. The Halton
 * coordinates and the averaging over shifts are classprob.ts's (shiftedHaltonNormal,
 * shiftAverages); only this seeding differs, so for the same input a report's probabilities and
 * analyze's are two estimates of the same numbers, within their standard errors.
 */
import { NetmomentsError } from '../errors.js';
import { firstPrimes, pivotedCholesky, shiftAverages, shiftedHaltonNormal } from './classprob.js';
import { type LinearAlgebra, jsLinearAlgebra } from './linalg.js';
import { Rng } from './montecarlo.js';
import { argmax } from '../util/argmax.js';

export interface SharedProbabilities {
  probabilities: Float64Array;
  /** Largest standard error across classes. */
  stdErr: number;
  /** P(argmax != trueClass). */
  flip: number;
  /** Its standard error. */
  flipStdErr: number;
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
    const bases = firstPrimes(d);
    for (let t = 0; t < d; t++) {
      const rng = new Rng(((seed >>> 0) * 1000003 + t * 7919 + 17) >>> 0);
      for (let k = 0; k < shifts; k++) {
        const shift = rng.nextDouble();
        for (let i = 0; i < N; i++) E[(k * N + i) * d + t] = shiftedHaltonNormal(i + 1, bases[t], shift);
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
      const best = argmax(mean, 0, d);
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
    for (let k = 0; k < K * d; k++) per[k] /= N;
    const avg = shiftAverages(per, K, d);
    let stdErr = 0;
    for (let j = 0; j < d; j++) stdErr = Math.max(stdErr, avg.stdErr[j]);
    return { probabilities: avg.mean, stdErr, flip: Math.max(0, 1 - avg.mean[trueClass]), flipStdErr: avg.stdErr[trueClass] };
  }
}
