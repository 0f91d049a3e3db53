/**
 * Certified L2 radii by randomized smoothing (Cohen, Rosenfeld and Kolter, "Certified adversarial
 * robustness via randomized smoothing", ICML 2019). The smoothed classifier is
 * g(x) = argmax_c P(f(x + eps) = c), eps ~ N(0, sigma^2 I) on every element of the input; if the
 * top class A has P(f(x + eps) = A) >= p_A > 1/2, then g(x + delta) = A for every ||delta||_2 < R,
 * R = sigma Phi^{-1}(p_A) (their Theorem 1 with p_B = 1 - p_A). sigma is in the model's input units.
 *
 * Two columns per input:
 *  - analytic (an estimate, not a certificate): p_A from the analytic class probabilities of the
 *    output Gaussian (analyze's, src/analyze.ts: QMC over N(E[g], Cov[g])), A their argmax. Where
 *    the QMC resolves no miss of A (or more than the bound below), 1 - p_A is taken as the
 *    pairwise (Bonferroni) bound sum_{j != A} Phi(-(m_A - m_j) / sd(y_A - y_j)) of the same
 *    Gaussian, so a confident input gets a finite radius. It carries analyze's trust verdict
 *    (src/trust.ts); abstains when p_A <= 1/2.
 *  - mc (sound, with probability 1 - alpha): Cohen et al.'s CERTIFY. n0 samples of f(x + eps)
 *    through the real model pick A (the most frequent class); N fresh samples count n_A; p_A_lower
 *    is the one-sided Clopper-Pearson bound at level 1 - alpha (src/moments/beta.ts);
 *    R = sigma Phi^{-1}(p_A_lower), abstaining when p_A_lower < 1/2. Samples go through the same
 *    sampler and model runs as analyze's Monte Carlo (src/moments/montecarlo.ts).
 */
import { Analyzer, seedFor, type AnalyzeOptions } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import type { Method } from '../method.js';
import { clopperPearsonLower } from '../moments/beta.js';
import { monteCarloMoments } from '../moments/montecarlo.js';
import { Phi, PhiInv } from '../moments/special.js';
import { checkSigma } from '../noise.js';
import type { LoadedModel } from '../onnx/load.js';
import type { Trust } from '../trust.js';
import { argmax } from '../util/argmax.js';

export interface CertifyOptions extends Omit<AnalyzeOptions, 'noise' | 'noiseFile' | 'window' | 'noiseMean' | 'at' | 'variance' | 'covariance' | 'mc'> {
  /** Noise sd on every input element, in model input units. */
  sigma: number;
  /** Samples N of the MC certificate (0: the analytic estimate only). */
  mc?: number;
  /** Samples n0 that pick the class of the MC certificate (default 100, as Cohen et al.). */
  n0?: number;
  /** The MC certificate holds with probability 1 - alpha (default 0.001, as Cohen et al.). */
  alpha?: number;
  /** Samples per model run (default 1000). */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** Called with each input's result as it is done (benchmarks print them as they come). */
  onResult?: (r: CertifyResult) => void;
}

export interface AnalyticRadius {
  kind: 'estimate';
  /** The smoothed classifier's class by the analytic class probabilities. */
  class: number;
  /** The analytic P(f(x + eps) = class). */
  pA: number;
  /** 1 - pA as used (kept apart so a p_A within 1e-16 of 1 keeps its radius). */
  pMiss: number;
  /** Where 1 - pA came from: the QMC class probability, or the pairwise bound of the same Gaussian. */
  pMissFrom: 'qmc' | 'pairwise-bound';
  /** The QMC standard error of the class probabilities. */
  pAError: number | null;
  /** sigma Phi^{-1}(pA); null when abstaining. */
  radius: number | null;
  abstain: boolean;
  trust: Trust;
  /** Wall and process CPU seconds (all threads) of this column. */
  seconds: number;
  cpuSeconds: number;
}

export interface MonteCarloCertificate {
  kind: 'certificate';
  n0: number;
  n: number;
  alpha: number;
  /** The class the n0 selection samples picked. */
  class: number;
  /** Of the n estimation samples, how many the model put in `class`. */
  count: number;
  /** One-sided Clopper-Pearson lower bound on P(f(x + eps) = class) at level 1 - alpha. */
  pALower: number;
  /** sigma Phi^{-1}(pALower); null when abstaining (pALower < 1/2). */
  radius: number | null;
  abstain: boolean;
  seconds: number;
  cpuSeconds: number;
}

