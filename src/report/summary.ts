/**
 * A dataset report's outputs from its per-input records: samples.csv, summary.json
 * (netmoments.report/1) and summary.md. Pure functions of (header, records in index order), so
 * that an uninterrupted run, a resumed run and `netmoments merge` of shards write the same bytes.
 * No timestamps or timings go in these files.
 */
import type { SplitPoint } from '../onnx/splitpoint.js';
import { csv } from '../util/csv.js';
import { sha256Hex } from '../util/files.js';

export const REPORT_SCHEMA = 'netmoments.report/1';

/** What the report computed for one input. Numbers are float64; null where not computed. */
export interface SampleRecord {
  /** Input index in the dataset. */
  i: number;
  label: number | null;
  /** argmax of the model's own output at x. */
  clean: number;
  /** argmax of the mean under noise. */
  pred: number;
  /** Expected margin: mean[clean] - max over other classes of mean. */
  margin: number;
  /** P(argmax differs from clean) under N(mean, covariance). */
  flip: number | null;
  /** Class probabilities under noise (d). */
  probs: number[] | null;
  mean: number[];
  var: number[] | null;
  /** Bank centre used (kmeans/bank) and the distance to its linearization point. */
  centre: number | null;
  dist: number | null;
  /** Units of the split ReLU whose sign is uncertain under the noise (they carry the pair terms). */
  uncertain: number | null;
  mc?: { samples: number; mean: number[]; var: number[]; flip: number };
  /** With a bank: the centre's surrogate was off at the input (or no centre has its class), so it was linearized at itself. */
  fallback?: boolean;
  /** Whether the numbers can be trusted (src/trust.ts): "fail" makes the input untrusted. */
  trust: { verdict: 'ok' | 'warn' | 'fail'; reasons: string[] };
}

/** Everything in summary.json besides the statistics: where the numbers came from. */
export interface ReportHeader {
  model: string;
  data: { file: string; labels: string | null; count: number; sha256: string };
  /** Which engine computed the moments (src/method.ts), why, and the propagated noise factor's rank. */
  method?: 'two-stage' | 'propagate';
  methodReason?: string;
  rank?: number;
  /** The two-stage split; null for propagate. */
  split: SplitPoint | null;
  output: { name: string; shape: number[]; size: number };
  noise: { kind: string; sigma?: number; file?: string; sha256?: string; meanFile: string | null; window: number[] | null; layout?: string; support: number };
  linearization: {
    mode: 'input' | 'kmeans' | 'bank';
    k: number | null;
    bank: string | null;
    bankId: string | null;
    point: string | null;
    seed: number | null;
    /** With a bank: whether inputs take a centre of their class and fall back to their own linearization when it is off (absent without a bank). */
    fallback?: boolean;
  };
  run: {
    version: string;
    modelSha256: string;
    seed: number;
    fingerprint: string;
    variance: 'exact' | 'none';
    perLogit: boolean;
    probabilitySamples: number;
    mc: { samples: number; inputs: number } | null;
    /** Without mc: the Monte Carlo check behind the verdicts of `inputs` inputs (ReportOptions.trustCheck). */
    trustCheck?: { samples: number; inputs: number };
    chunk: number;
    jacobian: string;
  };
  /** Only in a shard's summary. */
  shard?: { index: number; count: number; chunks: number[] };
}

export interface ClassRow {
  class: number;
  inputs: number;
  cleanAccuracy: number | null;
  accuracyUnderNoise: number | null;
  accuracyOfMean: number | null;
  flipRate: number | null;
}

export interface ReportSummary extends ReportHeader {
  schema: typeof REPORT_SCHEMA;
  inputs: number;
  labelled: number;
  accuracy: { clean: number; underNoise: number | null; ofMean: number } | null;
  flipRate: number | null;
  /** The flip rate over the trusted inputs (verdict not "fail"); null without flip probabilities or trusted inputs. */
  trustedFlipRate: number | null;
  /** Inputs whose verdict is "fail". */
  untrusted: number;
  /** Inputs per verdict. */
  trust: { ok: number; warn: number; fail: number };
  /** With a bank: inputs linearized at themselves because their centre's surrogate was off there (null without a bank). */
  bankFallbacks: number | null;
  inputsLikelyToFlip: number | null;
  margin: { mean: number; min: number };
  /** Rows by label when every input has one, else by clean prediction. */
  classesBy: 'label' | 'cleanPrediction';
  perClass: ClassRow[];
  confusion: { rows: 'label' | 'cleanPrediction'; columns: 'classUnderNoise'; matrix: number[][] } | null;
  tightness: {
    inputs: number;
    samples: number;
    meanErrorSd: { median: number; max: number };
    varianceRatio: { median: number; min: number; max: number } | null;
    flip: { analytic: number; monteCarlo: number; maxAbsDifference: number } | null;
  } | null;
  files: { 'samples.csv': { sha256: string; rows: number } };
}

