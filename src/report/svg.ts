/**
 * Scatter plots as standalone SVG (no dependencies): the paper's Figure 2, Monte Carlo against the
 * closed form, with the least-squares line through the origin and the identity line y = x; one plot
 * (`scatterSvg`) or several side by side (`scatterGridSvg`). The legend sits below the plot areas,
 * never over the data.
 *
 * Axes are linear, or logarithmic (decades) when asked or, with log: 'auto', when every value is
 * positive and they span more than two decades. Both axes share one range so that the identity
 * line is the diagonal.
 */

export interface ScatterSeries {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  color?: string;
}

export interface ScatterOptions {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: ScatterSeries[];
  /** Draw y = slope * x (the fit through the origin). */
  slope?: number;
  /** Draw y = x dashed (default true). */
  identity?: boolean;
  log?: boolean | 'auto';
  width?: number;
  height?: number;
}

/** Colour-blind friendly qualitative palette (Okabe and Ito 2008), then tab10's remaining hues. */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#F0E442', '#000000', '#8c564b', '#7f7f7f'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round tick step: 1, 2 or 5 times a power of ten. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0).replace('e+', 'e');
  return Number(v.toPrecision(6)).toString();
}

function fmt(v: number): string {
  return Number.isFinite(v) ? Number(v.toFixed(2)).toString() : '0';
}

interface LegendEntry {
  label: string;
  color: string;
  /** 'line' (solid), 'dash' or 'dot' (a marker). */
  mark: 'line' | 'dash' | 'dot';
}

/** Approximate width of 12 px Helvetica text. */
function textPx(text: string): number {
  return text.length * 6.6;
}

/** The legend laid out in rows that fit `width`, as SVG elements in a group at (x, y), and its height. */
function legendBlock(entries: LegendEntry[], x: number, y: number, width: number): { svg: string; height: number } {
  if (entries.length === 0) return { svg: '', height: 0 };
  const parts: string[] = [];
  let cx = 0,
    row = 0;
  for (const e of entries) {
    const w = 26 + textPx(e.label) + 18;
    if (cx > 0 && cx + w > width) {
      cx = 0;
      row++;
    }
    const ly = row * 18 + 12;
    if (e.mark === 'dot') parts.push(`<circle cx="${fmt(cx + 9)}" cy="${ly - 4}" r="3.5" fill="${e.color}"/>`);
    else
      parts.push(
        `<line x1="${fmt(cx)}" y1="${ly - 4}" x2="${fmt(cx + 18)}" y2="${ly - 4}" stroke="${e.color}" ${e.mark === 'dash' ? 'stroke-dasharray="5 4"' : 'stroke-width="1.5"'}/>`,
      );
    parts.push(`<text x="${fmt(cx + 24)}" y="${ly}">${escapeXml(e.label)}</text>`);
    cx += w;
  }
  const height = (row + 1) * 18 + 4;
  return { svg: `<g class="legend" transform="translate(${fmt(x)} ${fmt(y)})">${parts.join('')}</g>`, height };
}

/** The legend entries of a plot: the fit, the identity line, then the series (when named). */
function legendEntries(o: ScatterOptions, fitLabel?: string): LegendEntry[] {
  const legend: LegendEntry[] = [];
  if (o.slope !== undefined && Number.isFinite(o.slope))
    legend.push({ label: fitLabel ?? `fit through origin, slope ${o.slope.toFixed(3)}`, color: '#c00', mark: 'line' });
  if (o.identity !== false) legend.push({ label: 'y = x', color: '#888', mark: 'dash' });
  if (o.series.length > 1 || o.series[0]?.name)
    o.series.forEach((s, si) => legend.push({ label: s.name, color: s.color ?? PALETTE[si % PALETTE.length], mark: 'dot' }));
  return legend;
}

/** Wrap a subtitle at '; ' into lines of about `width` pixels. */
function wrapSubtitle(subtitle: string | undefined, width: number): string[] {
  const lines: string[] = [];
  if (subtitle)
    for (const part of subtitle.split('; ')) {
      const last = lines.length - 1;
      if (last >= 0 && textPx(lines[last] + '; ' + part) < width - 20) lines[last] += `; ${part}`;
      else lines.push(part);
    }
  return lines;
}

