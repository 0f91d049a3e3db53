/** Softmax and LogSoftmax over an axis: the slices they normalize over and their statistical linearizations (see ./index.ts). */
import { NetmomentsError } from '../../errors.js';
import { attrInt, type GraphNode } from '../../onnx/graph.js';
import { softmaxMoments } from '../../moments/softmax.js';
import { newFactor, type StepTape, type TensorMoments } from './factor.js';

type Slices = { outer: number; D: number; inner: number };

/** The slice (o, t)'s unit indices, its mean and its covariance C = G + diag(r) (G over the covariance rows). */
function sliceGaussian(x: TensorMoments, o: number, t: number, slices: Slices, idx: Int32Array, mu: Float64Array, C: Float64Array, v: Float64Array): void {
  const { D, inner } = slices;
  const size = x.m.length;
  const rows = x.F.length / size;
  for (let j = 0; j < D; j++) idx[j] = (o * D + j) * inner + t;
  C.fill(0);
  for (let d = x.probes; d < rows; d++) {
    const row = d * size;
    for (let j = 0; j < D; j++) v[j] = x.F[row + idx[j]];
    for (let j = 0; j < D; j++) {
      const vj = v[j];
      if (vj === 0) continue;
      for (let l = j; l < D; l++) C[j * D + l] += vj * v[l];
    }
  }
  for (let j = 0; j < D; j++) {
    C[j * D + j] += x.r[idx[j]];
    for (let l = 0; l < j; l++) C[j * D + l] = C[l * D + j];
    mu[j] = x.m[idx[j]];
  }
}

/**
 * The slices a Softmax normalizes over, in a per-sample tensor of shape `shape` (batch axis
 * dropped): `outer` x `inner` slices of D units, unit j of slice (o, t) at (o D + j) inner + t.
 * From opset 13 the axis (default -1) is one axis; before, the input is coerced to 2-D at the axis
 * (default 1): the slice is every unit from the axis on. The batch axis cannot be the axis.
 */
export function softmaxSlices(node: GraphNode, opset: number, shape: readonly number[]): { outer: number; D: number; inner: number } {
  const rank = shape.length + 1;
  let axis = attrInt(node, 'axis', opset >= 13 ? -1 : 1);
  if (axis < 0) axis += rank;
  if (axis < 1 || axis >= rank)
    throw new NetmomentsError(`${node.opType} '${node.name}' normalizes over axis ${axis} (the batch axis or none); propagate needs a per-sample axis`, {
      code: 'UNSUPPORTED',
    });
  const a = axis - 1;
  const prod = (xs: readonly number[]) => xs.reduce((p, d) => p * d, 1);
  const slices =
    opset >= 13
      ? { outer: prod(shape.slice(0, a)), D: shape[a], inner: prod(shape.slice(a + 1)) }
      : { outer: prod(shape.slice(0, a)), D: prod(shape.slice(a)), inner: 1 };
  if (slices.D > MAX_SOFTMAX_UNITS)
    throw new NetmomentsError(
      `${node.opType} '${node.name}' normalizes over ${slices.D} units; propagate integrates its moments numerically over at most ${MAX_SOFTMAX_UNITS} (the cost grows with the square): analyse the logits before it with --output NAME`,
      { code: 'UNSUPPORTED' },
    );
  return slices;
}

/** The most units one Softmax slice may have under propagate (its quadrature costs 65,536 D^2). */
export const MAX_SOFTMAX_UNITS = 64;

/**
 * Statistical linearization of a Softmax over slices of D units (src/moments/softmax.ts): per slice,
 * the window covariance C = G + diag(r) (G the Gram matrix of the factor's covariance rows over the
 * slice, residuals of different units taken as uncorrelated), E y and E[y y^T] by quadrature;
 * every factor row (probes included) passes through the expected Jacobian A = diag(E y) - E[y y^T]
 * (exact covariance with the input noise, Stein's lemma); each unit's residual is its exact
 * variance E[y_j^2] - (E y_j)^2 minus what the passed covariance rows carry (clamped at 0).
 */
export function applySoftmax(x: TensorMoments, slices: Slices, spare = 0, tape?: StepTape): TensorMoments {
  const { outer, D, inner } = slices;
  const size = x.m.length;
  const rows = x.F.length / size;
  const p = x.probes;
  const m = new Float64Array(size);
  const r = new Float64Array(size);
  const F = newFactor(rows, size, spare);
  const idx = new Int32Array(D);
  const C = new Float64Array(D * D);
  const mu = new Float64Array(D);
  const A = new Float64Array(D * D);
  const v = new Float64Array(D);
  const q = new Float64Array(D);
  const taped = tape ? new Float64Array(outer * inner * D * D) : undefined;
  for (let o = 0; o < outer; o++) {
    for (let t = 0; t < inner; t++) {
      sliceGaussian(x, o, t, slices, idx, mu, C, v);
      const sm = softmaxMoments(mu, C, D);
      for (let j = 0; j < D; j++) for (let l = 0; l < D; l++) A[j * D + l] = (j === l ? sm.mean[j] : 0) - sm.second[j * D + l];
      taped?.set(A, (o * inner + t) * D * D);
      q.fill(0);
      for (let d = 0; d < rows; d++) {
        const row = d * size;
        for (let j = 0; j < D; j++) v[j] = x.F[row + idx[j]];
        for (let j = 0; j < D; j++) {
          let acc = 0;
          for (let l = 0; l < D; l++) acc += A[j * D + l] * v[l];
          F[row + idx[j]] = acc;
          if (d >= p) q[j] += Math.fround(acc) ** 2;
        }
      }
      for (let j = 0; j < D; j++) {
        m[idx[j]] = sm.mean[j];
        r[idx[j]] = Math.max(0, sm.second[j * D + j] - sm.mean[j] ** 2 - q[j]);
      }
    }
  }
  if (tape && taped) {
    tape.slices = { outer, D, inner, A: taped };
    tape.r = r;
  }
  return { ...x, m, F, r };
}