export interface CertifyResult {
  input: number;
  label: number | null;
  /** The model's class at the clean input. */
  cleanClass: number;
  analytic: AnalyticRadius;
  mc?: MonteCarloCertificate;
}

export interface ColumnSummary {
  abstained: number;
  medianRadius: number | null;
  /** With labels: inputs with a radius whose class is the label. */
  certifiedCorrect: number | null;
  seconds: number;
  cpuSeconds: number;
}

export interface CertifySummary {
  inputs: number;
  analytic: ColumnSummary;
  mc: ColumnSummary | null;
  /** With mc: how the two columns compare over the inputs where neither abstains. */
  agreement: { classAgreement: number; compared: number; medianAbsRadiusDifference: number | null; maxAbsRadiusDifference: number | null } | null;
  /** With mc: MC CPU seconds / analytic CPU seconds (CPU time: steadier than wall time on a shared machine). */
  costRatio: number | null;
  /** Inputs whose analytic verdict is ok, warn, fail. */
  trust: { ok: number; warn: number; fail: number };
}

export interface CertifyReport {
  method: Method;
  methodReason: string;
  sigma: number;
  results: CertifyResult[];
  summary: CertifySummary;
}

/** R = sigma Phi^{-1}(p) from the miss probability q = 1 - p, so p near 1 keeps its digits: sigma (-Phi^{-1}(q)). */
export function radiusFromMiss(sigma: number, q: number): number {
  // q below the smallest double (a margin of more than ~38 sd) is held there: the radius is then a floor
  return -sigma * PhiInv(Math.max(q, Number.MIN_VALUE));
}

/**
 * 1 - P(argmax y = a) <= sum_{j != a} P(y_j >= y_a) = sum_j Phi(-(m_a - m_j) / s_aj),
 * s_aj^2 = C_aa + C_jj - 2 C_aj, y ~ N(m, C) (Bonferroni's inequality; each term exact for a Gaussian).
 * A term with s_aj = 0 is 0 or 1 by the sign of the margin.
 */
export function pairwiseMissBound(mean: ArrayLike<number>, cov: number[][], a: number): number {
  let q = 0;
  for (let j = 0; j < mean.length; j++) {
    if (j === a) continue;
    const margin = mean[a] - mean[j];
    const s2 = cov[a][a] + cov[j][j] - 2 * cov[a][j];
    q += s2 > 0 ? Phi(-margin / Math.sqrt(s2)) : margin > 0 ? 0 : 1;
  }
  return Math.min(1, q);
}

/** Wall and process CPU seconds since the call (CPU: user + system of every thread, process.cpuUsage). */
function stopwatch(): () => { seconds: number; cpuSeconds: number } {
  const t = performance.now();
  const c = process.cpuUsage();
  return () => {
    const u = process.cpuUsage(c);
    return { seconds: (performance.now() - t) / 1000, cpuSeconds: (u.user + u.system) / 1e6 };
  };
}

