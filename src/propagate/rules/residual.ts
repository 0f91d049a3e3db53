/** Residual rows before an affine segment (see ./index.ts, "Residual rows"). */
import type { Rng } from '../../moments/montecarlo.js';
import { extendFactor, scaleHermiteRows, type TensorMoments } from './factor.js';

/**
 * Residual rows (see the header): before an affine segment, each input's residual variance r is
 * also carried as R rows of random signs, row c holding s_ci sqrt(r_i / R) with s_ci = +-1
 * independent and fair, appended after the factor's rows (zeros in the inputs whose r is 0). Their
 * Gram matrix is diag(r) on the diagonal exactly and in expectation off it, so the segment's JVPs of
 * these rows carry L diag(r) L^T, off-diagonal terms included, which the variance model (the
 * diagonal (L o L) r alone) drops. `r` stays as it is: the variance model still computes the exact
 * diagonal, to which absorbResidualRows rescales the rows afterwards. Every input gets its own signs
 * (independent residuals: the cross terms vanish in expectation). Returns the inputs unchanged when
 * no input has a residual.
 */
export function appendResidualRows(ins: TensorMoments[], R: number, rng: Rng): TensorMoments[] {
  if (R <= 0 || !ins.some((x) => x.r.some((v) => v > 0))) return ins;
  return ins.map((x) => {
    const size = x.m.length;
    const rows = x.F.length / size;
    // a factor made with room for the rows (newFactor) gets them in place, else a copy
    let F = extendFactor(x.F, size, R);
    if (!F) {
      F = new Float32Array((rows + R) * size);
      F.set(x.F);
    }
    const amp = new Float64Array(size);
    for (let i = 0; i < size; i++) amp[i] = Math.sqrt(x.r[i] / R);
    // the signs are the bits of 32-bit draws, 32 to a draw
    let bits = 0;
    let left = 0;
    for (let c = 0; c < R; c++) {
      const o = (rows + c) * size;
      for (let i = 0; i < size; i++) {
        if (amp[i] === 0) {
          F[o + i] = 0;
          continue;
        }
        if (left === 0) {
          bits = rng.nextUint32();
          left = 32;
        }
        F[o + i] = bits & 1 ? amp[i] : -amp[i];
        bits >>>= 1;
        left--;
      }
    }
    return { ...x, F, k: x.k + R };
  });
}

/**
 * After the segment: each output unit's part of the R residual rows (from row `at`) is rescaled to
 * the variance model's exact residual variance r_i (their squared norm is only an estimate of it),
 * which then leaves r: the residual is carried by the rows from here on, correlated between units
 * as L diag(r) L^T. A unit whose rows are 0 while r_i > 0 keeps r_i. `inPlace`: rescale y.F itself.
 */
export function absorbResidualRows(y: TensorMoments, at: number, R: number, inPlace = false): TensorMoments {
  const size = y.m.length;
  // in place when the caller holds y.F alone (a copy of a ResNet-18 first-layer factor is 1.1 GB)
  const F = inPlace ? y.F : y.F.slice();
  const given = scaleHermiteRows(F, at, R, size, y.r);
  const r = new Float64Array(size);
  for (let i = 0; i < size; i++) r[i] = given[i] > 0 ? 0 : y.r[i];
  return { ...y, F, r };
}
