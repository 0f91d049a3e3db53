/** CSV and human-readable renderings of an analyze report. */
import { csv } from '../util/csv.js';

/**
 * The fields of an analyze report (src/analyze.ts AnalyzeReport) that these renderings read,
 * declared here so that report/ does not import the analysis it formats.
 */
export interface AnalyzeReportView {
  model: string;
  method?: string;
  rank?: number;
  /** null for propagate (no split). */
  split: { index: number; node: string; width: number } | null;
  output: { name: string; size: number };
  noise: { kind: string; sigma?: number; file?: string; window: number[] | null };
  linearizationPoint: string;
  results: AnalyzeResultView[];
}

/** One input's results, as AnalyzeReportView reads them. */
export interface AnalyzeResultView {
  input: number;
  mean: number[];
  variance: number[] | null;
  variancePaper: number[] | null;
  clean: number[];
  predicted: number;
  cleanPredicted: number;
  classProbabilities: number[] | null;
  flipProbability: number | null;
  marginBound: number | null;
  linearization: { expectedFlips: { node: string; units: number; expectedFlips: number; isSplit: boolean; sketch?: number }[] };
  mc?: { samples: number; mean: number[]; variance: number[]; flipRate?: number };
  /** The Monte Carlo check behind the trust verdict (analyze --trust-check), when it ran. */
  trustCheck?: { samples: number };
  trust?: { verdict: 'ok' | 'warn' | 'fail'; reasons: string[] };
}

const CSV_COLUMNS = [
  'input',
  'output_index',
  'mean',
  'variance',
  'variance_paper',
  'sd',
  'clean',
  'predicted',
  'clean_predicted',
  'class_probability',
  'flip_probability',
  'margin_bound',
  'mc_samples',
  'mc_mean',
  'mc_variance',
  'mc_flip_rate',
  'trust',
];

/** A number as JavaScript prints it (non-finite ones too), empty when absent. */
function num(v: number | null | undefined): string {
  return v === null || v === undefined ? '' : String(v);
}

/** One row per input and output index with the JSON's per-input fields repeated. */
export function analyzeCsv(report: AnalyzeReportView): string {
  const rows: (string | number)[][] = [];
  for (const r of report.results) {
    for (let i = 0; i < r.mean.length; i++) {
      rows.push([
        r.input,
        i,
        num(r.mean[i]),
        num(r.variance?.[i]),
        num(r.variancePaper?.[i]),
        num(r.variance ? Math.sqrt(r.variance[i]) : null),
        num(r.clean[i]),
        r.predicted,
        r.cleanPredicted,
        num(r.classProbabilities?.[i]),
        num(r.flipProbability),
        num(r.marginBound),
        r.mc ? r.mc.samples : '',
        num(r.mc?.mean[i]),
        num(r.mc?.variance[i]),
        num(r.mc?.flipRate),
        r.trust?.verdict ?? '',
      ]);
    }
  }
  return csv(CSV_COLUMNS, rows);
}

/** A number for the summary: fixed or exponential by size; 'n/a' for a value that is not a number (never "NaN"). */
const f = (v: number, digits = 4) => (Number.isNaN(v) ? 'n/a' : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(digits));

/** What stands behind a verdict the Monte Carlo check judged (analyze --trust-check), and where to see more. */
function checkedText(samples: number, verdict: 'ok' | 'warn' | 'fail'): string {
  return ` (checked against ${samples} Monte Carlo samples${verdict === 'ok' ? '' : '; --mc 2000 prints the comparison'})`;
}

/** A verdict as the summary shows it: "trust ok", "trust WARN: reason; reason", "trust FAIL: ...". */
export function trustText(t: { verdict: 'ok' | 'warn' | 'fail'; reasons: string[] }): string {
  return t.verdict === 'ok' ? 'trust ok' : `trust ${t.verdict.toUpperCase()}: ${t.reasons.join('; ')}`;
}

