/**
 * The outputs of `netmoments sweep`: sweep.csv (one row per sigma), sweep.json
 * (netmoments.sweep/1, schemas/sweep.schema.json), sweep.svg (accuracy and flip rate against sigma,
 * with the Monte Carlo check points and their 95% intervals as error bars, the legend below the plot
 * so it covers no data) and the stderr table.
 */
import type { ReportSummary } from './summary.js';
import { csv } from '../util/csv.js';
import { escapeXml, formatTick, niceTicks, PALETTE } from './svg.js';

export const SWEEP_SCHEMA = 'netmoments.sweep/1';

/** One sigma of the sweep. */
export interface SweepPoint {
  sigma: number;
  inputs: number;
  /** Clean accuracy and expected accuracy under noise (null without labels). */
  accuracyClean: number | null;
  accuracyUnderNoise: number | null;
  /** Mean over all inputs of P(class under noise != clean class), the analytic flip rate (report's flipRate). */
  flipRate: number | null;
  /** The same over the trusted inputs, and how many are not. */
  trustedFlipRate: number | null;
  untrusted: number;
  /** With Monte Carlo: over the inputs that got samples. */
  mc: {
    inputs: number;
    samples: number;
    /** Analytic flip rate over the same inputs. */
    analyticFlipRate: number;
    flipRate: number;
    /** 95% Clopper-Pearson interval of the pooled Monte Carlo flip count (module comment). */
    interval: [number, number];
  } | null;
  seconds: number;
}

export interface SweepResult {
  method: string | undefined;
  methodReason: string | undefined;
  points: SweepPoint[];
  /** The report summary at the first sigma (header fields: model, data, output). */
  first: ReportSummary;
}

export interface SweepRunInfo {
  model: { file: string; sha256: string };
  data: string;
  labels: string | null;
  seed: number;
  mc: number;
  mcInputs: number;
  /** Without mc: the Monte Carlo check's samples behind the mcInputs inputs' verdicts (0: none). */
  trustCheck: number;
  version: string;
}

/** One row per sigma. */
export function sweepCsv(r: SweepResult): string {
  return csv(
    [
      'sigma',
      'inputs',
      'accuracy_clean',
      'accuracy_under_noise',
      'flip_rate',
      'trusted_flip_rate',
      'untrusted',
      'mc_inputs',
      'mc_samples',
      'analytic_flip_rate_mc_inputs',
      'mc_flip_rate',
      'mc_flip_rate_lo95',
      'mc_flip_rate_hi95',
    ],
    r.points.map((p) => [
      p.sigma,
      p.inputs,
      p.accuracyClean,
      p.accuracyUnderNoise,
      p.flipRate,
      p.trustedFlipRate,
      p.untrusted,
      p.mc?.inputs,
      p.mc?.samples,
      p.mc?.analyticFlipRate,
      p.mc?.flipRate,
      p.mc?.interval[0],
      p.mc?.interval[1],
    ]),
  );
}

/** The netmoments.sweep/1 JSON text. */
export function sweepJson(r: SweepResult, info: SweepRunInfo): string {
  const f = r.first;
  return `${JSON.stringify(
    {
      schema: SWEEP_SCHEMA,
      model: info.model.file,
      data: { file: info.data, labels: info.labels, count: f.inputs },
      method: r.method ?? null,
      methodReason: r.methodReason ?? null,
      output: f.output,
      noise: { kind: 'isotropic', units: 'model input', sigmas: r.points.map((p) => p.sigma) },
      run: {
        version: info.version,
        modelSha256: info.model.sha256,
        seed: info.seed,
        mc: info.mc,
        // the inputs that got samples: at most the data's
        mcInputs: info.mc > 0 || info.trustCheck > 0 ? Math.min(info.mcInputs, f.inputs) : 0,
        ...(info.trustCheck > 0 ? { trustCheck: info.trustCheck } : {}),
      },
      points: r.points,
    },
    null,
    2,
  )}\n`;
}

const pct = (v: number | null | undefined, digits = 2) => (v === null || v === undefined ? '-' : `${(100 * v).toFixed(digits)}%`);

/** The stderr table: one line per sigma. */
export function sweepTable(r: SweepResult): string {
  const head = ['sigma', 'accuracy', 'under noise', 'flip rate', 'trusted', 'untrusted', 'MC inputs', 'analytic there', 'MC flip rate (95% interval)'];
  const rows = r.points.map((p) => [
    String(p.sigma),
    pct(p.accuracyClean),
    pct(p.accuracyUnderNoise),
    pct(p.flipRate, 3),
    pct(p.trustedFlipRate, 3),
    String(p.untrusted),
    p.mc ? String(p.mc.inputs) : '-',
    p.mc ? pct(p.mc.analyticFlipRate, 3) : '-',
    p.mc ? `${pct(p.mc.flipRate, 3)} (${pct(p.mc.interval[0], 2)} .. ${pct(p.mc.interval[1], 2)})` : '-',
  ]);
  const widths = head.map((h, j) => Math.max(h.length, ...rows.map((row) => row[j].length)));
  const fmt = (row: string[]) => row.map((c, j) => c.padStart(widths[j])).join('  ');
  return `${[fmt(head), ...rows.map(fmt)].join('\n')}\n`;
}

const n2 = (v: number) => Number(v.toFixed(2)).toString();

