/**
 * The output covariance of the statistically linearized net by reverse passes (issues 13 and 15):
 * instead of the Gram matrix of the output's factor rows (a sketch when the input noise has more
 * directions than the rank carried, and random-sign rows for the residuals), the exact covariance
 * of the surrogate the forward pass built, from cotangent rows pulled back through it.
 *
 * The surrogate (src/propagate/rules/index.ts): y = L(x) with L the composition of the steps'
 * linear maps (affine segments; per unit-wise op diag(E f'); per MaxPool the window weights; per
 * Softmax the expected Jacobian), plus, at each non-affine step s, fresh noise of covariance
 * H_s^T H_s + diag(r_s) (its Hermite rows and its residual), independent of the input noise and of
 * every other step's. Hence, with U the selected output units and J_t = dy_U / dt the Jacobian of
 * the surrogate from tensor t to them (the cotangent rows at t),
 *
 *   Cov(y_U) = J_x Sigma J_x^T + sum_s [ (J_s H_s^T)(J_s H_s^T)^T + A_s diag(r_s) A_s^T ],
 *
 * where A_s is the part of J_s that reaches s's output through affine steps only: a non-affine step
 * that reads s's output folds r_s into its own exact variance (and so into its own r) instead of
 * passing it on, so that path must not count r_s twice. (The forward pass turns r_s into residual
 * rows before each affine segment, so every residual reaches the output either through affine
 * steps or through a later step's residual; with no residual rows it would not, and the reverse
 * pass is not used.) Each J is one cotangent row per selected output unit: |U| reverse passes of
 * every segment (one onnxruntime run each, the rows as the batch) instead of one forward row per
 * input direction, and Sigma enters exactly (isotropic, diagonal or the given factor).
 */
import { jsLinearAlgebra, type LinearAlgebra } from '../moments/linalg.js';
import type { AffineSegment } from './segment.js';
import type { InputNoise, StepTape } from './rules/index.js';

/** One step as the reverse pass walks it. */
export type ReverseStep =
  | { kind: 'affine'; segment: AffineSegment; inputs: string[]; outputs: string[]; means: Float64Array[] }
  | { kind: 'rule'; input: string; output: string; inputSize: number; tape: StepTape };

/** cov (u x u) += X diag(w) X^T for X u x size row-major (w undefined: the identity). */
function addWeightedGram(cov: Float64Array, X: Float64Array, u: number, size: number, w?: ArrayLike<number>, scale = 1): void {
  const xw = new Float64Array(size);
  for (let a = 0; a < u; a++) {
    const ra = a * size;
    if (w) for (let i = 0; i < size; i++) xw[i] = X[ra + i] * w[i];
    else for (let i = 0; i < size; i++) xw[i] = X[ra + i];
    for (let b = 0; b <= a; b++) {
      const rb = b * size;
      let s = 0;
      for (let i = 0; i < size; i++) s += xw[i] * X[rb + i];
      cov[a * u + b] += scale * s;
      if (b !== a) cov[b * u + a] += scale * s;
    }
  }
}

/** Units per block of the Hermite product (addHermite): 16,384 units of 128 float32 Hermite rows are 8 MiB (16 widened). */
const HERMITE_BLOCK_UNITS = 16_384;

/**
 * cov += (X H^T)(X H^T)^T for X u x size (float64) and H K x size (float32 Hermite rows): Y = X H^T
 * (u x K) by onnxruntime's float64 GEMM (`linalg`; the float32 rows widened exactly) over blocks of
 * HERMITE_BLOCK_UNITS units, so that no widened copy of H larger than a block exists (H is K x
 * units of the step: 128 x 802,816 float32 on ResNet-18's first Relu); then Y Y^T here. The plain
 * loops read X once per Hermite row and took 4 of ResNet-18's 6 reverse-pass seconds at K = 128.
 */
async function addHermite(cov: Float64Array, X: Float64Array, u: number, size: number, H: Float32Array, linalg: LinearAlgebra): Promise<void> {
  const K = H.length / size;
  const Y = new Float64Array(u * K);
  const block = Math.min(size, HERMITE_BLOCK_UNITS);
  const Xb = new Float64Array(u * block);
  const Hb = new Float32Array(K * block);
  for (let at = 0; at < size; at += block) {
    const w = Math.min(block, size - at);
    const xb = w === block ? Xb : Xb.subarray(0, u * w);
    const hb = w === block ? Hb : Hb.subarray(0, K * w);
    for (let a = 0; a < u; a++) xb.set(X.subarray(a * size + at, a * size + at + w), a * w);
    for (let c = 0; c < K; c++) hb.set(H.subarray(c * size + at, c * size + at + w), c * w);
    const part = await linalg.gemm(xb, u, w, hb, K, w, { transB: true });
    for (let j = 0; j < Y.length; j++) Y[j] += part[j];
  }
  for (let a = 0; a < u; a++)
    for (let b = 0; b < u; b++) {
      let s = 0;
      for (let c = 0; c < K; c++) s += Y[a * K + c] * Y[b * K + c];
      cov[a * u + b] += s;
    }
}

