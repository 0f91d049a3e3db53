/**
 * Heat maps as PNG (pngjs through src/data/png.ts): a grid of panels sharing one colour scale
 * (viridis), each panel titled, with axes (tick marks and labels in input pixel rows and columns),
 * optionally drawn over the input image in grey (the heat blended over it), and a colour bar with
 * its scale and label (the units) at the right. Text is drawn with a built-in 5x7 bitmap font
 * (upper case letters, digits and a few symbols; lower case is drawn in upper case), so no font
 * files or canvas library are needed.
 */
import { encodeRgbPng } from '../data/png.js';

export interface HeatPanel {
  title: string;
  /** rows x cols, row-major. NaN cells are drawn grey. Absent: the panel shows only its background. */
  values?: ArrayLike<number>;
  rows: number;
  cols: number;
  /**
   * Where the cells lie on an image of height x width pixels: cell (r, c) covers pixel rows
   * offset + r * stride .. + size - 1 and the same columns (a sliding window's centre block).
   * Default: the cells are the pixels (height = rows, width = cols, offset 0, stride 1, size 1).
   */
  pixels?: PixelGrid;
  /** The image underneath in grey, height x width row-major, 0 (black) to 1 (white); the heat is blended over it. */
  background?: ArrayLike<number>;
}

/** Where a heat map's cells lie on the image's pixel grid. */
export interface PixelGrid {
  height: number;
  width: number;
  offset: number;
  stride: number;
  size: number;
}

export interface HeatmapOptions {
  /** Colour scale range; default the finite min and max over all panels. */
  vmin?: number;
  vmax?: number;
  /** Pixels per cell (default 8). */
  cell?: number;
  /** Panels per row (default 5). */
  columns?: number;
  /** A title line above the grid. */
  title?: string;
  /** Label of the colour bar (drawn above it). */
  colorbarLabel?: string;
  /** Text scale: each font pixel becomes scale x scale (default 2). */
  textScale?: number;
  /** Opacity of the heat over a background image (default 0.65). */
  alpha?: number;
  /** A note under the grid (default: what the axes are). */
  footer?: string;
}

/** Where things were drawn (canvas pixels), for callers and tests. */
export interface HeatmapLayout {
  width: number;
  height: number;
  /** The colour bar: top row is vmax, bottom row vmin. */
  colorbar: { x: number; y: number; width: number; height: number; vmin: number; vmax: number };
  /** Each panel's map area (the image's pixel grid zoomed by `cell`). */
  maps: Array<{ x: number; y: number; width: number; height: number }>;
}

/** Viridis (matplotlib, van der Walt and Smith), 10 stops, linearly interpolated. */
const VIRIDIS: Array<[number, number, number]> = [
  [0x44, 0x01, 0x54],
  [0x48, 0x28, 0x78],
  [0x3e, 0x49, 0x89],
  [0x31, 0x68, 0x8e],
  [0x26, 0x82, 0x8e],
  [0x1f, 0x9e, 0x89],
  [0x35, 0xb7, 0x79],
  [0x6e, 0xce, 0x58],
  [0xb5, 0xde, 0x2b],
  [0xfd, 0xe7, 0x25],
];

/** The viridis colour of t in [0, 1] (clamped). */
export function viridis(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i],
    b = VIRIDIS[i + 1];
  return [Math.round(a[0] + (b[0] - a[0]) * f), Math.round(a[1] + (b[1] - a[1]) * f), Math.round(a[2] + (b[2] - a[2]) * f)];
}

