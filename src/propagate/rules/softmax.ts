/** Softmax over an axis: the slices it normalizes over and its statistical linearization (see ./index.ts). */
import { NetmomentsError } from '../../errors.js';
import { attrInt, type GraphNode } from '../../onnx/graph.js';
import { softmaxMoments } from '../../moments/softmax.js';
import { newFactor, type StepTape, type TensorMoments } from './factor.js';

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
    throw new NetmomentsError(`Softmax '${node.name}' normalizes over axis ${axis} (the batch axis or none); propagate needs a per-sample axis`, {
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
      `Softmax '${node.name}' normalizes over ${slices.D} units; propagate integrates a Softmax's moments numerically over at most ${MAX_SOFTMAX_UNITS} (the cost grows with the square): analyse the logits before it with --output NAME`,
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
export function applySoftmax(x: TensorMoments, slices: { outer: number; D: number; inner: number }, spare = 0, tape?: StepTape): TensorMoments {
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
      for (let j = 0; j < D; j++) idx[j] = (o * D + j) * inner + t;
      C.fill(0);
      for (let d = p; d < rows; d++) {
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