/** Largest d for which the confusion matrix is written. */
export const CONFUSION_MAX_CLASSES = 100;

function num(x: number | null | undefined): string {
  if (x === null || x === undefined) return '';
  if (Number.isInteger(x)) return String(x);
  return String(Number(x.toPrecision(10)));
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function sum(v: number[]): number {
  let s = 0;
  for (const x of v) s += x;
  return s;
}

/** Per-record MC tightness: max over logits of |MC mean - mean| / MC sd, median MC var / var. */
function mcStats(r: SampleRecord): { meanErr: number; varRatio: number | null } | null {
  if (!r.mc) return null;
  let meanErr = 0;
  const ratios: number[] = [];
  for (let j = 0; j < r.mean.length; j++) {
    const sd = Math.sqrt(r.mc.var[j]);
    const e = Math.abs(r.mc.mean[j] - r.mean[j]);
    meanErr = Math.max(meanErr, sd > 0 ? e / sd : e > 0 ? Infinity : 0);
    if (r.var && r.var[j] > 0) ratios.push(r.mc.var[j] / r.var[j]);
  }
  return { meanErr, varRatio: ratios.length ? median(ratios) : null };
}

/** samples.csv: one row per input (see the README for the columns). */
export function samplesCsv(h: ReportHeader, records: SampleRecord[]): string {
  const d = h.output.size;
  const bank = h.linearization.mode !== 'input';
  const cols = ['index', 'label', 'clean_class', 'predicted_class', 'expected_margin', 'flip_probability', 'p_label'];
  if (bank) cols.push('centre', 'centre_distance');
  cols.push('uncertain_units', 'trust');
  if (h.run.perLogit) {
    for (let j = 0; j < d; j++) cols.push(`mean_${j}`);
    if (h.run.variance !== 'none') for (let j = 0; j < d; j++) cols.push(`var_${j}`);
  }
  if (h.run.mc) {
    cols.push('mc_samples', 'mc_flip_rate', 'mc_mean_error_sd', 'mc_variance_ratio');
    if (h.run.perLogit) {
      for (let j = 0; j < d; j++) cols.push(`mc_mean_${j}`);
      for (let j = 0; j < d; j++) cols.push(`mc_var_${j}`);
    }
  }
  const rows: string[][] = [];
  for (const r of records) {
    const row: string[] = [
      num(r.i),
      num(r.label),
      num(r.clean),
      num(r.pred),
      num(r.margin),
      num(r.flip),
      r.probs && r.label !== null ? num(r.probs[r.label]) : '',
    ];
    if (bank) row.push(num(r.centre), num(r.dist));
    row.push(num(r.uncertain), r.trust.verdict);
    if (h.run.perLogit) {
      for (let j = 0; j < d; j++) row.push(num(r.mean[j]));
      if (h.run.variance !== 'none') for (let j = 0; j < d; j++) row.push(num(r.var ? r.var[j] : null));
    }
    if (h.run.mc) {
      const s = mcStats(r);
      row.push(num(r.mc?.samples), num(r.mc?.flip), num(s?.meanErr), num(s?.varRatio));
      if (h.run.perLogit) {
        for (let j = 0; j < d; j++) row.push(num(r.mc ? r.mc.mean[j] : null));
        for (let j = 0; j < d; j++) row.push(num(r.mc ? r.mc.var[j] : null));
      }
    }
    rows.push(row);
  }
  // every cell is a number printed by num or a verdict word (no comma, quote or newline), so none is quoted
  return csv(cols, rows);
}

/** The summary of `records` (all of a run's inputs, or a shard's, in index order). */
export function buildSummary(h: ReportHeader, records: SampleRecord[], csv: string): ReportSummary {
  const d = h.output.size;
  const labelled = records.filter((r) => r.label !== null).length;
  const byLabel = labelled === records.length && records.length > 0;
  const withProbs = records.every((r) => r.probs !== null) && records.length > 0;
  let accuracy: ReportSummary['accuracy'] = null;
  if (labelled > 0) {
    const L = records.filter((r) => r.label !== null);
    accuracy = {
      clean: L.filter((r) => r.clean === r.label).length / L.length,
      underNoise: withProbs ? sum(L.map((r) => r.probs![r.label!])) / L.length : null,
      ofMean: L.filter((r) => r.pred === r.label).length / L.length,
    };
  }
  const flipRate = withProbs ? sum(records.map((r) => r.flip!)) / records.length : null;
  const trusted = records.filter((r) => r.trust.verdict !== 'fail');
  const trustedFlipRate = withProbs && trusted.length > 0 ? sum(trusted.map((r) => r.flip!)) / trusted.length : null;
  const verdicts = { ok: 0, warn: 0, fail: 0 };
  for (const r of records) verdicts[r.trust.verdict]++;
  const rowOf = (r: SampleRecord) => (byLabel ? r.label! : r.clean);
  const perClass: ClassRow[] = [];
  for (let c = 0; c < d; c++) {
    const rs = records.filter((r) => rowOf(r) === c);
    if (rs.length === 0) continue;
    const lab = rs.filter((r) => r.label !== null);
    perClass.push({
      class: c,
      inputs: rs.length,
      cleanAccuracy: lab.length ? lab.filter((r) => r.clean === r.label).length / lab.length : null,
      accuracyUnderNoise: lab.length && withProbs ? sum(lab.map((r) => r.probs![r.label!])) / lab.length : null,
      accuracyOfMean: lab.length ? lab.filter((r) => r.pred === r.label).length / lab.length : null,
      flipRate: withProbs ? sum(rs.map((r) => r.flip!)) / rs.length : null,
    });
  }
  let confusion: ReportSummary['confusion'] = null;
  if (withProbs && d <= CONFUSION_MAX_CLASSES) {
    const M = Array.from({ length: d }, () => new Array<number>(d).fill(0));
    for (const r of records) {
      const row = M[rowOf(r)];
      for (let j = 0; j < d; j++) row[j] += r.probs![j];
    }
    confusion = { rows: byLabel ? 'label' : 'cleanPrediction', columns: 'classUnderNoise', matrix: M.map((row) => row.map((v) => Number(v.toPrecision(12)))) };
  }
  let tightness: ReportSummary['tightness'] = null;
  const mcs = records.filter((r) => r.mc);
  if (mcs.length > 0) {
    const st = mcs.map((r) => mcStats(r)!);
    const ratios = st.map((s) => s.varRatio).filter((v): v is number => v !== null);
    const flips = mcs.filter((r) => r.flip !== null);
    tightness = {
      inputs: mcs.length,
      samples: mcs[0].mc!.samples,
      meanErrorSd: { median: median(st.map((s) => s.meanErr)), max: Math.max(...st.map((s) => s.meanErr)) },
      varianceRatio: ratios.length ? { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) } : null,
      flip: flips.length
        ? {
            analytic: sum(flips.map((r) => r.flip!)) / flips.length,
            monteCarlo: sum(flips.map((r) => r.mc!.flip)) / flips.length,
            maxAbsDifference: Math.max(...flips.map((r) => Math.abs(r.flip! - r.mc!.flip))),
          }
        : null,
    };
  }
  const out: ReportSummary = {
    schema: REPORT_SCHEMA,
    model: h.model,
    data: h.data,
    ...(h.method ? { method: h.method, methodReason: h.methodReason } : {}),
    ...(h.rank !== undefined ? { rank: h.rank } : {}),
    split: h.split,
    output: h.output,
    noise: h.noise,
    linearization: h.linearization,
    run: h.run,
    ...(h.shard ? { shard: h.shard } : {}),
    inputs: records.length,
    labelled,
    accuracy,
    flipRate,
    trustedFlipRate,
    untrusted: verdicts.fail,
    trust: verdicts,
    bankFallbacks: h.linearization.mode === 'input' ? null : records.filter((r) => r.fallback).length,
    inputsLikelyToFlip: withProbs ? records.filter((r) => r.flip! > 0.5).length : null,
    margin: records.length ? { mean: sum(records.map((r) => r.margin)) / records.length, min: Math.min(...records.map((r) => r.margin)) } : { mean: 0, min: 0 },
    classesBy: byLabel ? 'label' : 'cleanPrediction',
    perClass,
    confusion,
    tightness,
    files: { 'samples.csv': { sha256: sha256Hex(csv), rows: records.length } },
  };
  return out;
}