const GLYPHS: Record<string, string> = {
  A: '.###.#...##...#######...##...##...#',
  B: '####.#...##...#####.#...##...#####.',
  C: '.###.#...##....#....#....#...#.###.',
  D: '###..#..#.#...##...##...##..#.###..',
  E: '######....#....####.#....#....#####',
  F: '######....#....####.#....#....#....',
  G: '.###.#...##....#.####...##...#.####',
  H: '#...##...##...#######...##...##...#',
  I: '.###...#....#....#....#....#...###.',
  J: '..###...#....#....#....#.#..#..##..',
  K: '#...##..#.#.#..##...#.#..#..#.#...#',
  L: '#....#....#....#....#....#....#####',
  M: '#...###.###.#.##.#.##...##...##...#',
  N: '#...##...###..##.#.##..###...##...#',
  O: '.###.#...##...##...##...##...#.###.',
  P: '####.#...##...#####.#....#....#....',
  Q: '.###.#...##...##...##.#.##..#..##.#',
  R: '####.#...##...#####.#.#..#..#.#...#',
  S: '.#####....#.....###.....#....#####.',
  T: '#####..#....#....#....#....#....#..',
  U: '#...##...##...##...##...##...#.###.',
  V: '#...##...##...##...##...#.#.#...#..',
  W: '#...##...##...##.#.##.#.##.#.#.#.#.',
  X: '#...##...#.#.#...#...#.#.#...##...#',
  Y: '#...##...#.#.#...#....#....#....#..',
  Z: '#####....#...#...#...#...#....#####',
  '0': '.###.#...##..###.#.###..##...#.###.',
  '1': '..#...##....#....#....#....#...###.',
  '2': '.###.#...#....#...#...#...#...#####',
  '3': '#####...#...#.....#.....##...#.###.',
  '4': '...#...##..#.#.#..#.#####...#....#.',
  '5': '######....####.....#....##...#.###.',
  '6': '..##..#...#....####.#...##...#.###.',
  '7': '#####....#...#...#...#....#....#...',
  '8': '.###.#...##...#.###.#...##...#.###.',
  '9': '.###.#...##...#.####....#...#..##..',
  '.': '..........................##...##..',
  '-': '...............#####...............',
  '+': '.......#....#..#####..#....#.......',
  '=': '..........#####.....#####..........',
  ':': '......##...##........##...##.......',
  '(': '...#...#...#....#....#.....#.....#.',
  ')': '.#.....#.....#....#....#...#...#...',
  '%': '##...##..#...#...#...#...#..##...##',
  '/': '.........#...#...#...#...#.........',
  ',': '.....................##....#...#...',
  ' ': '...................................',
  _: '..............................#####',
  '<': '...#...#...#...#.....#.....#.....#.',
  '>': '.#.....#.....#.....#...#...#...#...',
  '^': '..#...#.#.#...#....................',
  '?': '.###.#...#....#...#...#.........#..',
  '*': '.......#..#.#.#.###.#.#.#..#.......',
};

/** Width in pixels of `text` at `scale` (6 font columns per character, the last one blank). */
export function textWidth(text: string, scale: number): number {
  return text.length * 6 * scale - scale;
}

/** An RGB canvas (8-bit, row-major interleaved). */
export class Canvas {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: [number, number, number] = [255, 255, 255],
  ) {
    this.data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.data.set(background, i * 3);
  }

  fill(x: number, y: number, w: number, h: number, rgb: readonly number[]): void {
    const x0 = Math.max(0, Math.floor(x)),
      y0 = Math.max(0, Math.floor(y));
    const x1 = Math.min(this.width, Math.floor(x + w)),
      y1 = Math.min(this.height, Math.floor(y + h));
    for (let yy = y0; yy < y1; yy++)
      for (let xx = x0; xx < x1; xx++) {
        const o = (yy * this.width + xx) * 3;
        this.data[o] = rgb[0];
        this.data[o + 1] = rgb[1];
        this.data[o + 2] = rgb[2];
      }
  }

  text(x: number, y: number, text: string, scale = 2, rgb: readonly number[] = [0, 0, 0]): void {
    let cx = x;
    for (const ch of text) {
      const g = GLYPHS[ch.toUpperCase()] ?? GLYPHS['?'] ?? GLYPHS[' '];
      for (let r = 0; r < 7; r++) for (let c = 0; c < 5; c++) if (g[r * 5 + c] === '#') this.fill(cx + c * scale, y + r * scale, scale, scale, rgb);
      cx += 6 * scale;
    }
  }

  png(): Uint8Array {
    return encodeRgbPng(this.data, this.width, this.height);
  }
}

/** Short tick text: 3 significant digits. */
export function tickLabel(v: number): string {
  if (!Number.isFinite(v)) return 'nan';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-2) return v.toExponential(1).replace('e+', 'e');
  return Number(v.toPrecision(3)).toString();
}

