/**
 * Per-op moment rules of moment propagation (issue 13), one file per op family (./unit.ts,
 * ./maxpool.ts, ./softmax.ts, ./affine.ts; ./residual.ts and ./factor.ts the shared rows and
 * helpers), each rule a pure function of the node (attributes, constants) and the incoming
 * moments; this index maps an op type to its rule family (hasMomentRule). A tensor's moments are
 * (m, F, r): mean m, covariance F F^T + diag(r) with F stored direction-major ([rows, size]: row d
 * is the image of the d-th noise direction) and r >= 0 a residual variance per unit. F's first
 * rows are probes (images of random input directions, not part of the covariance; see below).
 *
 * Four kinds of rule:
 *  - unit-wise (Relu, LeakyRelu, PRelu, Clip, Abs, HardSigmoid, Sigmoid, Tanh, Exp, Erf, Sin, Cos,
 *    Softplus, Elu, Selu, Celu, Softsign, HardSwish, Mish, Gelu; and unit-wise composites such as
 *    x * sigmoid(x), ./composite.ts):
 *    statistical linearization. Per unit, with s^2 = |F_i|^2 + r_i, the exact mean and variance of
 *    f(x_i), x_i ~ N(m_i, s^2) (src/moments/piecewise.ts, smooth.ts); F_i passes scaled by the
 *    expected slope E f'(x_i) (Stein's lemma: cov(f(x_i), z) = E f'(x_i) cov(x_i, z) for every z
 *    jointly Gaussian with x_i, so the output's covariance with the input noise is exact); the rest
 *    of the exact variance is the residual.
 *  - MaxPool: the exact moments of max over each window (src/moments/windowmax.ts, numerical
 *    integration), fused with a ReLU that follows (relu(max x) = max(0, x)); F passes with the
 *    probabilities of each element being the max, exact for the covariance with anything jointly
 *    Gaussian with the window (Stein's lemma).
 *  - Softmax over an axis: per slice of D units, E y and E[y y^T] by quasi-Monte Carlo over the
 *    slice's Gaussian (src/moments/softmax.ts); F passes through the expected Jacobian
 *    diag(E y) - E[y y^T] (Stein's lemma: exact covariance with the input noise); the rest of each
 *    unit's exact variance is the residual (no Hermite rows). LogSoftmax likewise, through
 *    I - 1 E[softmax]^T, with its exactly rank-one rest as one row per slice (applyLogSoftmax).
 *  - affine ops: run by onnxruntime (mean and the rows of F through JVPs of the segment);
 *    `varianceNodes` gives the nodes that push r through the squared linear part (L o L) r.
 *
 * Hermite rows. The residual of a kinked op is not independent between units: by Mehler's
 * expansion cov(f(x_i), f(x_j)) = sum_h E f^(h)(x_i) E f^(h)(x_j) S_ij^h / h!, of which h = 1 is what
 * F carries. The h = 2 and 3 terms are carried in K extra covariance rows (shared by the two
 * orders, whose sketches are uncorrelated), sketched from products of probes
 * (E[prod_t P_t,i P_t,j] = S_ij^h) and scaled per unit to their exact F-part variance; only what is left (orders >= 4, the residual's own share) stays in r, taken as
 * independent between units. Without them LeNet's output variance at pixel sigma 32 came out at
 * 0.79-0.95 of Monte Carlo's (the next Conv sums neighbouring units' positively correlated
 * residuals); with K = 32 at 0.93-1.02. The sketch's noise is what spread the logits' variance
 * ratios at sigma 8 (digit 64, 40,000-sample Monte Carlo: 0.958-1.040 with K = 32 columns from
 * 64 probes, 0.970-1.015 with K = 128 from 256; the last Relu's own Hermite rows made no
 * difference: its exact Mehler sum to order 20 gave the same ratios). The default is now K = 128
 * columns from 32 probes (probeOf: the columns beyond P / 2 share probes but stay uncorrelated):
 * 32 fewer probe rows through every segment pay for most of the 96 more Hermite rows. Digit 68,
 * 75,000-sample Monte Carlo, logits' var / MC: sigma 8 0.964-1.012 with K = 64 (0.957-1.018 with
 * another probe seed), 0.977-1.008 with K = 128; sigma 32 0.900-0.983 -> 0.914-1.003.
 *
 * Residual rows. The residual r of a kinked op, pushed through the next affine part L as
 * independent between units by the variance model alone, would lose the off-diagonal
 * L diag(r) L^T: the output units of a Conv or Gemm that read the same residuals are correlated,
 * and the next layer's sums add those correlations up (LeNet digit 68 at sigma 32, without them:
 * fc1's pre-activation variance 0.97 of Monte Carlo's, the logits' 0.87-0.99). So before each
 * affine segment whose inputs carry a residual, r is also carried as R = 32 rows of random signs
 * scaled to sqrt(r / R) (appendResidualRows), whose images the segment computes with the other
 * rows; afterwards each output unit's part of them is rescaled to the variance model's exact
 * residual variance, which then leaves r (absorbResidualRows). Measured on LeNet (75,000-sample
 * Monte Carlo, the logits' var / MC range, without -> with): digit 68 at sigma 32 0.866-0.991 ->
 * 0.908-1.021, digit 64 0.913-1.001 -> 0.937-1.033; at sigma 8 digit 68 0.941-1.015 -> 0.966-1.040,
 * digit 64 0.946-1.027 -> 0.960-1.045. Rows only before Gemm segments gave 0.887 on digit 68 at
 * sigma 32; R = 128 gave the same ranges as R = 32 (the sign noise is not what is left).
 *
 * What is still lost: the residual's own correlation between units (the Hermite orders >= 4 of
 * a kinked op, the part of a MaxPool's residual beyond the Hermite rows), taken as independent at
 * its source. (The overshoot at sigma 8 seen with K = 32 Hermite columns, up to 1.045 of Monte
 * Carlo's variance on digit 64, was the Hermite sketch's noise: see "Hermite rows".)
 *
 * Tried and dropped (LeNet, digits 50-55, 75,000-sample Monte Carlo, sigma 32):
 *  - Clark's sequential max with the ReLU as one more element sorted by mean: mean error 0.055 sd
 *    median, worse than Clark then ReLU (0.021) and than the integrated max (0.011).
 *  - an unshifted (or randomly rotated) lattice for the window max: its truncated tails bias
 *    every window alike (mean error 0.029 / 0.016); the random shift per window makes the errors
 *    independent and the next layer averages them out.
 *  - (when K columns needed 2K probes) K = 16 or 64 instead of 32: the sketch's noise (relative sd
 *    ~ sqrt(2/K) of a ~10% share) spread the variance ratios (0.88-1.04 at K = 16); 64 cost 64 more
 *    probe rows in every JVP after. Columns from shared probes (probeOf) lifted that limit.
 */