function median(v: number[]): number | null {
  if (v.length === 0) return null;
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Certify `count` inputs ([count, n] float32, model units) under N(0, sigma^2 I) on every element. */
export async function certify(
  model: LoadedModel,
  inputs: Float32Array,
  count: number,
  labels: ArrayLike<number> | null,
  options: CertifyOptions,
): Promise<CertifyReport> {
  const o = options;
  checkSigma(o.sigma, '--sigma', true);
  const N = o.mc ?? 0;
  const n0 = o.n0 ?? 100;
  const alpha = o.alpha ?? 0.001;
  if (!(Number.isInteger(N) && (N === 0 || N >= 2))) throw new NetmomentsError(`--mc must be 0 or a whole number >= 2, got ${N}`, { code: 'BAD_USAGE' });
  if (!(Number.isInteger(n0) && n0 >= 2)) throw new NetmomentsError(`--n0 must be a whole number >= 2, got ${n0}`, { code: 'BAD_USAGE' });
  if (!(alpha > 0 && alpha < 1)) throw new NetmomentsError(`--alpha must be a number in (0, 1), got ${alpha}`, { code: 'BAD_USAGE' });
  const analyzer = await Analyzer.create(model, { ...o, noise: { kind: 'isotropic', sigma: o.sigma }, variance: 'exact', covariance: true, mc: 0 });
  try {
    const n = analyzer.n;
    const d = analyzer.d;
    if (inputs.length !== count * n) throw new NetmomentsError(`${inputs.length} input values for ${count} inputs of ${n} elements`);
    const results: CertifyResult[] = [];
    for (let i = 0; i < count; i++) {
      const x = inputs.subarray(i * n, (i + 1) * n);
      const analyticTime = stopwatch();
      const r = await analyzer.analyzeInput(x, i);
      if (!r.classProbabilities || !r.covariance) throw new NetmomentsError(`input ${i}: the analysis gave no class probabilities`, { file: model.file });
      const a = argmax(r.classProbabilities);
      const qQmc = 1 - r.classProbabilities[a];
      const qBound = pairwiseMissBound(r.mean, r.covariance, a);
      const useBound = !(qQmc > 0) || qBound < qQmc;
      const q = useBound ? qBound : qQmc;
      const abstainA = !(q < 0.5);
      const analytic: AnalyticRadius = {
        kind: 'estimate',
        class: a,
        pA: 1 - q,
        pMiss: q,
        pMissFrom: useBound ? 'pairwise-bound' : 'qmc',
        pAError: r.classProbabilitiesError,
        radius: abstainA ? null : radiusFromMiss(o.sigma, q),
        abstain: abstainA,
        trust: r.trust,
        ...analyticTime(),
      };
      const result: CertifyResult = { input: i, label: labels ? Number(labels[i]) : null, cleanClass: r.cleanPredicted, analytic };
      if (N > 0) {
        const mcTime = stopwatch();
        const mu = Float64Array.from(x);
        const noise = analyzer.fullNoise();
        const evaluate = (xs: Float32Array, b: number) => analyzer.evaluate(xs, b);
        const bs = o.batchSize ?? 1000;
        const seed = seedFor(o.seed ?? 0, i);
        // two independent streams: the selection must not see the estimation's samples (Cohen et al., section 3.2)
        const pick = await monteCarloMoments(evaluate, d, mu, noise, { samples: n0, batchSize: bs, seed, classCounts: true });
        const cA = argmax(pick.classCounts!);
        const est = await monteCarloMoments(evaluate, d, mu, noise, { samples: N, batchSize: bs, seed: (seed ^ 0x5bd1e995) >>> 0, classCounts: true });
        const k = est.classCounts![cA];
        const pL = clopperPearsonLower(k, N, alpha);
        const abstain = pL < 0.5;
        result.mc = {
          kind: 'certificate',
          n0,
          n: N,
          alpha,
          class: cA,
          count: k,
          pALower: pL,
          radius: abstain ? null : radiusFromMiss(o.sigma, 1 - pL),
          abstain,
          ...mcTime(),
        };
      }
      results.push(result);
      o.onResult?.(result);
      o.onProgress?.(i + 1, count);
    }
    return { method: analyzer.method, methodReason: analyzer.decision.reason, sigma: o.sigma, results, summary: summarizeCertify(results) };
  } finally {
    await analyzer.release();
  }
}

/** The summary of a certify run (module comment; CertifySummary). */
export function summarizeCertify(results: CertifyResult[]): CertifySummary {
  const column = (
    pick: (r: CertifyResult) => { class: number; radius: number | null; abstain: boolean; seconds: number; cpuSeconds: number } | undefined,
  ): ColumnSummary | null => {
    const cols = results.map(pick);
    if (cols.some((c) => !c)) return null;
    const labelled = results.every((r) => r.label !== null);
    return {
      abstained: cols.filter((c) => c!.abstain).length,
      medianRadius: median(cols.filter((c) => !c!.abstain).map((c) => c!.radius!)),
      certifiedCorrect: labelled ? results.filter((r, i) => !cols[i]!.abstain && cols[i]!.class === r.label).length : null,
      seconds: cols.reduce((s, c) => s + c!.seconds, 0),
      cpuSeconds: cols.reduce((s, c) => s + c!.cpuSeconds, 0),
    };
  };
  const analytic = column((r) => r.analytic)!;
  const mc = column((r) => r.mc);
  let agreement: CertifySummary['agreement'] = null;
  if (mc) {
    const both = results.filter((r) => !r.analytic.abstain && !r.mc!.abstain);
    const diffs = both.map((r) => Math.abs(r.analytic.radius! - r.mc!.radius!));
    agreement = {
      classAgreement: results.filter((r) => r.analytic.class === r.mc!.class).length / results.length,
      compared: both.length,
      medianAbsRadiusDifference: median(diffs),
      maxAbsRadiusDifference: diffs.length ? Math.max(...diffs) : null,
    };
  }
  const trust = { ok: 0, warn: 0, fail: 0 };
  for (const r of results) trust[r.analytic.trust.verdict]++;
  return { inputs: results.length, analytic, mc, agreement, costRatio: mc && analytic.cpuSeconds > 0 ? mc.cpuSeconds / analytic.cpuSeconds : null, trust };
}