/** Finite min and max over the panels (0, 1 when none is finite; widened when equal). */
export function valueRange(panels: Array<{ values: ArrayLike<number> }>): [number, number] {
  let lo = Infinity,
    hi = -Infinity;
  for (const p of panels)
    for (let i = 0; i < p.values.length; i++) {
      const v = p.values[i];
      if (Number.isFinite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  if (!Number.isFinite(lo)) return [0, 1];
  if (hi === lo) return [lo, lo + (lo === 0 ? 1 : Math.abs(lo) * 0.01)];
  return [lo, hi];
}

/** Up to about `count` round tick positions in 0..n-1 (steps of 1, 2 or 5 times a power of ten). */
export function axisTicks(n: number, count = 4): number[] {
  if (n <= 1) return [0];
  const raw = (n - 1) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = Math.max(1, (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag);
  const out: number[] = [];
  for (let t = 0; t <= n - 1; t += step) out.push(t);
  return out;
}

/** The pixel grid of a panel (the cells themselves when it has none). */
function gridOf(p: HeatPanel): PixelGrid {
  return p.pixels ?? { height: p.rows, width: p.cols, offset: 0, stride: 1, size: 1 };
}

/** The pixel grid of a sliding w x w window with a stride: each window's value is drawn on its centre block. */
export function windowGrid(height: number, width: number, windowSize: number, stride: number): PixelGrid {
  const size = Math.min(stride, windowSize);
  return { height, width, offset: Math.floor((windowSize - size) / 2), stride, size };
}

/** A grid of heat-map panels with axes and one shared colour bar: the PNG bytes and where things are. */
export function heatmapImage(panels: HeatPanel[], options: HeatmapOptions = {}): { png: Uint8Array; layout: HeatmapLayout } {
  if (panels.length === 0) throw new Error('heatmapPng: no panels');
  const cell = options.cell ?? 8;
  const ts = options.textScale ?? 2;
  const alpha = options.alpha ?? 0.65;
  const columns = Math.max(1, Math.min(options.columns ?? 5, panels.length));
  const gridRows = Math.ceil(panels.length / columns);
  const withValues = panels.filter((p) => p.values !== undefined) as Array<HeatPanel & { values: ArrayLike<number> }>;
  const [autoLo, autoHi] = valueRange(withValues);
  const vmin = options.vmin ?? autoLo;
  const vmax = options.vmax ?? (options.vmin !== undefined && options.vmin >= autoHi ? options.vmin + 1 : autoHi);
  const grids = panels.map(gridOf);
  const H = Math.max(...grids.map((g) => g.height));
  const W = Math.max(...grids.map((g) => g.width));
  const lineH = 7 * ts + 6;
  const margin = 10;
  const tickLen = 4;
  const yLabelW = Math.max(...axisTicks(H).map((t) => textWidth(String(t), ts))) + tickLen + 4;
  const xLabelH = tickLen + 3 + 7 * ts + 4;
  const mapW = W * cell;
  const mapH = H * cell;
  const panelW = Math.max(yLabelW + mapW, ...panels.map((p) => textWidth(p.title, ts)));
  const panelH = lineH + mapH + xLabelH;
  const gap = 16;
  const titleH = options.title ? lineH + 4 : 0;
  const barW = 16;
  const barTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => vmax - f * (vmax - vmin));
  const labels = barTicks.map(tickLabel);
  const barLabelW = Math.max(...labels.map((l) => textWidth(l, ts))) + 8;
  const barTitleW = options.colorbarLabel ? textWidth(options.colorbarLabel, ts) : 0;
  const barBlockW = Math.max(barW + 6 + barLabelW, barTitleW);
  const gridW = columns * panelW + (columns - 1) * gap;
  const footer = options.footer ?? (panels.some((p) => p.pixels) ? 'axes: input pixel row and column' : 'axes: row and column');
  const footerH = lineH + 4;
  const width = margin * 2 + Math.max(gridW + gap * 2 + barBlockW, options.title ? textWidth(options.title, ts) : 0, textWidth(footer, ts));
  const barH = Math.max(80, mapH);
  const gridH = gridRows * panelH + (gridRows - 1) * gap;
  const height = margin * 2 + titleH + Math.max(gridH, lineH + barH + 7 * ts) + footerH;
  const cv = new Canvas(width, height);
  if (options.title) cv.text(margin, margin, options.title, ts);
  const span = vmax - vmin;
  const maps: HeatmapLayout['maps'] = [];
  panels.forEach((p, k) => {
    const g = grids[k];
    const gx = margin + (k % columns) * (panelW + gap);
    const gy = margin + titleH + Math.floor(k / columns) * (panelH + gap);
    cv.text(gx, gy, p.title, ts);
    const ox = gx + yLabelW;
    const oy = gy + lineH;
    // the image underneath (or a light grey where no cell lies)
    for (let r = 0; r < g.height; r++)
      for (let c = 0; c < g.width; c++) {
        const b = p.background ? Math.round(255 * Math.min(1, Math.max(0, p.background[r * g.width + c]))) : 235;
        cv.fill(ox + c * cell, oy + r * cell, cell, cell, [b, b, b]);
      }
    if (p.values)
      for (let r = 0; r < p.rows; r++)
        for (let c = 0; c < p.cols; c++) {
          const v = p.values[r * p.cols + c];
          const heat = Number.isFinite(v) ? viridis(span > 0 ? (v - vmin) / span : 0) : [160, 160, 160];
          for (let i = 0; i < g.size; i++)
            for (let j = 0; j < g.size; j++) {
              const pr = g.offset + r * g.stride + i;
              const pc = g.offset + c * g.stride + j;
              if (pr >= g.height || pc >= g.width) continue;
              let rgb: readonly number[] = heat;
              if (p.background) {
                const b = 255 * Math.min(1, Math.max(0, p.background[pr * g.width + pc]));
                rgb = heat.map((h) => Math.round(alpha * h + (1 - alpha) * b));
              }
              cv.fill(ox + pc * cell, oy + pr * cell, cell, cell, rgb);
            }
        }
    // frame and axes: ticks at pixel centres, rows on the left, columns below
    const mw = g.width * cell,
      mh = g.height * cell;
    cv.fill(ox - 1, oy - 1, mw + 2, 1, [0, 0, 0]);
    cv.fill(ox - 1, oy + mh, mw + 2, 1, [0, 0, 0]);
    cv.fill(ox - 1, oy - 1, 1, mh + 2, [0, 0, 0]);
    cv.fill(ox + mw, oy - 1, 1, mh + 2, [0, 0, 0]);
    for (const t of axisTicks(g.height)) {
      const y = oy + Math.floor((t + 0.5) * cell);
      cv.fill(ox - 1 - tickLen, y, tickLen, 1, [0, 0, 0]);
      const l = String(t);
      cv.text(ox - 1 - tickLen - 2 - textWidth(l, ts), y - Math.floor((7 * ts) / 2), l, ts);
    }
    for (const t of axisTicks(g.width)) {
      const x = ox + Math.floor((t + 0.5) * cell);
      cv.fill(x, oy + mh + 1, 1, tickLen, [0, 0, 0]);
      const l = String(t);
      cv.text(x - Math.floor(textWidth(l, ts) / 2), oy + mh + 1 + tickLen + 2, l, ts);
    }
    maps.push({ x: ox, y: oy, width: mw, height: mh });
  });
  // colour bar beside the first row, its label (the units) above it
  const bx = margin + gridW + gap * 2;
  const by = margin + titleH + lineH;
  if (options.colorbarLabel) cv.text(bx, margin + titleH, options.colorbarLabel, ts);
  for (let y = 0; y < barH; y++) cv.fill(bx, by + y, barW, 1, viridis(1 - y / Math.max(1, barH - 1)));
  cv.fill(bx - 1, by - 1, barW + 2, 1, [0, 0, 0]);
  cv.fill(bx - 1, by + barH, barW + 2, 1, [0, 0, 0]);
  cv.fill(bx - 1, by - 1, 1, barH + 2, [0, 0, 0]);
  cv.fill(bx + barW, by - 1, 1, barH + 2, [0, 0, 0]);
  labels.forEach((l, i) => {
    const y = by + Math.round((i / (labels.length - 1)) * (barH - 1));
    cv.fill(bx + barW, y, 4, 1, [0, 0, 0]);
    cv.text(bx + barW + 6, Math.round(Math.min(Math.max(by, y - (7 * ts) / 2), by + barH - 7 * ts)), l, ts);
  });
  cv.text(margin, height - margin - 7 * ts, footer, ts, [60, 60, 60]);
  return { png: cv.png(), layout: { width, height, colorbar: { x: bx, y: by, width: barW, height: barH, vmin, vmax }, maps } };
}

/** A grid of heat-map panels with axes and one shared colour bar, as PNG bytes. */
export function heatmapPng(panels: HeatPanel[], options: HeatmapOptions = {}): Uint8Array {
  return heatmapImage(panels, options).png;
}