function pct(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || Number.isNaN(x) ? 'n/a' : `${(100 * x).toFixed(digits)}%`;
}

function fmt(x: number, digits = 4): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'n/a' : String(x);
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(digits);
}

/** How the report's noise and linearization read in a sentence. */
export function describeRun(s: ReportHeader): { noise: string; linearization: string } {
  const n = s.noise;
  const noise =
    (n.kind === 'isotropic' ? `isotropic Gaussian, sigma ${n.sigma} (model input units)` : `${n.kind} Gaussian covariance from ${n.file}`) +
    (n.window ? `, only in window rows ${n.window[0]}..${n.window[0] + n.window[2] - 1}, columns ${n.window[1]}..${n.window[1] + n.window[3] - 1}` : '') +
    (n.meanFile ? `, mean shifted by ${n.meanFile}` : '');
  const l = s.linearization;
  const linearization =
    s.method === 'propagate'
      ? `moments propagated through every layer (noise factor rank ${s.rank}), no linearization`
      : l.mode === 'input'
        ? 'linearized at every input'
        : `linearized at the nearest of ${l.k} k-means centres${l.fallback ? ' of its class' : ''}${l.point === 'farthest' ? " (each centre's farthest member)" : ''}${l.mode === 'bank' ? ` from the bank ${l.bank}` : ''}` +
          (l.fallback ? ", or at the input itself where that centre's surrogate is off there" : '');
  return { noise, linearization };
}