/** Slices whose LogSoftmax residual is carried as a row each (beyond, as independent residuals). */
export const MAX_LOG_SOFTMAX_ROWS = 16;

/**
 * Statistical linearization of a LogSoftmax, y = x - lse(x) 1 with lse(x) = log sum_l exp(x_l), over
 * slices of D units. With x ~ N(mu, C) on a slice (C as in applySoftmax) and p = E softmax(x) =
 * E grad lse(x): E y = mu - E lse(x); cov(lse, x) = C p (Stein's lemma), so every factor row passes
 * through A = I - 1 p^T (exact covariance with the input noise), and the exact covariance
 *   cov(y) = C - 1 (C p)^T - (C p) 1^T + var(lse) 1 1^T
 * exceeds A C A^T = C - 1 (C p)^T - (C p) 1^T + (p^T C p) 1 1^T by w 1 1^T, w = var(lse) - p^T C p
 * >= 0: the same amount in every unit of the slice, perfectly correlated. For up to
 * MAX_LOG_SOFTMAX_ROWS slices it is carried exactly, as one covariance row per slice (sqrt(w) on
 * its units: differences between units, what decides a class, do not see it); beyond, in the
 * residual (then independent between units). E lse and E lse^2 by the quadrature of Softmax
 * (src/moments/softmax.ts). The input's residual r enters C's diagonal; what A C A^T and the row
 * leave of each unit's exact variance stays in its residual.
 */
export function applyLogSoftmax(x: TensorMoments, slices: Slices, spare = 0, tape?: StepTape): TensorMoments {
  const { outer, D, inner } = slices;
  const size = x.m.length;
  const rows = x.F.length / size;
  const p = x.probes;
  const count = outer * inner;
  const extra = count <= MAX_LOG_SOFTMAX_ROWS ? count : 0;
  const m = new Float64Array(size);
  const r = new Float64Array(size);
  const F = newFactor(rows + extra, size, spare);
  const idx = new Int32Array(D);
  const C = new Float64Array(D * D);
  const mu = new Float64Array(D);
  const v = new Float64Array(D);
  const q = new Float64Array(D);
  const Cp = new Float64Array(D);
  const taped = tape ? new Float64Array(count * D * D) : undefined;
  for (let o = 0; o < outer; o++) {
    for (let t = 0; t < inner; t++) {
      const slice = o * inner + t;
      sliceGaussian(x, o, t, slices, idx, mu, C, v);
      const sm = softmaxMoments(mu, C, D);
      const pr = sm.mean;
      let pCp = 0;
      for (let j = 0; j < D; j++) {
        let acc = 0;
        for (let l = 0; l < D; l++) acc += C[j * D + l] * pr[l];
        Cp[j] = acc;
        pCp += pr[j] * acc;
      }
      const w = Math.max(0, sm.logSumExpSecond - sm.logSumExp ** 2 - pCp);
      // the reverse pass pulls cotangents back with A^T: stored as the transpose (rules/index.ts StepTape)
      if (taped) for (let j = 0; j < D; j++) for (let l = 0; l < D; l++) taped[slice * D * D + l * D + j] = (j === l ? 1 : 0) - pr[l];
      q.fill(0);
      for (let d = 0; d < rows; d++) {
        const row = d * size;
        let pv = 0;
        for (let j = 0; j < D; j++) pv += pr[j] * x.F[row + idx[j]];
        for (let j = 0; j < D; j++) {
          const a = x.F[row + idx[j]] - pv;
          F[row + idx[j]] = a;
          if (d >= p) q[j] += Math.fround(a) ** 2;
        }
      }
      if (extra > 0) {
        const sw = Math.fround(Math.sqrt(w));
        for (let j = 0; j < D; j++) F[(rows + slice) * size + idx[j]] = sw;
      }
      for (let j = 0; j < D; j++) {
        m[idx[j]] = mu[j] - sm.logSumExp;
        const exact = C[j * D + j] - 2 * Cp[j] + sm.logSumExpSecond - sm.logSumExp ** 2;
        r[idx[j]] = Math.max(0, exact - q[j] - (extra > 0 ? Math.fround(Math.sqrt(w)) ** 2 : 0));
      }
    }
  }
  if (tape && taped) {
    tape.slices = { outer, D, inner, A: taped };
    tape.r = r;
    if (extra > 0) tape.hermite = F.slice(rows * size, (rows + extra) * size);
  }
  return { ...x, m, F, k: x.k + extra, r };
}