/**
 * What analyze writes to stdout: the explicit --format; else, when the report goes to a file
 * (--out), JSON to the file; else the human summary on a terminal (stdout a TTY) and JSON when
 * stdout is a pipe or a file (scripts keep getting JSON).
 */
export function analyzeStdoutFormat(format: 'json' | 'csv' | 'text' | undefined, out: string | undefined, stdoutIsTTY: boolean): 'json' | 'csv' | 'text' {
  if (format !== undefined) return format;
  return out === undefined && stdoutIsTTY ? 'text' : 'json';
}

/** A short account for a person, on stderr (or stdout with --format text or on a terminal). */
export function analyzeSummary(report: AnalyzeReportView, out?: string): string {
  const s = report.split;
  const how = s
    ? `split at ReLU ${s.index} ('${s.node}', p = ${s.width})`
    : `moments propagated through every layer${report.rank !== undefined ? ` (noise factor rank ${report.rank})` : ''}`;
  const noise = report.noise.kind === 'isotropic' ? `isotropic sigma ${report.noise.sigma}` : `${report.noise.kind} covariance from ${report.noise.file}`;
  const lines: string[] = [];
  lines.push(
    `analyzed ${report.results.length} input(s) of ${report.model}: ${how}, ` +
      `output '${report.output.name}' (d = ${report.output.size}), noise ${noise}${report.noise.window ? ` in window ${report.noise.window.join(',')}` : ''}, ` +
      (s ? `linearized at the ${report.linearizationPoint}` : 'no linearization point'),
  );
  const shown = report.results.slice(0, 5);
  for (const r of shown) {
    const flip = r.flipProbability === null ? 'n/a' : f(r.flipProbability, 3);
    if (r.trust) lines.push(`  input ${r.input}: ${trustText(r.trust)}${r.trustCheck ? checkedText(r.trustCheck.samples, r.trust.verdict) : ''}`);
    lines.push(
      `${r.trust ? '    ' : `  input ${r.input}: `}clean class ${r.cleanPredicted}, class of the mean ${r.predicted}, P(flip) ${flip}` +
        (r.marginBound !== null ? ` (Cantelli bound ${f(r.marginBound, 3)})` : '') +
        (r.mc?.flipRate !== undefined ? `   | Monte Carlo flip rate ${f(r.mc.flipRate, 3)}` : ''),
    );
    const order = r.mean
      .map((_, i) => i)
      .sort((a, b) => r.mean[b] - r.mean[a])
      .slice(0, Math.min(3, r.mean.length));
    for (const i of order) {
      const sd = r.variance ? ` sd ${f(Math.sqrt(r.variance[i]))}` : '';
      const sdp = r.variancePaper ? ` (paper sd ${f(Math.sqrt(r.variancePaper[i]))})` : '';
      const mc = r.mc ? `   | Monte Carlo (${r.mc.samples}): mean ${f(r.mc.mean[i])} sd ${f(Math.sqrt(r.mc.variance[i]))}` : '';
      lines.push(`    g[${i}]: mean ${f(r.mean[i])}${sd}${sdp}${mc}`);
    }
    const risky = r.linearization.expectedFlips.filter((l) => !l.isSplit && l.expectedFlips >= 1);
    if (risky.length > 0) {
      lines.push(
        `    linearization: expected state changes elsewhere: ${risky.map((l) => `${l.node} ${f(l.expectedFlips, 1)}/${l.units}`).join(', ')}` +
          ' (the surrogate holds these fixed' +
          (risky.some((l) => l.sketch !== undefined) ? `; estimated from a sketch of ${Math.max(...risky.map((l) => l.sketch ?? 0))} noise directions` : '') +
          ')',
      );
    }
  }
  if (report.results.length > shown.length) lines.push(`  ... ${report.results.length - shown.length} more`);
  if (out) lines.push(`report written to ${out}`);
  return `${lines.join('\n')}\n`;
}