/** summary.md: the report a person attaches to a pull request. */
export function summaryMarkdown(s: ReportSummary, records: SampleRecord[]): string {
  const { noise, linearization } = describeRun(s);
  const L: string[] = [];
  L.push(`# netmoments report: ${s.model} on ${s.data.file}`);
  L.push('');
  L.push(
    `Output \`${s.output.name}\` (${s.output.size} classes) under ${noise}; ${s.split ? `split at ReLU ${s.split.index} ('${s.split.node}', p = ${s.split.width}), ` : ''}${linearization}. ` +
      (s.split
        ? 'Mean and exact variance in closed form (Bibi et al. 2018 with the exact second moment); class probabilities under N(mean, covariance).'
        : 'Mean and covariance of the statistically linearized network, each op by its moment rule; class probabilities under N(mean, covariance).'),
  );
  if (s.shard) L.push('', `This is shard ${s.shard.index} of ${s.shard.count}: combine the shards with \`netmoments merge\`.`);
  L.push('');
  L.push('| | |');
  L.push('|---|---|');
  L.push(`| inputs | ${s.inputs}${s.labelled ? ` (${s.labelled} labelled)` : ' (no labels)'} |`);
  if (s.accuracy) {
    L.push(`| clean accuracy | ${pct(s.accuracy.clean)} |`);
    L.push(`| accuracy under noise (expected, from the moments) | ${pct(s.accuracy.underNoise)} |`);
    L.push(`| accuracy of the mean's class | ${pct(s.accuracy.ofMean)} |`);
  }
  L.push(`| flip rate (mean P(class changes under noise)) | ${pct(s.flipRate, 3)} |`);
  L.push(`| trust (ok / warn / fail) | ${s.trust.ok} / ${s.trust.warn} / ${s.trust.fail} |`);
  if (s.untrusted > 0) L.push(`| flip rate over the ${s.inputs - s.untrusted} trusted inputs | ${pct(s.trustedFlipRate, 3)} |`);
  if (s.bankFallbacks !== null) L.push(`| inputs linearized at themselves (their centre's surrogate was off there) | ${s.bankFallbacks} |`);
  if (s.inputsLikelyToFlip !== null) L.push(`| inputs more likely than not to flip | ${s.inputsLikelyToFlip} |`);
  L.push(`| expected margin (mean, smallest) | ${fmt(s.margin.mean)}, ${fmt(s.margin.min)} |`);
  if (s.perClass.length > 0) {
    L.push('', `## Per class (rows by ${s.classesBy === 'label' ? 'label' : 'clean prediction'})`, '');
    L.push('| class | inputs | clean accuracy | accuracy under noise | flip rate |');
    L.push('|---:|---:|---:|---:|---:|');
    for (const c of s.perClass) L.push(`| ${c.class} | ${c.inputs} | ${pct(c.cleanAccuracy, 1)} | ${pct(c.accuracyUnderNoise, 1)} | ${pct(c.flipRate, 2)} |`);
  }
  if (s.confusion && s.output.size <= 20) {
    const d = s.output.size;
    L.push('', `## Confusion under noise`, '');
    L.push(
      `Expected counts from the class probabilities; rows: ${s.confusion.rows === 'label' ? 'label' : 'clean prediction'}, columns: class under noise.`,
      '',
    );
    L.push(`| | ${Array.from({ length: d }, (_, j) => j).join(' | ')} |`);
    L.push(`|---:|${'---:|'.repeat(d)}`);
    s.confusion.matrix.forEach((row, i) => {
      if (row.every((v) => v === 0)) return;
      L.push(`| **${i}** | ${row.map((v) => (v === 0 ? '.' : v >= 10 ? v.toFixed(0) : v.toFixed(1))).join(' | ')} |`);
    });
  }
  if (s.tightness) {
    const t = s.tightness;
    L.push('', '## Tightness (Monte Carlo through the real model)', '');
    L.push(`${t.inputs} inputs spread over the data, ${t.samples} samples each:`, '');
    L.push(
      `- mean error, largest over logits, in Monte Carlo standard deviations: median ${fmt(t.meanErrorSd.median, 3)}, largest ${fmt(t.meanErrorSd.max, 3)}`,
    );
    if (t.varianceRatio)
      L.push(
        `- variance, Monte Carlo / analytic (median over logits): median ${fmt(t.varianceRatio.median, 3)}, range ${fmt(t.varianceRatio.min, 3)} to ${fmt(t.varianceRatio.max, 3)}`,
      );
    if (t.flip)
      L.push(
        `- flip probability: analytic ${pct(t.flip.analytic, 3)} against Monte Carlo ${pct(t.flip.monteCarlo, 3)} (largest difference ${pct(t.flip.maxAbsDifference, 2)})`,
      );
  }
  const doubtful = records.filter((r) => r.trust.verdict !== 'ok');
  const check = s.run.trustCheck;
  const checkLine = check
    ? `The verdicts of ${check.inputs} input(s) spread over the data stand on a Monte Carlo check of ${check.samples} samples each through the real model (\`--trust-check\`; \`--mc\` shows the comparison).`
    : undefined;
  if (doubtful.length > 0) {
    const order = { fail: 0, warn: 1, ok: 2 };
    const shown = [...doubtful].sort((a, b) => order[a.trust.verdict] - order[b.trust.verdict] || a.i - b.i).slice(0, 10);
    L.push('', '## Trust', '');
    if (checkLine) L.push(checkLine, '');
    L.push(`${s.trust.fail} input(s) failed the checks (their numbers are wrong), ${s.trust.warn} drew a warning:`, '');
    L.push('| input | verdict | reasons |');
    L.push('|---:|---|---|');
    for (const r of shown) L.push(`| ${r.i} | ${r.trust.verdict} | ${r.trust.reasons.join('; ').replace(/\|/g, '\\|')} |`);
  } else if (checkLine) L.push('', '## Trust', '', `Every input is "ok". ${checkLine}`);
  if (records.some((r) => r.flip !== null)) {
    const worst = records
      .filter((r) => r.flip !== null)
      .sort((a, b) => b.flip! - a.flip! || a.i - b.i)
      .slice(0, 10);
    L.push('', '## Least robust inputs', '');
    L.push('| input | label | clean class | class of the mean | P(flip) | expected margin |');
    L.push('|---:|---:|---:|---:|---:|---:|');
    for (const r of worst) L.push(`| ${r.i} | ${r.label ?? ''} | ${r.clean} | ${r.pred} | ${pct(r.flip, 2)} | ${fmt(r.margin)} |`);
  }
  L.push('', '---', '');
  L.push(
    `netmoments ${s.run.version} · model sha256 \`${s.run.modelSha256.slice(0, 16)}\` · data sha256 \`${s.data.sha256.slice(0, 16)}\` · seed ${s.run.seed} · ` +
      `${s.run.probabilitySamples} points per class-probability estimate · run fingerprint \`${s.run.fingerprint.slice(0, 16)}\``,
  );
  return `${L.join('\n')}\n`;
}

/** The three outputs (and, for a shard, records.ndjson) from a header and records in index order. */
export function reportFiles(h: ReportHeader, records: SampleRecord[]): { files: Record<string, string>; summary: ReportSummary } {
  const csv = samplesCsv(h, records);
  const summary = buildSummary(h, records, csv);
  const files: Record<string, string> = {
    'samples.csv': csv,
    'summary.md': summaryMarkdown(summary, records),
  };
  if (h.shard) files['records.ndjson'] = records.map((r) => JSON.stringify(r)).join('\n') + (records.length ? '\n' : '');
  files['summary.json'] = `${JSON.stringify(summary, null, 2)}\n`;
  return { files, summary };
}