/**
 * One scatter plot's elements in the box (x0, y0, W, H): its title and subtitle at the top, the
 * plot area with axes, ticks and labels, the identity and fit lines and the points (clipped to the
 * plot area). Returns the elements and the plot area's rectangle.
 */
function scatterPanel(
  o: ScatterOptions,
  x0: number,
  y0: number,
  W: number,
  H: number,
  clipId: string,
): { parts: string[]; plot: { x: number; y: number; w: number; h: number } } {
  const subLines = wrapSubtitle(o.subtitle, W);
  const left = x0 + 78,
    right = 20,
    top = y0 + 44 + 16 * subLines.length + (subLines.length ? 2 : 0),
    bottom = 58;
  const pw = W - 78 - right;
  const ph = H - (top - y0) - bottom;
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of o.series) {
    for (let i = 0; i < s.x.length; i++)
      if (Number.isFinite(s.x[i]) && Number.isFinite(s.y[i])) {
        xs.push(s.x[i]);
        ys.push(s.y[i]);
      }
  }
  const all = [...xs, ...ys];
  const positive = all.length > 0 && all.every((v) => v > 0);
  let log = o.log === true && positive;
  if (o.log === 'auto' && positive) log = Math.max(...all) / Math.min(...all) > 100;
  const tf = (v: number) => (log ? Math.log10(v) : v);
  let lo = all.length ? Math.min(...all.map(tf)) : 0;
  let hi = all.length ? Math.max(...all.map(tf)) : 1;
  if (!log) {
    // show the origin (the fit goes through it) unless that squeezes the points into a corner
    const span = hi - lo;
    const withOrigin = Math.max(hi, 0) - Math.min(lo, 0);
    if (withOrigin <= 10 * span) {
      lo = Math.min(lo, 0);
      hi = Math.max(hi, 0);
    }
  }
  if (hi - lo <= 0) {
    const c = hi;
    const w = Math.abs(c) > 0 ? Math.abs(c) * 0.1 : 1;
    lo = c - w;
    hi = c + w;
  }
  const pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  const X = (v: number) => left + ((tf(v) - lo) / (hi - lo)) * pw;
  const Y = (v: number) => top + ph - ((tf(v) - lo) / (hi - lo)) * ph;
  const inv = (t: number) => (log ? 10 ** t : t);
  const ticks = log ? Array.from({ length: Math.floor(hi) - Math.ceil(lo) + 1 }, (_, i) => Math.ceil(lo) + i).map((e) => 10 ** e) : niceTicks(lo, hi, 6);

  const parts: string[] = [];
  const cx = x0 + W / 2;
  parts.push(`<text x="${fmt(cx)}" y="${y0 + 20}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`);
  subLines.forEach((line, i) =>
    parts.push(`<text x="${fmt(cx)}" y="${y0 + 40 + 16 * i}" text-anchor="middle" font-size="12" fill="#333">${escapeXml(line)}</text>`),
  );
  parts.push(`<defs><clipPath id="${clipId}"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath></defs>`);
  parts.push(`<rect class="plot" x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  for (const t of ticks) {
    const tt = tf(t);
    if (tt < lo || tt > hi) continue;
    const x = fmt(X(t));
    const y = fmt(Y(t));
    parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + ph}" stroke="#e6e6e6"/>`);
    parts.push(`<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#e6e6e6"/>`);
    parts.push(`<text x="${x}" y="${top + ph + 16}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
    parts.push(`<text x="${left - 6}" y="${fmt(Y(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`);
  }
  parts.push(`<text x="${fmt(left + pw / 2)}" y="${y0 + H - 14}" text-anchor="middle">${escapeXml(o.xLabel + (log ? ' (log scale)' : ''))}</text>`);
  parts.push(
    `<text transform="translate(${x0 + 18} ${fmt(top + ph / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(o.yLabel + (log ? ' (log scale)' : ''))}</text>`,
  );
  const g: string[] = [];
  // identity and fit lines, sampled so that log axes draw them too
  const line = (k: number, style: string) => {
    const pts: string[] = [];
    for (let i = 0; i <= 64; i++) {
      const x = inv(lo + ((hi - lo) * i) / 64);
      const y = k * x;
      if (log && !(y > 0)) continue;
      pts.push(`${fmt(X(x))},${fmt(Y(y))}`);
    }
    if (pts.length > 1) g.push(`<polyline points="${pts.join(' ')}" fill="none" ${style}/>`);
  };
  if (o.identity !== false) line(1, 'stroke="#888" stroke-dasharray="5 4"');
  if (o.slope !== undefined && Number.isFinite(o.slope)) line(o.slope, 'stroke="#c00" stroke-width="1.5"');
  o.series.forEach((s, si) => {
    const color = s.color ?? PALETTE[si % PALETTE.length];
    for (let i = 0; i < s.x.length; i++) {
      if (!Number.isFinite(s.x[i]) || !Number.isFinite(s.y[i])) continue;
      if (log && !(s.x[i] > 0 && s.y[i] > 0)) continue;
      g.push(`<circle cx="${fmt(X(s.x[i]))}" cy="${fmt(Y(s.y[i]))}" r="2.6" fill="${color}" fill-opacity="0.7"/>`);
    }
  });
  parts.push(`<g class="data" clip-path="url(#${clipId})">${g.join('')}</g>`);
  return { parts, plot: { x: left, y: top, w: pw, h: ph } };
}