/** The cotangent rows at a rule's input from those at its output: u^T times the rule's linear map. */
export function pullBack(tape: StepTape, ct: Float64Array, u: number, inSize: number, outSize: number): Float64Array {
  const out = new Float64Array(u * inSize);
  if (tape.slope) {
    const s = tape.slope;
    for (let a = 0; a < u; a++) for (let i = 0; i < outSize; i++) out[a * inSize + i] = s[i] * ct[a * outSize + i];
  } else if (tape.pool) {
    const { idx, weights, start } = tape.pool;
    for (let a = 0; a < u; a++) {
      const ri = a * inSize;
      const ro = a * outSize;
      for (let o = 0; o < outSize; o++) {
        const c = ct[ro + o];
        if (c === 0) continue;
        for (let t = start[o]; t < start[o + 1]; t++) out[ri + idx[t]] += weights[t] * c;
      }
    }
  } else if (tape.slices) {
    // the tape holds A^T (Softmax's A = diag(E y) - E[y y^T] is symmetric), so u^T A = (A^T u)^T
    const { outer, D, inner, A } = tape.slices;
    for (let a = 0; a < u; a++) {
      const r = a * inSize;
      for (let o = 0; o < outer; o++)
        for (let t = 0; t < inner; t++) {
          const base = (o * inner + t) * D * D;
          for (let j = 0; j < D; j++) {
            let s = 0;
            for (let l = 0; l < D; l++) s += A[base + j * D + l] * ct[r + (o * D + l) * inner + t];
            out[r + (o * D + j) * inner + t] = s;
          }
        }
    }
  } else throw new Error('internal: a reverse step without a linear map');
  return out;
}

function accumulate(map: Map<string, Float64Array>, t: string, v: Float64Array): void {
  const have = map.get(t);
  if (!have) map.set(t, v);
  else for (let i = 0; i < v.length; i++) have[i] += v[i];
}

/**
 * The covariance of the output units `units` (u x u, row-major, in the order given) of the
 * surrogate recorded in `steps` (forward order), the input `input` of `n` values carrying `noise`.
 */
export async function reverseOutputCovariance(
  steps: ReverseStep[],
  input: string,
  n: number,
  output: string,
  d: number,
  units: readonly number[],
  noise: InputNoise,
  linalg: LinearAlgebra = jsLinearAlgebra,
): Promise<Float64Array> {
  const u = units.length;
  const cov = new Float64Array(u * u);
  const seed = new Float64Array(u * d);
  units.forEach((j, a) => (seed[a * d + j] = 1));
  // every cotangent, and the part that reached a tensor through affine steps only (see the header)
  const ct = new Map<string, Float64Array>([[output, seed]]);
  const viaAffine = new Map<string, Float64Array>([[output, seed.slice()]]);
  // only the outputs of rules carry a fresh residual (the others need no affine-only part)
  const fresh = new Set(steps.flatMap((s) => (s.kind === 'rule' && s.tape.r ? [s.output] : [])));
  for (let k = steps.length - 1; k >= 0; k--) {
    const s = steps[k];
    if (s.kind === 'affine') {
      const cts = s.outputs.map((o) => ct.get(o));
      for (const o of s.outputs) {
        ct.delete(o);
        viaAffine.delete(o);
      }
      if (cts.every((c) => c === undefined)) continue;
      const ins = await s.segment.vjp(s.means, cts, u);
      s.inputs.forEach((t, i) => {
        if (fresh.has(t)) accumulate(viaAffine, t, Float64Array.from(ins[i]));
        accumulate(ct, t, ins[i]);
      });
    } else {
      const c = ct.get(s.output);
      const a = viaAffine.get(s.output);
      ct.delete(s.output);
      viaAffine.delete(s.output);
      if (!c) continue;
      const outSize = c.length / u;
      if (s.tape.hermite && s.tape.hermite.length > 0) await addHermite(cov, c, u, outSize, s.tape.hermite, linalg);
      if (a && s.tape.r) addWeightedGram(cov, a, u, outSize, s.tape.r);
      accumulate(ct, s.input, pullBack(s.tape, c, u, s.inputSize, outSize));
    }
  }
  const cx = ct.get(input);
  if (cx) {
    if (noise.kind === 'isotropic') addWeightedGram(cov, cx, u, n, undefined, noise.sigma * noise.sigma);
    else if (noise.kind === 'diagonal') addWeightedGram(cov, cx, u, n, noise.variance);
    else {
      // (J N)(J N)^T, N the n x columns factor
      const cols = noise.columns;
      const JN = new Float64Array(u * cols);
      for (let a = 0; a < u; a++)
        for (let i = 0; i < n; i++) {
          const v = cx[a * n + i];
          if (v === 0) continue;
          for (let c = 0; c < cols; c++) JN[a * cols + c] += v * noise.factor[i * cols + c];
        }
      addWeightedGram(cov, JN, u, cols);
    }
  }
  for (let a = 0; a < u; a++)
    for (let b = 0; b < a; b++) {
      const v = 0.5 * (cov[a * u + b] + cov[b * u + a]);
      cov[a * u + b] = cov[b * u + a] = v;
    }
  return cov;
}
