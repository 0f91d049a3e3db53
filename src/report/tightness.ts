/**
 * The files of `netmoments tightness`: tightness.json (netmoments.tightness/1), runs.csv (one row
 * per run and output), three SVG scatter plots per study (the paper's Figure 2) and one figure
 * with the three side by side and one legend below them, and the summary text of a study.
 */
import { sig, toJson } from '../experiments/cli.js';
import type { TightnessStudy } from '../experiments/tightness.js';
import { csv, type CsvCell } from '../util/csv.js';
import { scatterGridSvg, scatterSvg, type ScatterOptions } from './svg.js';

/** The run settings tightness.json records. */
export interface TightnessRunInfo {
  version: string;
  seed: number;
  runs: number;
  mc: number;
  preset: 'paper' | null;
}

/** Every file of a tightness run (name -> content): the plots of each study, tightness.json and runs.csv. */
export function tightnessFiles(studies: TightnessStudy[], run: TightnessRunInfo): Record<string, string> {
  const files: Record<string, string> = {};
  const plots: Record<string, Record<string, string>> = {};
  for (const s of studies) {
    const f = tightnessPlots(s);
    Object.assign(files, f);
    const names = Object.keys(f);
    plots[s.name] = { mean: names[0], variance: names[1], variancePaper: names[2], combined: names[3] };
  }
  const report = { schema: 'netmoments.tightness/1', run, studies: studies.map((s) => ({ ...s, plots: plots[s.name] })) };
  files['tightness.json'] = toJson(report);
  files['runs.csv'] = runsCsv(studies);
  return files;
}

/** runs.csv: one row per (study, run, output), analytic beside Monte Carlo. */
export function runsCsv(studies: TightnessStudy[]): string {
  const rows: CsvCell[][] = [];
  for (const s of studies) {
    for (const r of s.runDetails) {
      for (let i = 0; i < s.output.size; i++) {
        rows.push([
          s.name,
          r.run,
          r.input ?? null,
          r.maxVariance ?? null,
          i,
          r.analytic.mean[i],
          r.mc.mean[i],
          r.mc.meanStdErr[i],
          r.analytic.variance[i],
          r.analytic.variancePaper[i],
          r.mc.variance[i],
          r.propagate?.mean[i] ?? null,
          r.propagate?.variance[i] ?? null,
        ]);
      }
    }
  }
  return csv(
    [
      'study',
      'run',
      'input',
      'max_variance',
      'output',
      'mean',
      'mc_mean',
      'mc_mean_stderr',
      'variance',
      'variance_paper',
      'mc_variance',
      'propagate_mean',
      'propagate_variance',
    ],
    rows,
  );
}

/** The stderr summary of one study: the fit and each output's Table-1 ratios. */
export function tightnessSummary(s: TightnessStudy): string {
  const f = s.fit;
  const lines = [
    `${s.name}: ${s.runs} runs x ${s.mc} MC samples, ReLU ${s.split.index} (p = ${s.split.width}); slope through origin (R^2): mean ${sig(f.mean.slope, 4)} (${sig(f.mean.r2)}), exact variance ${sig(f.variance.slope, 4)} (${sig(f.variance.r2)}), paper variance ${sig(f.variancePaper.slope, 4)} (${sig(f.variancePaper.r2)})`,
  ];
  if (s.propagate?.rank) lines.push(`  propagate column: moments through every layer, noise factor rank ${s.propagate.rank} (${s.propagate.reason})`);
  else if (s.propagate) lines.push(`  no propagate column: ${s.propagate.reason}`);
  for (const row of s.table) {
    const p = row.propagate;
    lines.push(
      `  g[${row.output}]: MC/analytic mean ${sig(row.meanRatio.mean)} +- ${sig(row.meanRatio.std)}, exact var ${sig(row.varianceRatio.mean)} +- ${sig(row.varianceRatio.std)}, paper var ${sig(row.variancePaperRatio.mean)} +- ${sig(row.variancePaperRatio.std)}; |mean error| ${sig(row.meanErrorSd.mean)} +- ${sig(row.meanErrorSd.std)} output sd` +
        (p
          ? `; propagate: var ${sig(p.varianceRatio.mean)} +- ${sig(p.varianceRatio.std)}, |mean error| ${sig(p.meanErrorSd.mean)} +- ${sig(p.meanErrorSd.std)} output sd`
          : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The SVG scatter plots of a study (file name -> SVG text): mean, exact variance, paper variance, and the three combined. */
export function tightnessPlots(s: TightnessStudy): Record<string, string> {
  const files: Record<string, string> = {};
  const d = s.output.size;
  const series = (pick: (r: TightnessStudy['runDetails'][number]) => { x: number[]; y: number[] }) =>
    Array.from({ length: d }, (_, i) => ({
      name: d > 1 ? `output ${i}` : '',
      x: s.runDetails.map((r) => pick(r).x[i]),
      y: s.runDetails.map((r) => pick(r).y[i]),
    }));
  const where =
    s.mode === 'synthetic'
      ? `max variance ${s.noise.maxVariance}${s.noise.inputMeanSd ? `, input mean sd ${s.noise.inputMeanSd}` : ', zero input'}`
      : s.noise.sigma !== undefined
        ? `sigma ${s.noise.sigma}`
        : `noise ${s.noise.file}`;
  const sub = (f: { slope: number; r2: number }) =>
    `${s.runs} runs, ${s.mc} MC samples, ReLU ${s.split.index}, ${where}; slope ${sig(f.slope, 4)}, R^2 ${sig(f.r2, 3)}`;
  const plots: ScatterOptions[] = [
    {
      title: `${s.name}: mean`,
      subtitle: sub(s.fit.mean),
      xLabel: 'analytic mean (Theorem 1)',
      yLabel: 'Monte Carlo mean',
      series: series((r) => ({ x: r.analytic.mean, y: r.mc.mean })),
      slope: s.fit.mean.slope,
    },
    {
      title: `${s.name}: exact variance`,
      subtitle: sub(s.fit.variance),
      xLabel: 'analytic variance (exact, any means)',
      yLabel: 'Monte Carlo variance',
      series: series((r) => ({ x: r.analytic.variance, y: r.mc.variance })),
      slope: s.fit.variance.slope,
      log: 'auto',
    },
    {
      title: `${s.name}: paper's variance`,
      subtitle: sub(s.fit.variancePaper),
      xLabel: "analytic variance (paper's Theorem 2)",
      yLabel: 'Monte Carlo variance',
      series: series((r) => ({ x: r.analytic.variancePaper, y: r.mc.variance })),
      slope: s.fit.variancePaper.slope,
      log: 'auto',
    },
  ];
  files[`${s.name}-mean.svg`] = scatterSvg(plots[0]);
  files[`${s.name}-variance.svg`] = scatterSvg(plots[1]);
  files[`${s.name}-variance-paper.svg`] = scatterSvg(plots[2]);
  // the combined figure: the run settings once in its subtitle, each panel with only its fit
  const fitOnly = (f: { slope: number; r2: number }) => `slope ${sig(f.slope, 4)}, R^2 ${sig(f.r2, 3)}`;
  const fits = [s.fit.mean, s.fit.variance, s.fit.variancePaper];
  files[`${s.name}-tightness.svg`] = scatterGridSvg({
    title: `${s.name}: closed form against Monte Carlo`,
    subtitle: `${s.runs} runs, ${s.mc} MC samples, ReLU ${s.split.index}, ${where}`,
    plots: plots.map((p, k) => ({ ...p, title: p.title.slice(s.name.length + 2), subtitle: fitOnly(fits[k]) })),
  });
  return files;
}
