/**
 * `report --html`: one self-contained HTML page of a dataset report (no external resources: inline
 * CSS, inline SVG, data-URI PNG). It shows only what the report computed: the summary (as in
 * summary.json), the per-class rows with a bar chart of their flip rates, the Monte Carlo
 * tightness when the run had one, and the least robust inputs with their trust verdicts (and, when
 * the caller passes them, the inputs themselves in grey). It is written beside the report's other
 * outputs and changes none of them.
 */
import type { ImageGeometry } from '../data/layout.js';
import { Canvas } from './heatmap.js';
import { grayImage } from './sensitivity.js';
import type { Preprocessing } from '../data/preprocess.js';
import { describeRun, type ReportSummary, type SampleRecord } from './summary.js';
import { PALETTE, escapeXml, niceTicks } from './svg.js';

/** The inputs to draw beside the least robust rows: their values by dataset index and the image geometry. */
export interface HtmlPictures {
  geometry: ImageGeometry;
  input: (index: number) => ArrayLike<number>;
  /** The input preprocessing when known (data/inputs.ts displayPreprocessing): the inputs are drawn as their pixels. */
  display?: Preprocessing;
}

/** Least robust inputs listed (by P(flip), then index). */
export const HTML_WORST = 10;

const STYLE = `
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .warn { color: #9a6700; } .fail { color: #cf222e; font-weight: bold; }
.note { color: #555; font-size: 0.9em; } img.input { image-rendering: pixelated; border: 1px solid #ccc; }
footer { margin-top: 2em; color: #666; font-size: 0.85em; }
`;

function esc(s: string): string {
  return escapeXml(s);
}

function pct(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(digits)}%`;
}

function fmt(x: number, digits = 4): string {
  if (!Number.isFinite(x)) return String(x);
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(digits);
}

/** A table cell holding a number: shown formatted, the exact value (as JSON writes it) in data-value. */
function numCell(x: number | null | undefined, shown: string, id?: string): string {
  return `<td${id ? ` id="${id}"` : ''} class="n"${x === null || x === undefined ? '' : ` data-value="${JSON.stringify(x)}"`}>${esc(shown)}</td>`;
}

/** Horizontal bars, one per class: its flip rate, with the value at the bar's end and an axis in percent (inline SVG for HTML: no namespace URL). */
export function flipRateBarsSvg(rows: Array<{ class: number; flipRate: number }>): string {
  const barH = 18,
    gap = 4,
    left = 60,
    plotW = 560,
    top = 10;
  const max = Math.max(1e-12, ...rows.map((r) => r.flipRate));
  const ticks = niceTicks(0, max * 1.05, 5).filter((t) => t >= 0);
  const hi = Math.max(max, ticks[ticks.length - 1] ?? max);
  const H = top + rows.length * (barH + gap) + 40;
  const W = left + plotW + 90;
  const X = (v: number) => left + (v / hi) * plotW;
  const p: string[] = [];
  p.push(`<svg class="bars" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  for (const t of ticks) {
    const x = X(t).toFixed(1);
    p.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${H - 34}" stroke="#e6e6e6"/>`);
    p.push(`<text x="${x}" y="${H - 20}" text-anchor="middle">${esc(Number((100 * t).toPrecision(4)).toString())}</text>`);
  }
  rows.forEach((r, k) => {
    const y = top + k * (barH + gap);
    p.push(`<text x="${left - 8}" y="${y + barH - 5}" text-anchor="end">class ${r.class}</text>`);
    p.push(
      `<rect class="bar" data-class="${r.class}" x="${left}" y="${y}" width="${(X(r.flipRate) - left).toFixed(2)}" height="${barH}" fill="${PALETTE[0]}"/>`,
    );
    p.push(`<text x="${(X(r.flipRate) + 4).toFixed(1)}" y="${y + barH - 5}">${esc(pct(r.flipRate, 2))}</text>`);
  });
  p.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${H - 34}" stroke="#444"/>`);
  p.push(`<text x="${left + plotW / 2}" y="${H - 4}" text-anchor="middle">flip rate (%), mean P(class changes under noise)</text>`);
  p.push('</svg>');
  return p.join('');
}