/**
 * sweep.svg: accuracy under noise and flip rate (percent) against sigma as lines with markers, the
 * analytic flip rate over the Monte Carlo inputs as open squares and the Monte Carlo flip rate as
 * filled diamonds with 95% error bars; the legend sits under the x axis.
 */
export function sweepSvg(r: SweepResult, title: string): string {
  const W = 640;
  const H = 470;
  const left = 70;
  const right = 24;
  const top = 48;
  const legendRows = 2;
  const bottom = 64 + 18 * legendRows;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const sig = r.points.map((p) => p.sigma);
  let xlo = Math.min(...sig);
  let xhi = Math.max(...sig);
  if (!(xhi > xlo)) {
    xlo -= 1;
    xhi += 1;
  }
  const xpad = (xhi - xlo) * 0.04;
  xlo -= xpad;
  xhi += xpad;
  const X = (v: number) => left + ((v - xlo) / (xhi - xlo)) * pw;
  const Y = (v: number) => top + ph - (v / 100) * ph; // percent, 0 .. 100
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  parts.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  for (const t of niceTicks(xlo, xhi, 8)) {
    const x = n2(X(t));
    parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + ph}" stroke="#e6e6e6"/>`);
    parts.push(`<text x="${x}" y="${top + ph + 16}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
  }
  for (let t = 0; t <= 100; t += 20) {
    const y = n2(Y(t));
    parts.push(`<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#e6e6e6"/>`);
    parts.push(`<text x="${left - 6}" y="${n2(Y(t) + 4)}" text-anchor="end">${t}%</text>`);
  }
  parts.push(`<text x="${left + pw / 2}" y="${top + ph + 36}" text-anchor="middle">sigma (noise sd, model input units)</text>`);
  parts.push(`<text transform="translate(18 ${top + ph / 2}) rotate(-90)" text-anchor="middle">percent of inputs</text>`);
  const legend: string[] = [];
  const series = (name: string, values: (number | null)[], color: string) => {
    const pts = r.points.map((p, i) => [p.sigma, values[i]] as const).filter(([, v]) => v !== null && Number.isFinite(v));
    if (pts.length === 0) return;
    parts.push(`<polyline points="${pts.map(([s, v]) => `${n2(X(s))},${n2(Y(100 * v!))}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [s, v] of pts) parts.push(`<circle cx="${n2(X(s))}" cy="${n2(Y(100 * v!))}" r="3.5" fill="${color}"/>`);
    legend.push(
      `<g><line x1="0" y1="-4" x2="20" y2="-4" stroke="${color}" stroke-width="2"/><circle cx="10" cy="-4" r="3.5" fill="${color}"/><text x="26" y="0">${escapeXml(name)}</text></g>`,
    );
  };
  series(
    'accuracy under noise (analytic)',
    r.points.map((p) => p.accuracyUnderNoise),
    PALETTE[2],
  );
  series(
    'flip rate (analytic, all inputs)',
    r.points.map((p) => p.flipRate),
    PALETTE[0],
  );
  const withMc = r.points.filter((p) => p.mc);
  if (withMc.length > 0) {
    const mcColor = PALETTE[1];
    for (const p of withMc) {
      const x = X(p.sigma);
      const [lo, hi] = p.mc!.interval;
      parts.push(`<line x1="${n2(x)}" y1="${n2(Y(100 * lo))}" x2="${n2(x)}" y2="${n2(Y(100 * hi))}" stroke="${mcColor}" stroke-width="1.5"/>`);
      for (const v of [lo, hi])
        parts.push(`<line x1="${n2(x - 5)}" y1="${n2(Y(100 * v))}" x2="${n2(x + 5)}" y2="${n2(Y(100 * v))}" stroke="${mcColor}" stroke-width="1.5"/>`);
      const y = Y(100 * p.mc!.flipRate);
      parts.push(`<path d="M ${n2(x)} ${n2(y - 5)} L ${n2(x + 5)} ${n2(y)} L ${n2(x)} ${n2(y + 5)} L ${n2(x - 5)} ${n2(y)} Z" fill="${mcColor}"/>`);
      const ya = Y(100 * p.mc!.analyticFlipRate);
      parts.push(`<rect x="${n2(x + 7)}" y="${n2(ya - 3.5)}" width="7" height="7" fill="none" stroke="${PALETTE[0]}" stroke-width="1.5"/>`);
    }
    const k = withMc[0].mc!.inputs;
    legend.push(
      `<g><path d="M 10 -9 L 15 -4 L 10 1 L 5 -4 Z" fill="${mcColor}"/><line x1="10" y1="-12" x2="10" y2="4" stroke="${mcColor}" stroke-width="1.5"/><text x="26" y="0">${escapeXml(`Monte Carlo flip rate, ${k} inputs (95% interval)`)}</text></g>`,
      `<g><rect x="6.5" y="-7.5" width="7" height="7" fill="none" stroke="${PALETTE[0]}" stroke-width="1.5"/><text x="26" y="0">${escapeXml(`analytic flip rate on the same ${k} inputs`)}</text></g>`,
    );
  }
  // two columns under the axis label
  legend.forEach((g, i) => {
    const x = left + (i % 2) * (pw / 2);
    const y = top + ph + 58 + 18 * Math.floor(i / 2);
    parts.push(`<g transform="translate(${n2(x)} ${y})">${g}</g>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
