/**
 * Trust: whether a user's conclusions from a result hold, as a verdict ("ok", "warn", "fail") with
 * one reason per problem found. Pure functions of numbers the analysis already has; the thresholds
 * are effect sizes (a mean off by a fraction of the output's sd, a flip probability off by
 * percentage points), not significance alone: a 2,000-sample Monte Carlo resolves errors far
 * smaller than any that changes a conclusion. docs/RESULTS.md ("Trust verdicts") gives the runs
 * that set them: where Monte Carlo says the numbers are right, and where it says they are wrong.
 *
 * - fail: Monte Carlo through the real model (the user's --mc, or else the commands' small check,
 *   --trust-check) contradicts the analytic numbers on the top classes (mean off by more than
 *   MEAN_ERROR_SD Monte Carlo sd, sd ratio outside SD_RATIO, flip probability off by more than
 *   max(FLIP_TOLERANCE, the Monte Carlo interval)), or the surrogate's class at the input differs
 *   from the model's;
 * - warn: a layer held fixed by the linearization is expected to change state in more than
 *   STATE_CHANGE_FRACTION of its units, the surrogate's output at the input is far from the
 *   model's, a non-piecewise-linear op sits inside the linearized part, or (propagate, without a
 *   Monte Carlo of TRUST.deepCheckSamples) the propagation went through more than
 *   TRUST.propagateSteps non-affine steps.
 */
import { argmax, topK } from './util/argmax.js';

export type TrustVerdict = 'ok' | 'warn' | 'fail';

export interface Trust {
  verdict: TrustVerdict;
  /** One line per problem, failures first; empty when the verdict is "ok". */
  reasons: string[];
}

/** The thresholds (docs/RESULTS.md, "Trust verdicts", says where each comes from). */
export const TRUST = {
  /** Classes compared with Monte Carlo: the top classes by Monte Carlo mean and by analytic mean. */
  topClasses: 3,
  /** Largest |analytic mean - MC mean| / MC sd on a top class. */
  meanErrorSd: 2,
  /** Allowed analytic sd / MC sd on a top class. */
  sdRatio: [0.67, 1.5] as const,
  /** Smallest allowed |analytic - MC| flip probability difference (the MC interval may widen it). */
  flipTolerance: 0.1,
  /** Largest expected fraction of a held-fixed layer's units that change state. */
  stateChangeFraction: 0.25,
  /** Largest max_j |surrogate_j - model_j| at the input, as a fraction of the model's logit spread (max - min). */
  surrogateFar: 0.5,
  /**
   * Most non-affine steps (kinked and curved ops, each MaxPool with its Relu one step) a propagation
   * goes through unchecked: its Gaussian closure's error grows with depth. Against 10,000-sample
   * Monte Carlo at ImageNet size (docs/RESULTS.md, "Propagate at ImageNet size"), over three sketch
   * seeds, the top-5 logits' worst mean error was 0.052 output sd through AlexNet's 7 steps, 0.085
   * through ResNet-18's 17, 0.14 through SqueezeNet 1.1's 28, and 0.87 (sds 6-20% low) through
   * MobileNetV2's 35.
   */
  propagateSteps: 24,
  /**
   * Fewest Monte Carlo samples that silence the deep-propagation warning: the errors it is about
   * (0.1 to 0.9 output sd) are below the meanErrorSd a failure needs, and 1,000 samples put the
   * Monte Carlo's own standard error at 0.03 sd, so the user can read them off the comparison.
   */
  deepCheckSamples: 1000,
} as const;

/** Two-sided 95% normal quantile. */
const Z95 = 1.959963984540054;

/**
 * Half width of the 95% interval of a Monte Carlo proportion p from N samples: the Wilson score
 * interval's (Wilson 1927), which stays positive when p is 0 or 1:
 * z sqrt(p (1 - p) / N + z^2 / (4 N^2)) / (1 + z^2 / N).
 */
export function mcProportionHalfWidth(p: number, N: number): number {
  if (!(N > 0)) return Infinity;
  const z2 = Z95 * Z95;
  return (Z95 * Math.sqrt((p * (1 - p)) / N + z2 / (4 * N * N))) / (1 + z2 / N);
}

