/**
 * The outputs of `netmoments certify`: the netmoments.certify/1 JSON report
 * (schemas/certify.schema.json), the CSV (one row per input) and the stderr table, where the
 * analytic radius is labelled an estimate and the Monte Carlo one a certificate.
 */
import type { CertifyReport } from '../experiments/certify.js';
import { sig, toJson } from '../experiments/cli.js';
import { csv } from '../util/csv.js';

export const CERTIFY_SCHEMA = 'netmoments.certify/1';

/** What the report says about the run besides the result. */
export interface CertifyRunInfo {
  model: { file: string; sha256: string };
  /** The --input or --data file. */
  data: string;
  /** Which inputs of it (their indices in the file). */
  indices: number[];
  seed: number;
  version: string;
}

/** The netmoments.certify/1 report as JSON text. */
export function certifyJson(rep: CertifyReport, info: CertifyRunInfo): string {
  const first = rep.results.find((r) => r.mc)?.mc;
  return toJson({
    schema: CERTIFY_SCHEMA,
    model: info.model.file,
    data: info.data,
    method: rep.method,
    methodReason: rep.methodReason,
    noise: { kind: 'isotropic', sigma: rep.sigma, units: 'model input', support: 'every input element' },
    run: { version: info.version, modelSha256: info.model.sha256, seed: info.seed, mc: first ? { n0: first.n0, n: first.n, alpha: first.alpha } : null },
    summary: rep.summary,
    results: rep.results.map((r, i) => ({ ...r, input: info.indices[i] ?? r.input })),
  });
}

/** One CSV row per input: the analytic estimate and (with --mc) the MC certificate side by side. */
export function certifyCsv(rep: CertifyReport, indices: number[]): string {
  return csv(
    [
      'input',
      'label',
      'clean_class',
      'analytic_class',
      'analytic_pA',
      'analytic_radius',
      'analytic_abstain',
      'trust',
      'mc_class',
      'mc_count',
      'mc_n',
      'mc_pA_lower',
      'mc_radius',
      'mc_abstain',
    ],
    rep.results.map((r, i) => [
      indices[i] ?? r.input,
      r.label,
      r.cleanClass,
      r.analytic.class,
      r.analytic.pA,
      r.analytic.radius,
      r.analytic.abstain,
      r.analytic.trust.verdict,
      r.mc?.class,
      r.mc?.count,
      r.mc?.n,
      r.mc?.pALower,
      r.mc?.radius,
      r.mc?.abstain,
    ]),
  );
}

const radius = (r: number | null) => (r === null ? 'abstain' : sig(r, 4));

/** The stderr table: one line per input (the first `maxRows`), then the summary lines. */
export function certifyTable(rep: CertifyReport, indices: number[], maxRows = 20): string {
  const withMc = rep.results.some((r) => r.mc);
  const lines: string[] = [];
  lines.push(
    `certified L2 radius, sigma ${rep.sigma} (model input units, noise on every input element); analytic = estimate from the analytic class probabilities, not a certificate` +
      (withMc ? `; mc = Cohen et al.'s certificate (holds with probability 1 - alpha)` : ''),
  );
  const head = ['input', 'label', 'class', 'p_A', 'R analytic (estimate)', 'trust', ...(withMc ? ['class', 'p_A lower', 'R mc (certificate)'] : [])];
  const rows = rep.results
    .slice(0, maxRows)
    .map((r, i) => [
      String(indices[i] ?? r.input),
      r.label === null ? '-' : String(r.label),
      String(r.analytic.class),
      sig(r.analytic.pA, 6),
      radius(r.analytic.radius),
      r.analytic.trust.verdict,
      ...(r.mc ? [String(r.mc.class), sig(r.mc.pALower, 6), radius(r.mc.radius)] : []),
    ]);
  const widths = head.map((h, j) => Math.max(h.length, ...rows.map((row) => (row[j] ?? '').length)));
  const fmt = (row: string[]) => row.map((c, j) => c.padStart(widths[j])).join('  ');
  lines.push(fmt(head), ...rows.map(fmt));
  if (rep.results.length > maxRows) lines.push(`... ${rep.results.length - maxRows} more inputs in the report`);
  const s = rep.summary;
  const col = (name: string, c: NonNullable<typeof s.mc>) =>
    `${name}: ${s.inputs - c.abstained} of ${s.inputs} with a radius (${c.abstained} abstain), median radius ${c.medianRadius === null ? 'n/a' : sig(c.medianRadius, 4)}` +
    (c.certifiedCorrect !== null ? `, ${c.certifiedCorrect} with a radius and the label's class` : '') +
    `, ${sig(c.seconds, 3)} s (CPU ${sig(c.cpuSeconds, 3)} s)`;
  lines.push(`trust of the analytic estimate: ${s.trust.ok} ok, ${s.trust.warn} warn, ${s.trust.fail} fail`);
  lines.push(col('analytic (estimate)', s.analytic));
  if (s.mc) lines.push(col('mc (certificate)', s.mc));
  if (s.agreement) {
    const a = s.agreement;
    lines.push(
      `agreement: same class on ${sig(100 * a.classAgreement, 4)}% of the inputs; |R analytic - R mc| over ${a.compared} with both radii: median ${a.medianAbsRadiusDifference === null ? 'n/a' : sig(a.medianAbsRadiusDifference, 3)}, max ${a.maxAbsRadiusDifference === null ? 'n/a' : sig(a.maxAbsRadiusDifference, 3)}` +
        (s.costRatio !== null ? `; mc took ${sig(s.costRatio, 3)}x the analytic CPU time` : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}
