/**
 * Accuracy and flip rate against the noise level: the dataset report (runner.ts, as `report` runs
 * it, each input linearized at itself) once per sigma of isotropic noise, and with Monte Carlo on a
 * sample of the inputs, the Monte Carlo flip rate over those inputs with its 95% Clopper-Pearson
 * interval beside the analytic flip rate over the same inputs.
 *
 * The Monte Carlo rate pools K inputs x N samples: given the inputs the samples are independent
 * Bernoulli draws with per-input flip probabilities p_i, so their count's variance is at most that
 * of a binomial with the mean p (sum p_i (1 - p_i) <= K N pbar (1 - pbar)), and the binomial
 * Clopper-Pearson interval on the pooled count covers the mean flip probability of those inputs
 * at least as often as it says.
 *
 * The result's types live in src/report/sweep.ts, which formats them.
 */
import type { Analyzer } from '../analyze.js';
import type { Dataset } from '../data/dataset.js';
import { NetmomentsError } from '../errors.js';
import { parseNumberList } from '../experiments/common.js';
import { clopperPearsonInterval } from '../moments/beta.js';
import type { LoadedModel } from '../onnx/load.js';
import type { ReportSummary } from '../report/summary.js';
import type { SweepPoint, SweepResult } from '../report/sweep.js';
import type { ReportOptions } from './options.js';
import { runReport } from './runner.js';

/** Inputs start .. start + count - 1 of a dataset, as a dataset of their own (labels along). */
export function datasetRange(ds: Dataset, start: number, count: number): Dataset {
  if (start === 0 && count === ds.size) return ds;
  return {
    kind: ds.kind,
    source: ds.source,
    size: count,
    inputShape: ds.inputShape,
    labels: ds.labels?.subarray(start, start + count),
    preprocessing: ds.preprocessing,
    get: (i) => ds.get(start + i),
    getBatch: (indices) => ds.getBatch(indices.map((i) => start + i)),
    nameOf: (i) => ds.nameOf(start + i),
  };
}

const EXPECTS = 'numbers >= 0 as a list (1,2,4,8) or a range (0:32:8)';

/**
 * Parse `--sigma`: a list "1,2,4,8" or a range "start:stop:step" (stop included when the steps
 * reach it, e.g. 0:32:8 = 0, 8, 16, 24, 32). Every sigma finite and >= 0; at most 1000 of them.
 */
export function parseSigmaList(text: string): number[] {
  const t = String(text).trim();
  let out: number[];
  const range = /^([^:]+):([^:]+):([^:]+)$/.exec(t);
  if (range) {
    const [a, b, s] = range.slice(1).map(Number);
    if (![a, b, s].every(Number.isFinite) || !(s > 0) || b < a)
      throw new NetmomentsError(`--sigma start:stop:step needs finite numbers with step > 0 and stop >= start, got '${text}'`, { code: 'BAD_USAGE' });
    const k = Math.floor((b - a) / s + 1e-9);
    if (k >= 1000) throw new NetmomentsError(`--sigma '${text}' makes ${k + 1} noise levels; at most 1000`, { code: 'BAD_USAGE' });
    // a + j s, rounded to 12 significant digits so 0:1:0.1 gives 0.3, not 0.30000000000000004
    out = Array.from({ length: k + 1 }, (_, j) => Number((a + j * s).toPrecision(12)));
  } else {
    out = parseNumberList(t, '--sigma', EXPECTS);
    if (out.length > 1000) throw new NetmomentsError(`--sigma lists ${out.length} noise levels; at most 1000`, { code: 'BAD_USAGE' });
  }
  if (out.some((v) => v < 0)) throw new NetmomentsError(`--sigma expects ${EXPECTS}, got '${text}'`, { code: 'BAD_USAGE' });
  return out;
}

/** Run the dataset report at each sigma (isotropic noise, each input linearized at itself); nothing is written. */
export async function runSweep(
  model: LoadedModel,
  dataset: Dataset,
  sigmas: number[],
  options: Omit<ReportOptions, 'noise' | 'noiseFile' | 'linearize' | 'outDir' | 'resume' | 'shard'> & { onSigma?: (sigma: number, k: number) => void },
): Promise<SweepResult> {
  const points: SweepPoint[] = [];
  let first: ReportSummary | undefined;
  let method: SweepResult['method'];
  let methodReason: SweepResult['methodReason'];
  // one engine (split, sessions, tangent models) for every sigma with noise on the same elements
  const engines: Analyzer[] = [];
  try {
    for (const [k, sigma] of sigmas.entries()) {
      options.onSigma?.(sigma, k);
      const res = await runReport(model, dataset, { ...options, noise: { kind: 'isotropic', sigma }, linearize: { kind: 'input' }, engines });
      const s = res.summary;
      first ??= s;
      method ??= s.method;
      methodReason ??= s.methodReason;
      const sampled = res.records.filter((r) => r.mc && r.flip !== null);
      let mc: SweepPoint['mc'] = null;
      if (sampled.length > 0) {
        const samples = sampled.reduce((a, r) => a + r.mc!.samples, 0);
        // flip fractions times sample counts are whole numbers of flipped samples
        const flips = Math.round(sampled.reduce((a, r) => a + r.mc!.flip * r.mc!.samples, 0));
        mc = {
          inputs: sampled.length,
          samples,
          analyticFlipRate: sampled.reduce((a, r) => a + r.flip!, 0) / sampled.length,
          flipRate: flips / samples,
          interval: clopperPearsonInterval(flips, samples, 0.05),
        };
      }
      points.push({
        sigma,
        inputs: s.inputs,
        accuracyClean: s.accuracy?.clean ?? null,
        accuracyUnderNoise: s.accuracy?.underNoise ?? null,
        flipRate: s.flipRate,
        trustedFlipRate: s.trustedFlipRate,
        untrusted: s.untrusted,
        mc,
        seconds: res.seconds,
      });
    }
  } finally {
    for (const a of engines) await a.release();
  }
  return { method, methodReason, points, first: first! };
}