/** The flip-probability tolerance against a Monte Carlo rate p from N samples: max(flipTolerance, its 95% interval). */
export function flipTolerance(p: number, N: number): number {
  return Math.max(TRUST.flipTolerance, mcProportionHalfWidth(p, N));
}

export interface MonteCarloCheckInput {
  /** Analytic mean (d). */
  mean: ArrayLike<number>;
  /** Analytic variance (d), null when not computed. */
  variance: ArrayLike<number> | null;
  /** Analytic flip probability, null when not computed. */
  flip: number | null;
  mc: { samples: number; mean: ArrayLike<number>; variance: ArrayLike<number>; flip?: number | null };
}

const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** Failures found by comparing the analytic numbers with Monte Carlo through the real model (module comment). */
export function monteCarloReasons(c: MonteCarloCheckInput): string[] {
  const out: string[] = [];
  // the top classes by Monte Carlo mean and by analytic mean (a class the analysis wrongly puts on top counts)
  const top = [...new Set([...topK(c.mc.mean, TRUST.topClasses), ...topK(c.mean, TRUST.topClasses)])];
  let worstMean: { j: number; e: number; analyticUnit: boolean } | undefined;
  let worstSd: { j: number; r: number } | undefined;
  // a class that did not vary in the Monte Carlo (sd 0: a clamped output whose crossings are rarer
  // than the samples can see) has no sd ratio; its mean is measured in the analytic sd instead
  for (const j of top) {
    const mcSd = Math.sqrt(c.mc.variance[j]);
    const sd = c.variance ? Math.sqrt(c.variance[j]) : NaN;
    const diff = Math.abs(c.mean[j] - c.mc.mean[j]);
    const unit = mcSd > 0 ? mcSd : sd > 0 ? sd : 0;
    const e = unit > 0 ? diff / unit : diff > 0 ? Infinity : 0;
    if (e > TRUST.meanErrorSd && (!worstMean || e > worstMean.e)) worstMean = { j, e, analyticUnit: !(mcSd > 0) && sd > 0 };
    if (c.variance) {
      if (!(mcSd > 0)) continue;
      const r = sd / mcSd;
      const off = (x: number) => Math.max(x / TRUST.sdRatio[1], TRUST.sdRatio[0] / x);
      if ((r < TRUST.sdRatio[0] || r > TRUST.sdRatio[1]) && (!worstSd || off(r) > off(worstSd.r))) worstSd = { j, r };
    }
  }
  if (worstMean)
    out.push(
      worstMean.analyticUnit
        ? `mean of g[${worstMean.j}] is ${fmt(worstMean.e)} analytic sd from Monte Carlo's, which did not vary (limit ${TRUST.meanErrorSd})`
        : `mean of g[${worstMean.j}] is ${fmt(worstMean.e)} Monte Carlo sd from Monte Carlo's (limit ${TRUST.meanErrorSd})`,
    );
  if (worstSd) out.push(`sd of g[${worstSd.j}] is ${fmt(worstSd.r)} x Monte Carlo's (allowed ${TRUST.sdRatio[0]} to ${TRUST.sdRatio[1]})`);
  const mcFlip = c.mc.flip;
  if (c.flip !== null && mcFlip !== undefined && mcFlip !== null) {
    const tol = flipTolerance(mcFlip, c.mc.samples);
    if (Math.abs(c.flip - mcFlip) > tol) out.push(`flip probability ${fmt(c.flip, 3)} against Monte Carlo's ${fmt(mcFlip, 3)} (tolerance ${fmt(tol, 3)})`);
  }
  return out;
}

/** A kinked layer's expected state changes, as the linearizer counts them (src/linearize/linearizer.ts LayerFlips). */
export interface LayerStateChanges {
  node: string;
  units: number;
  expectedFlips: number;
  isSplit: boolean;
}

