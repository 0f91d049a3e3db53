/**
 * Scatter plots as standalone SVG (no dependencies): the paper's Figure 2, Monte Carlo against the
 * closed form, with the least-squares line through the origin and the identity line y = x.
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

/** An SVG document (UTF-8 text) with one scatter plot. */
export function scatterSvg(o: ScatterOptions): string {
  const W = o.width ?? 560;
  const H = o.height ?? 520;
  // a long subtitle wraps at '; ' (about 7 px per character at 12 px)
  const subLines: string[] = [];
  if (o.subtitle) {
    for (const part of o.subtitle.split('; ')) {
      const last = subLines.length - 1;
      if (last >= 0 && (subLines[last] + '; ' + part).length * 6.6 < W - 20) subLines[last] += `; ${part}`;
      else subLines.push(part);
    }
  }
  const left = 78,
    right = 20,
    top = 44 + 16 * subLines.length + (subLines.length ? 2 : 0),
    bottom = 58;
  const pw = W - left - right;
  const ph = H - top - bottom;
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
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`);
  subLines.forEach((line, i) => parts.push(`<text x="${W / 2}" y="${40 + 16 * i}" text-anchor="middle" font-size="12" fill="#333">${escapeXml(line)}</text>`));
  parts.push(`<defs><clipPath id="plot"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath></defs>`);
  parts.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
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
  parts.push(`<text x="${left + pw / 2}" y="${H - 14}" text-anchor="middle">${escapeXml(o.xLabel + (log ? ' (log scale)' : ''))}</text>`);
  parts.push(`<text transform="translate(18 ${top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(o.yLabel + (log ? ' (log scale)' : ''))}</text>`);
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
  parts.push(`<g clip-path="url(#plot)">${g.join('')}</g>`);
  // legend
  const legend: Array<{ label: string; color: string; dash?: boolean }> = [];
  if (o.slope !== undefined && Number.isFinite(o.slope)) legend.push({ label: `fit through origin, slope ${o.slope.toFixed(3)}`, color: '#c00' });
  if (o.identity !== false) legend.push({ label: 'y = x', color: '#888', dash: true });
  if (o.series.length > 1 || o.series[0]?.name) o.series.forEach((s, si) => legend.push({ label: s.name, color: s.color ?? PALETTE[si % PALETTE.length] }));
  legend.slice(0, 14).forEach((e, i) => {
    const y = top + 14 + i * 16;
    const x = left + 10;
    if (i < (o.slope !== undefined ? 1 : 0) + (o.identity !== false ? 1 : 0)) {
      parts.push(
        `<line x1="${x}" y1="${y - 4}" x2="${x + 18}" y2="${y - 4}" stroke="${e.color}" ${e.dash ? 'stroke-dasharray="5 4"' : 'stroke-width="1.5"'}/>`,
      );
    } else parts.push(`<circle cx="${x + 9}" cy="${y - 4}" r="3.5" fill="${e.color}"/>`);
    parts.push(`<text x="${x + 24}" y="${y}">${escapeXml(e.label)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