function svgOpen(W: number, H: number): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${fmt(W)}" height="${fmt(H)}" viewBox="0 0 ${fmt(W)} ${fmt(H)}" font-family="Helvetica, Arial, sans-serif" font-size="12">\n<rect width="${fmt(W)}" height="${fmt(H)}" fill="#ffffff"/>`;
}

/** An SVG document (UTF-8 text) with one scatter plot and its legend below it. */
export function scatterSvg(o: ScatterOptions): string {
  const W = o.width ?? 560;
  const H = o.height ?? 520;
  const { parts } = scatterPanel(o, 0, 0, W, H, 'plot');
  const legend = legendBlock(legendEntries(o), 20, H - 4, W - 40);
  return `${[svgOpen(W, H + legend.height), ...parts, legend.svg, '</svg>'].filter(Boolean).join('\n')}\n`;
}

/** Several scatter plots side by side (they share series names and colours) with one legend below all of them. */
export function scatterGridSvg(o: { title: string; subtitle?: string; plots: ScatterOptions[]; panelWidth?: number; panelHeight?: number }): string {
  const PW = o.panelWidth ?? 440;
  const PH = o.panelHeight ?? 440;
  const W = PW * o.plots.length;
  const subLines = wrapSubtitle(o.subtitle, W);
  const head = 30 + 16 * subLines.length;
  const parts: string[] = [];
  parts.push(`<text x="${fmt(W / 2)}" y="22" text-anchor="middle" font-size="17" font-weight="bold">${escapeXml(o.title)}</text>`);
  subLines.forEach((line, i) => parts.push(`<text x="${fmt(W / 2)}" y="${40 + 16 * i}" text-anchor="middle" fill="#333">${escapeXml(line)}</text>`));
  o.plots.forEach((p, k) => parts.push(...scatterPanel(p, k * PW, head, PW, PH, `plot${k}`).parts));
  const first = o.plots[0];
  const fit = o.plots.some((p) => p.slope !== undefined && Number.isFinite(p.slope));
  const entries = first ? legendEntries({ ...first, slope: fit ? 1 : undefined }, 'least-squares fit through the origin (slope in each subtitle)') : [];
  const legend = legendBlock(entries, 20, head + PH - 4, W - 40);
  return `${[svgOpen(W, head + PH + legend.height), ...parts, legend.svg, '</svg>'].filter(Boolean).join('\n')}\n`;
}