/** Warnings for layers held fixed whose expected state changes exceed stateChangeFraction of their units. */
export function stateChangeReasons(layers: readonly LayerStateChanges[]): string[] {
  const out: string[] = [];
  for (const l of layers) {
    if (l.isSplit || !(l.units > 0)) continue;
    const f = l.expectedFlips / l.units;
    if (f > TRUST.stateChangeFraction)
      out.push(
        `the noise is expected to change the state of ${(100 * f).toFixed(0)}% of ${l.node}'s ${l.units} units, which the linearization holds fixed (limit ${100 * TRUST.stateChangeFraction}%)`,
      );
  }
  return out;
}

/**
 * The surrogate's output at a point x given its offset from the linearization point xb through A
 * and D (Adelta = A (x - xb), Ddelta = D (x - xb)):
 *   g_s(x) = B relu(zb + Adelta) + Ddelta + c2',   c2' = gb - B relu(zb),
 * i.e. g_s(x) = gb + B (relu(zb + Adelta) - relu(zb)) + Ddelta (src/moments/surrogate.ts topOffset,
 * DESIGN.md section 2). B is d x p row-major.
 */
export function surrogateOutputAt(
  B: ArrayLike<number>,
  zb: ArrayLike<number>,
  gb: ArrayLike<number>,
  Adelta?: ArrayLike<number>,
  Ddelta?: ArrayLike<number>,
): Float64Array {
  const p = zb.length;
  const d = gb.length;
  const dy = new Float64Array(p);
  if (Adelta) for (let u = 0; u < p; u++) dy[u] = Math.max(0, zb[u] + Adelta[u]) - Math.max(0, zb[u]);
  const out = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    let s = gb[i];
    if (Adelta) for (let u = 0; u < p; u++) if (dy[u] !== 0) s += B[i * p + u] * dy[u];
    if (Ddelta) s += Ddelta[i];
    out[i] = s;
  }
  return out;
}

/** How the surrogate's output at the input compares with the model's there. */
export interface SurrogateCheck {
  /** The surrogate's argmax differs from the model's. */
  classDiffers: boolean;
  /** max_j |surrogate_j - model_j| / (max_j model_j - min_j model_j). */
  relativeError: number;
  /** classDiffers, or relativeError above surrogateFar. */
  far: boolean;
}

export function compareSurrogate(surrogate: ArrayLike<number>, model: ArrayLike<number>): SurrogateCheck {
  const d = model.length;
  let lo = Infinity;
  let hi = -Infinity;
  let err = 0;
  for (let j = 0; j < d; j++) {
    lo = Math.min(lo, model[j]);
    hi = Math.max(hi, model[j]);
    err = Math.max(err, Math.abs(surrogate[j] - model[j]));
  }
  const spread = hi - lo;
  const relativeError = spread > 0 ? err / spread : err > 0 ? Infinity : 0;
  const classDiffers = d > 1 && argmax(surrogate) !== argmax(model);
  return { classDiffers, relativeError, far: classDiffers || relativeError > TRUST.surrogateFar };
}

/** The reasons a surrogate check gives: the class (fail) and the distance (warn). */
export function surrogateReasons(check: SurrogateCheck, surrogateClass: number, modelClass: number): { fail: string[]; warn: string[] } {
  const fail = check.classDiffers ? [`the surrogate's class at the input is ${surrogateClass}, the model's is ${modelClass}`] : [];
  const warn =
    !check.classDiffers && check.relativeError > TRUST.surrogateFar
      ? [`the surrogate's output at the input is ${fmt(check.relativeError)} of the logit spread from the model's (limit ${TRUST.surrogateFar})`]
      : [];
  return { fail, warn };
}

/** A warning naming the non-piecewise-linear ops inside the linearized part (empty list: none). */
export function smoothOpReasons(ops: readonly { node: string; op: string }[]): string[] {
  if (ops.length === 0) return [];
  const shown = ops.slice(0, 3).map((o) => `${o.op} '${o.node}'`);
  const more = ops.length > 3 ? ` and ${ops.length - 3} more` : '';
  return [`the linearized part holds non-piecewise-linear ops (${shown.join(', ')}${more}): the surrogate is their tangent`];
}

