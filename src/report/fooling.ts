/**
 * The outputs of `netmoments fooling`: the netmoments.fooling/1 JSON report, the CSV (one row per
 * image) and the summary line.
 */
import { sig, toJson } from '../experiments/cli.js';
import type { FoolingResult } from '../experiments/fooling.js';
import { csv } from '../util/csv.js';

/** What the report says about the run besides the result. */
export interface FoolingRunInfo {
  /** The model file and its SHA-256. */
  model: { file: string; sha256: string };
  /** The data file, the perturbation file and its values. */
  data: string;
  perturbationFile: string;
  perturbation: Float64Array;
  sigma: number;
  mc: number;
  seed: number;
  version: string;
}

/** The netmoments.fooling/1 report as JSON text; the perturbation is summarized by its L2 and L-infinity norms. */
export function foolingJson(res: FoolingResult, info: FoolingRunInfo): string {
  let norm2 = 0,
    normInf = 0;
  for (const v of info.perturbation) {
    norm2 += v * v;
    normInf = Math.max(normInf, Math.abs(v));
  }
  return toJson({
    schema: 'netmoments.fooling/1',
    model: info.model.file,
    data: info.data,
    perturbation: { file: info.perturbationFile, l2: Math.sqrt(norm2), linf: normInf },
    method: res.method,
    methodReason: res.methodReason,
    ...(res.rank !== undefined ? { rank: res.rank } : {}),
    split: res.split,
    output: res.output,
    noise: { kind: 'isotropic', sigma: info.sigma },
    linearizationPoint: res.method === 'two-stage' ? 'input' : 'none',
    run: { version: info.version, modelSha256: info.model.sha256, seed: info.seed, mc: info.mc },
    images: res.images.length,
    predictedFoolingRate: res.predictedFoolingRate,
    realFoolingRate: res.realFoolingRate,
    expectedFoolingRate: res.expectedFoolingRate,
    sampledFoolingRate: res.sampledFoolingRate,
    agreement: res.agreement,
    missed: res.missed,
    falseAlarms: res.falseAlarms,
    topK: res.topK,
    topKMonteCarlo: res.topKMonteCarlo,
    results: res.images,
  });
}

/** One CSV row per image: classes, fooled or not (predicted and real), P(flip), sampled fooling, top-k agreement. */
export function foolingCsv(res: FoolingResult): string {
  return csv(
    [
      'input',
      'label',
      'clean_class',
      'predicted_class',
      'real_class',
      'predicted_fooled',
      'real_fooled',
      'flip_probability',
      'sampled_fooling',
      ...res.topK.map((t) => `top${t.k}_agree`),
    ],
    res.images.map((im) => [
      im.input,
      im.label,
      im.cleanClass,
      im.predictedClass,
      im.realClass,
      im.predictedFooled,
      im.realFooled,
      im.flipProbability,
      im.sampledFooling ?? null,
      ...im.topK,
    ]),
  );
}

/** The one-line summary on stderr: predicted, real, expected (and sampled) fooling rates and the top-k ordering accuracies. */
export function foolingSummary(res: FoolingResult, info: Pick<FoolingRunInfo, 'perturbationFile' | 'data' | 'sigma'>): string {
  return (
    `fooling of ${info.perturbationFile} on ${res.images.length} inputs of ${info.data} (${res.split ? `ReLU ${res.split.index}` : 'propagate'}, sigma ${info.sigma}): ` +
    `predicted ${sig(100 * res.predictedFoolingRate, 4)}%, real ${sig(100 * res.realFoolingRate, 4)}%, expected (P(flip)) ${sig(100 * res.expectedFoolingRate, 4)}%` +
    `${res.sampledFoolingRate !== null ? `, sampled ${sig(100 * res.sampledFoolingRate, 4)}%` : ''}; top-k ordering ${res.topK.map((t) => `${sig(100 * t.accuracy, 4)}%`).join(' ')}\n`
  );
}