/** One input in grey (sensitivity.ts's grayImage: the preprocessing undone when known, else scaled by its own min and max), up to 4x, as a data-URI PNG. */
function inputDataUri(x: ArrayLike<number>, g: ImageGeometry, display?: Preprocessing): string {
  const zoom = Math.max(1, Math.min(4, Math.floor(84 / Math.max(g.height, g.width))));
  const grey = grayImage(x, g, display);
  const cv = new Canvas(g.width * zoom, g.height * zoom);
  for (let r = 0; r < g.height; r++)
    for (let c = 0; c < g.width; c++) {
      const b = Math.round(255 * Math.min(1, Math.max(0, grey[r * g.width + c])));
      cv.fill(c * zoom, r * zoom, zoom, zoom, [b, b, b]);
    }
  return `data:image/png;base64,${Buffer.from(cv.png()).toString('base64')}`;
}

/** The HTML page of a report (summary as in summary.json, records in index order). */
export function reportHtml(s: ReportSummary, records: SampleRecord[], pictures?: HtmlPictures): string {
  const { noise, linearization } = describeRun(s);
  const L: string[] = [];
  const title = `netmoments report: ${s.model} on ${s.data.file}`;
  L.push(
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>${esc(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
  );
  L.push(`<h1>${esc(title)}</h1>`);
  L.push(
    `<p>Output <code>${esc(s.output.name)}</code> (${s.output.size} classes) under ${esc(noise)}; ` +
      `${s.split ? esc(`split at ReLU ${s.split.index} ('${s.split.node}', p = ${s.split.width}), `) : ''}${esc(linearization)}.</p>`,
  );
  if (s.shard) L.push(`<p class="note">This is shard ${s.shard.index} of ${s.shard.count}: combine the shards with <code>netmoments merge</code>.</p>`);

  L.push('<h2>Summary</h2>', '<table class="summary">');
  const row = (label: string, cell: string) => L.push(`<tr><th>${esc(label)}</th>${cell}</tr>`);
  row('inputs', numCell(s.inputs, `${s.inputs}${s.labelled ? ` (${s.labelled} labelled)` : ' (no labels)'}`));
  if (s.accuracy) {
    row('clean accuracy', numCell(s.accuracy.clean, pct(s.accuracy.clean)));
    row('accuracy under noise (expected, from the moments)', numCell(s.accuracy.underNoise, pct(s.accuracy.underNoise)));
    row("accuracy of the mean's class", numCell(s.accuracy.ofMean, pct(s.accuracy.ofMean)));
  }
  row('flip rate (mean P(class changes under noise))', numCell(s.flipRate, pct(s.flipRate, 3), 'flip-rate'));
  row(
    'trust (ok / warn / fail)',
    `<td class="n"><span class="ok">${s.trust.ok}</span> / <span class="warn">${s.trust.warn}</span> / <span class="fail">${s.trust.fail}</span></td>`,
  );
  if (s.untrusted > 0) row(`flip rate over the ${s.inputs - s.untrusted} trusted inputs`, numCell(s.trustedFlipRate, pct(s.trustedFlipRate, 3)));
  if (s.bankFallbacks !== null)
    row("inputs linearized at themselves (their centre's surrogate was off there)", numCell(s.bankFallbacks, String(s.bankFallbacks)));
  if (s.inputsLikelyToFlip !== null) row('inputs more likely than not to flip', numCell(s.inputsLikelyToFlip, String(s.inputsLikelyToFlip)));
  row('expected margin (mean, smallest)', `<td class="n">${esc(`${fmt(s.margin.mean)}, ${fmt(s.margin.min)}`)}</td>`);
  L.push('</table>');

  if (s.perClass.length > 0) {
    L.push(`<h2>Per class (rows by ${s.classesBy === 'label' ? 'label' : 'clean prediction'})</h2>`);
    L.push('<table class="per-class">', '<tr><th>class</th><th>inputs</th><th>clean accuracy</th><th>accuracy under noise</th><th>flip rate</th></tr>');
    for (const c of s.perClass)
      L.push(
        `<tr class="class-row">${numCell(c.class, String(c.class))}${numCell(c.inputs, String(c.inputs))}${numCell(c.cleanAccuracy, pct(c.cleanAccuracy, 1))}` +
          `${numCell(c.accuracyUnderNoise, pct(c.accuracyUnderNoise, 1))}${numCell(c.flipRate, pct(c.flipRate, 2))}</tr>`,
      );
    L.push('</table>');
    const bars = s.perClass.filter((c) => c.flipRate !== null).map((c) => ({ class: c.class, flipRate: c.flipRate! }));
    if (bars.length > 0) L.push('<h2>Flip rate per class</h2>', flipRateBarsSvg(bars));
  }

  if (s.tightness) {
    const t = s.tightness;
    L.push(
      '<h2>Tightness (Monte Carlo through the real model)</h2>',
      `<p>${t.inputs} inputs spread over the data, ${t.samples} samples each.</p>`,
      '<table class="tightness">',
    );
    row(
      'mean error, largest over logits, in MC standard deviations (median, largest)',
      `<td class="n">${fmt(t.meanErrorSd.median, 3)}, ${fmt(t.meanErrorSd.max, 3)}</td>`,
    );
    if (t.varianceRatio)
      row(
        'variance, MC / analytic (median; range)',
        `<td class="n">${fmt(t.varianceRatio.median, 3)}; ${fmt(t.varianceRatio.min, 3)} to ${fmt(t.varianceRatio.max, 3)}</td>`,
      );
    if (t.flip)
      row(
        'flip probability: analytic, MC (largest difference)',
        `<td class="n">${pct(t.flip.analytic, 3)}, ${pct(t.flip.monteCarlo, 3)} (${pct(t.flip.maxAbsDifference, 2)})</td>`,
      );
    L.push('</table>');
  }

  const withFlip = records.filter((r) => r.flip !== null);
  if (withFlip.length > 0) {
    const worst = [...withFlip].sort((a, b) => b.flip! - a.flip! || a.i - b.i).slice(0, HTML_WORST);
    L.push('<h2>Least robust inputs</h2>', '<table class="worst">');
    L.push(
      `<tr>${pictures ? '<th>input image</th>' : ''}<th>input</th><th>label</th><th>clean class</th><th>class of the mean</th><th>P(flip)</th><th>expected margin</th><th>trust</th><th>reasons</th></tr>`,
    );
    for (const r of worst) {
      const img = pictures
        ? `<td><img class="input" alt="input ${r.i}" src="${inputDataUri(pictures.input(r.i), pictures.geometry, pictures.display)}"></td>`
        : '';
      L.push(
        `<tr class="worst-row">${img}${numCell(r.i, String(r.i))}<td class="n">${r.label ?? ''}</td>${numCell(r.clean, String(r.clean))}${numCell(r.pred, String(r.pred))}` +
          `${numCell(r.flip, pct(r.flip, 2))}${numCell(r.margin, fmt(r.margin))}<td class="${r.trust.verdict}">${r.trust.verdict}</td><td>${esc(r.trust.reasons.join('; '))}</td></tr>`,
      );
    }
    L.push('</table>');
  }
  const doubtful = records.filter((r) => r.trust.verdict !== 'ok');
  if (doubtful.length > 0) {
    const order = { fail: 0, warn: 1, ok: 2 };
    const shown = [...doubtful].sort((a, b) => order[a.trust.verdict] - order[b.trust.verdict] || a.i - b.i).slice(0, HTML_WORST);
    L.push(
      '<h2>Trust</h2>',
      `<p>${s.trust.fail} input(s) failed the checks (their numbers are wrong), ${s.trust.warn} drew a warning; the first ${shown.length}:</p>`,
    );
    L.push('<table class="trust">', '<tr><th>input</th><th>verdict</th><th>reasons</th></tr>');
    for (const r of shown)
      L.push(`<tr>${numCell(r.i, String(r.i))}<td class="${r.trust.verdict}">${r.trust.verdict}</td><td>${esc(r.trust.reasons.join('; '))}</td></tr>`);
    L.push('</table>');
  }
  L.push(
    `<footer>netmoments ${esc(s.run.version)} · model sha256 <code>${esc(s.run.modelSha256.slice(0, 16))}</code> · data sha256 <code>${esc(s.data.sha256.slice(0, 16))}</code> · ` +
      `seed ${s.run.seed} · ${s.run.probabilitySamples} points per class-probability estimate · run fingerprint <code>${esc(s.run.fingerprint.slice(0, 16))}</code></footer>`,
  );
  L.push('</body>', '</html>');
  return `${L.join('\n')}\n`;
}