/** A propagation deeper than TRUST.propagateSteps non-affine steps, not checked by Monte Carlo. */
export function deepPropagationReasons(steps: number): string[] {
  if (steps <= TRUST.propagateSteps) return [];
  return [
    `propagate went through ${steps} non-affine steps (more than ${TRUST.propagateSteps}): its error grows with depth (top logits' means off by up to 0.87 output sd through MobileNetV2's 35 at sigma 0.1 on a 224x224 image, docs/RESULTS.md); check with --mc 1000`,
  ];
}

/** The verdict from the failures and warnings found: "fail" if any failure, else "warn" if any warning, else "ok". */
export function trustVerdict(fail: readonly string[], warn: readonly string[]): Trust {
  return { verdict: fail.length > 0 ? 'fail' : warn.length > 0 ? 'warn' : 'ok', reasons: [...fail, ...warn] };
}

/** Everything a result has to judge it by; absent parts are not checked. */
export interface TrustInputs {
  mean: ArrayLike<number>;
  variance: ArrayLike<number> | null;
  flip: number | null;
  /** Monte Carlo through the real model, with its flip rate when counted. */
  mc?: MonteCarloCheckInput['mc'];
  /** Expected state changes per kinked layer (two-stage). */
  layers?: readonly LayerStateChanges[];
  /** The surrogate's and the model's output at the input (two-stage, bank). */
  surrogate?: { surrogate: ArrayLike<number>; model: ArrayLike<number> };
  /** Non-piecewise-linear ops inside the linearized part. */
  smoothOps?: readonly { node: string; op: string }[];
  /** Propagate: the non-affine steps it went through (warned about above TRUST.propagateSteps unless Monte Carlo ran). */
  propagateSteps?: number;
}

/** The verdict for one result (module comment). */
export function assessTrust(t: TrustInputs): Trust {
  const fail: string[] = [];
  const warn: string[] = [];
  if (t.mc) fail.push(...monteCarloReasons({ mean: t.mean, variance: t.variance, flip: t.flip, mc: t.mc }));
  if (t.surrogate) {
    const r = surrogateReasons(compareSurrogate(t.surrogate.surrogate, t.surrogate.model), argmax(t.surrogate.surrogate), argmax(t.surrogate.model));
    fail.push(...r.fail);
    warn.push(...r.warn);
  }
  if (t.layers) warn.push(...stateChangeReasons(t.layers));
  if (t.smoothOps) warn.push(...smoothOpReasons(t.smoothOps));
  // a Monte Carlo too small to resolve the errors the warning is about leaves it standing
  if (t.propagateSteps !== undefined && !(t.mc && t.mc.samples >= TRUST.deepCheckSamples)) warn.push(...deepPropagationReasons(t.propagateSteps));
  return trustVerdict(fail, warn);
}

/**
 * The verdict of a two-stage result (analyze): Monte Carlo when it ran, the surrogate at the noise's
 * centre against the model there, the expected state changes of the layers held fixed, and the
 * curved ops inside the linearized part.
 */
export function twoStageTrust(
  result: {
    mean: ArrayLike<number>;
    variance: ArrayLike<number> | null;
    variancePaper: ArrayLike<number> | null;
    flipProbability: number | null;
    mc?: { samples: number; mean: ArrayLike<number>; variance: ArrayLike<number>; flipRate?: number };
  },
  lin: {
    B: ArrayLike<number>;
    zb: ArrayLike<number>;
    gb: ArrayLike<number>;
    Adelta?: ArrayLike<number>;
    Ddelta?: ArrayLike<number>;
    flips: readonly LayerStateChanges[];
  },
  modelAtCentre: ArrayLike<number>,
  smoothOps: readonly { node: string; op: string }[],
): Trust {
  return assessTrust({
    mean: result.mean,
    variance: result.variance ?? result.variancePaper,
    flip: result.flipProbability,
    mc: result.mc && { ...result.mc, flip: result.mc.flipRate },
    layers: lin.flips,
    surrogate: { surrogate: surrogateOutputAt(lin.B, lin.zb, lin.gb, lin.Adelta, lin.Ddelta), model: modelAtCentre },
    smoothOps,
  });
}
