/**
 * Heat maps as PNG (pngjs through src/data/png.ts): a grid of panels sharing one colour scale
 * (viridis), each panel titled, with a colour bar and its tick labels at the right. Text is drawn
 * with a built-in 5x7 bitmap font (upper case letters, digits and a few symbols; lower case is
 * drawn in upper case), so no font files or canvas library are needed.
 */
import { encodeRgbPng } from '../data/png.js';

export interface HeatPanel {
  title: string;
  /** rows x cols, row-major. NaN cells are drawn grey. */
  values: ArrayLike<number>;
  rows: number;
  cols: number;
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
export function valueRange(panels: HeatPanel[]): [number, number] {
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

/** A grid of heat-map panels with one shared colour bar, as PNG bytes. */
export function heatmapPng(panels: HeatPanel[], options: HeatmapOptions = {}): Uint8Array {
  if (panels.length === 0) throw new Error('heatmapPng: no panels');
  const cell = options.cell ?? 8;
  const ts = options.textScale ?? 2;
  const columns = Math.max(1, Math.min(options.columns ?? 5, panels.length));
  const gridRows = Math.ceil(panels.length / columns);
  const [autoLo, autoHi] = valueRange(panels);
  const vmin = options.vmin ?? autoLo;
  const vmax = options.vmax ?? (options.vmin !== undefined && options.vmin >= autoHi ? options.vmin + 1 : autoHi);
  const pr = Math.max(...panels.map((p) => p.rows));
  const pc = Math.max(...panels.map((p) => p.cols));
  const lineH = 7 * ts + 6;
  const margin = 10;
  const panelW = Math.max(pc * cell, ...panels.map((p) => textWidth(p.title, ts)));
  const panelH = lineH + pr * cell;
  const gap = 12;
  const titleH = options.title ? lineH + 4 : 0;
  const barW = 16;
  const labels = [vmax, (vmin + vmax) / 2, vmin].map(tickLabel);
  const barLabelW = Math.max(...labels.map((l) => textWidth(l, ts))) + 8;
  const barTitleW = options.colorbarLabel ? textWidth(options.colorbarLabel, ts) : 0;
  const barBlockW = Math.max(barW + 6 + barLabelW, barTitleW);
  const gridW = columns * panelW + (columns - 1) * gap;
  const width = margin * 2 + Math.max(gridW + gap * 2 + barBlockW, options.title ? textWidth(options.title, ts) : 0);
  const height = margin * 2 + titleH + gridRows * panelH + (gridRows - 1) * gap + (options.colorbarLabel ? 0 : 0);
  const cv = new Canvas(width, Math.max(height, margin * 2 + titleH + lineH + 80));
  if (options.title) cv.text(margin, margin, options.title, ts);
  const span = vmax - vmin;
  panels.forEach((p, k) => {
    const gx = margin + (k % columns) * (panelW + gap);
    const gy = margin + titleH + Math.floor(k / columns) * (panelH + gap);
    cv.text(gx, gy, p.title, ts);
    const oy = gy + lineH;
    for (let r = 0; r < p.rows; r++)
      for (let c = 0; c < p.cols; c++) {
        const v = p.values[r * p.cols + c];
        const rgb = Number.isFinite(v) ? viridis(span > 0 ? (v - vmin) / span : 0) : [160, 160, 160];
        cv.fill(gx + c * cell, oy + r * cell, cell, cell, rgb);
      }
  });
  // colour bar: as tall as one panel's map, beside the first row
  const bx = margin + gridW + gap * 2;
  const by = margin + titleH + lineH;
  const bh = Math.max(60, pr * cell);
  if (options.colorbarLabel) cv.text(bx, margin + titleH, options.colorbarLabel, ts);
  for (let y = 0; y < bh; y++) cv.fill(bx, by + y, barW, 1, viridis(1 - y / Math.max(1, bh - 1)));
  cv.fill(bx - 1, by - 1, barW + 2, 1, [0, 0, 0]);
  cv.fill(bx - 1, by + bh, barW + 2, 1, [0, 0, 0]);
  const tickYs = [by, by + bh / 2, by + bh - 1];
  const textYs = [by, by + bh / 2 - (7 * ts) / 2, by + bh - 7 * ts];
  labels.forEach((l, i) => {
    cv.fill(bx + barW, tickYs[i], 4, 1, [0, 0, 0]);
    cv.text(bx + barW + 6, Math.round(textYs[i]), l, ts);
  });
  return cv.png();
}