import type { GraphNode } from '../../onnx/graph.js';
import { AFFINE_OPS } from './affine.js';
import { isDefault } from './factor.js';
import { COMPOSITE_DOMAIN, COMPOSITE_OP } from './composite.js';
import { UNIT_OPS } from './unit.js';

export { AFFINE_OPS, nonAffineUse, varianceNodes, type VarianceContext } from './affine.js';
export { unitFactorNorms, type InputNoise, type StepTape, type TensorMoments, type UnitMoments } from './factor.js';
export { COMPOSITE_DOMAIN, COMPOSITE_OP, fuseUnitComposites, type UnitComposite } from './composite.js';
export { rewriteMaxMin } from './maxmin.js';
export { applyMaxPool, maxPoolWindows, type MaxPoolGram, type SparseWindows } from './maxpool.js';
export { absorbResidualRows, appendResidualRows } from './residual.js';
export { MAX_SOFTMAX_UNITS, applyLogSoftmax, applySoftmax, softmaxSlices } from './softmax.js';
export { UNIT_OPS, applyUnitRule, isMonotoneUnit, unitFunction, unitRule } from './unit.js';

/** Ops with a moment rule of any kind. */
export function hasMomentRule(node: GraphNode): boolean {
  if (node.domain === COMPOSITE_DOMAIN) return node.opType === COMPOSITE_OP;
  if (!isDefault(node)) return false;
  if (AFFINE_OPS.has(node.opType) || node.opType === 'MaxPool' || node.opType === 'Softmax' || node.opType === 'LogSoftmax') return true;
  return UNIT_OPS.has(node.opType);
}
