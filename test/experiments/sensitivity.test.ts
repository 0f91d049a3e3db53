/**
 * `sensitivity`: sliding-window noise maps from one Jacobian per image. The per-window moments from
 * the sliced Jacobian must equal `analyze --window` at that window (which linearizes anew with only
 * the window's directions); the maps must have the documented shapes and not be constant.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { cli, expectBadInput } from '../helpers/cli.js';
import { Analyzer } from '../../src/analyze.js';
import { openDataset } from '../../src/data/dataset.js';
import { readNpy, npyToFloat64 } from '../../src/data/npy.js';
import { RestrictedSurrogate, pointSurrogate } from '../../src/experiments/common.js';
import { classAverages, windowPositions, type SensitivityResult } from '../../src/experiments/sensitivity.js';
import { networkMoments } from '../../src/moments/network.js';
import { windowIndices } from '../../src/noise.js';
import { loadModel } from '../../src/onnx/load.js';
import { axisTicks, heatmapImage, heatmapPng, viridis, windowGrid } from '../../src/report/heatmap.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'nm-sensitivity-'));

describe('sensitivity: one Jacobian per image', () => {
  it('the moments of a window from the sliced Jacobian equal analyze --window at that window', async () => {
    const model = loadModel('fixtures/lenet.onnx');
    const ds = openDataset('fixtures/mnist/digits-100.npy', { inputShape: [1, 28, 28] });
    const x = ds.get(2);
    const window = { row: 9, col: 12, height: 7, width: 7 };
    const sigma = 300;
    const an = await Analyzer.create(model, {
      noise: { kind: 'isotropic', sigma },
      window,
      at: 'input',
      variance: 'exact',
      flips: false,
      method: 'two-stage',
    });
    try {
      const ref = await an.analyzeInput(x, 0);
      const s = await pointSurrogate(an.linearizer, x);
      const net = new RestrictedSurrogate(s, windowIndices([1, 28, 28], window)).network();
      const m = await networkMoments(net, { kind: 'isotropic', sigma }, { covariance: false, paper: false });
      for (let i = 0; i < 10; i++) {
        const sd = Math.sqrt(ref.variance![i]);
        expect(Math.abs(m.mean[i] - ref.mean[i])).toBeLessThan(1e-3 * (Math.abs(ref.mean[i]) + sd));
        expect(Math.abs(m.variance![i] - ref.variance![i])).toBeLessThan(1e-3 * ref.variance![i] + 1e-9);
      }
    } finally {
      await an.release();
    }
  });

  it('window positions and per-class averages', async () => {
    expect(windowPositions(28, 7, 1)).toBe(22);
    expect(windowPositions(28, 7, 7)).toBe(4);
    expect(windowPositions(28, 7, 3)).toBe(8);
    expect(windowPositions(5, 7, 1)).toBe(0);
    const im = (label: number, v: number) => ({
      index: 0,
      label,
      cleanClass: label,
      foolingMean: new Float64Array([v, 0]),
      flipProbability: new Float64Array([v / 2, 0.1]),
      meanMargin: new Float64Array(2),
      sampledWindows: 2,
    });
    const res = { rows: 1, cols: 2, images: [im(1, 1), im(1, 0), im(0, 1)] } as unknown as SensitivityResult;
    const c = classAverages(res, 3);
    expect(c[1].images).toBe(2);
    expect(Array.from(c[1].foolingMean)).toEqual([0.5, 0]);
    expect(Array.from(c[0].flipProbability)).toEqual([0.5, 0.1]);
    expect(Number.isNaN(c[2].foolingMean[0])).toBe(true);
  });

  it('heat maps: a PNG with the panels in viridis and a colour bar', async () => {
    const png = PNG.sync.read(Buffer.from(heatmapPng([{ title: 'a', values: [0, 1, 2, 3], rows: 2, cols: 2 }], { cell: 10, title: 'T' })));
    expect(png.width).toBeGreaterThan(20);
    const colours = new Set<string>();
    for (let i = 0; i < png.width * png.height; i++) colours.add(`${png.data[4 * i]},${png.data[4 * i + 1]},${png.data[4 * i + 2]}`);
    expect(colours.has(viridis(0).join(','))).toBe(true);
    expect(colours.has(viridis(1).join(','))).toBe(true);
  });
});

describe('heat maps: axes, colour bar, the image underneath', () => {
  /** The viridis position (0..1) nearest to an RGB colour, from 1001 samples of the scale. */
  const viridisPosition = (rgb: number[]) => {
    let best = 0,
      bestD = Infinity;
    for (let k = 0; k <= 1000; k++) {
      const v = viridis(k / 1000);
      const dist = (v[0] - rgb[0]) ** 2 + (v[1] - rgb[1]) ** 2 + (v[2] - rgb[2]) ** 2;
      if (dist < bestD) [best, bestD] = [k / 1000, dist];
    }
    return best;
  };

  it('the map lies on the pixel grid (28 x 28 at 6 px), the colour bar runs from vmax down to vmin, the grey image shows where no window is centred', async () => {
    const rows = 22,
      cols = 22;
    const values = Float64Array.from({ length: rows * cols }, (_, i) => i / (rows * cols - 1));
    const background = Float64Array.from({ length: 28 * 28 }, (_, i) => (i % 28) / 27);
    const pixels = windowGrid(28, 28, 7, 1);
    expect(pixels).toEqual({ height: 28, width: 28, offset: 3, stride: 1, size: 1 });
    const { png, layout } = heatmapImage([{ title: 'x', values, rows, cols, pixels, background }], {
      cell: 6,
      vmin: 0,
      vmax: 1,
      colorbarLabel: 'P(flip) (0-1)',
    });
    const img = PNG.sync.read(Buffer.from(png));
    expect([img.width, img.height]).toEqual([layout.width, layout.height]);
    expect(layout.maps[0].width).toBe(28 * 6);
    expect(layout.maps[0].height).toBe(28 * 6);
    const at = (x: number, y: number) => Array.from(img.data.subarray(4 * (y * img.width + x), 4 * (y * img.width + x) + 3));
    // colour bar: down its middle column the scale position never increases, from 1 at the top to 0 at the bottom
    const { x, y, width, height } = layout.colorbar;
    const t = Array.from({ length: height }, (_, k) => viridisPosition(at(x + width / 2, y + k)));
    for (let k = 1; k < t.length; k++) expect(t[k]).toBeLessThanOrEqual(t[k - 1]);
    expect(t[0]).toBeGreaterThan(0.99);
    expect(t[t.length - 1]).toBeLessThan(0.01);
    // pixel (0, 0) has no window centred on it: the background's grey (black at column 0)
    const m = layout.maps[0];
    expect(at(m.x + 2, m.y + 2)).toEqual([0, 0, 0]);
    expect(at(m.x + 27 * 6 + 2, m.y + 2)).toEqual([255, 255, 255]);
    // pixel (3, 3) is the first window's centre: viridis(0) blended over the background
    const first = at(m.x + 3 * 6 + 2, m.y + 3 * 6 + 2);
    const b = (255 * 3) / 27;
    expect(first).toEqual(viridis(0).map((h) => Math.round(0.65 * h + 0.35 * b)));
    expect(axisTicks(28)).toEqual([0, 10, 20]);
    expect(axisTicks(4)).toEqual([0, 1, 2, 3]);
  });

  it('windowGrid puts a window with a large stride on its whole block', async () => {
    expect(windowGrid(28, 28, 7, 7)).toEqual({ height: 28, width: 28, offset: 0, stride: 7, size: 7 });
    expect(windowGrid(28, 28, 3, 5)).toEqual({ height: 28, width: 28, offset: 0, stride: 5, size: 3 });
  });
});

describe('sensitivity: CLI on the LeNet', () => {
  it('writes per-image and per-class maps of the documented shapes, not constant, and PNG heat maps', async () => {
    const out = tmp();
    const r = await cli([
      'sensitivity',
      'fixtures/lenet.onnx',
      '--data',
      'fixtures/mnist/digits-100.npy',
      '--labels',
      'fixtures/mnist/labels-100.npy',
      '--count',
      '3',
      '--window-size',
      '7',
      '--stride',
      '7',
      '--sigma',
      '1000',
      '--probability-points',
      '128',
      '--out-dir',
      out,
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(readFileSync(join(out, 'sensitivity.json'), 'utf8'));
    expect(rep.schema).toBe('netmoments.sensitivity/1');
    expect(rep.positions.rows).toBe(4);
    expect(rep.positions.cols).toBe(4);
    expect(rep.groupedBy).toBe('label');
    expect(rep.images.map((i: { label: number }) => i.label)).toEqual([2, 8, 6]);
    const flip = readNpy(join(out, 'flip-probability.npy'));
    expect(flip.shape).toEqual([3, 4, 4]);
    const f = npyToFloat64(flip);
    const perImage = [0, 1, 2].map((k) => f.subarray(k * 16, (k + 1) * 16));
    for (const m of perImage) {
      expect(Math.max(...m)).toBeGreaterThan(Math.min(...m)); // not constant
      for (const v of m) expect(v >= 0 && v <= 1).toBe(true);
    }
    // noise in the corner (background, mostly outside the receptive fields' support) flips less than in the middle
    const centre = (m: Float64Array) => (m[5] + m[6] + m[9] + m[10]) / 4;
    const corners = (m: Float64Array) => (m[0] + m[3] + m[12] + m[15]) / 4;
    expect(perImage.reduce((a, m) => a + centre(m), 0)).toBeGreaterThan(perImage.reduce((a, m) => a + corners(m), 0));
    expect(readNpy(join(out, 'fooling-mean.npy')).shape).toEqual([3, 4, 4]);
    expect(readNpy(join(out, 'class-flip-probability.npy')).shape).toEqual([10, 4, 4]);
    const cls = npyToFloat64(readNpy(join(out, 'class-flip-probability.npy')));
    expect(Array.from(cls.subarray(2 * 16, 3 * 16))).toEqual(Array.from(perImage[0], (v) => Math.fround(v)));
    const png = PNG.sync.read(readFileSync(join(out, 'flip-probability.png')));
    expect(png.width).toBeGreaterThan(100);
    expect(png.height).toBeGreaterThan(100);
    // the first inputs beside their maps: 3 inputs x (input, map) in one row of 4 panels and one of 2
    expect(rep.files).toContain('inputs-flip-probability.png');
    const shown = PNG.sync.read(readFileSync(join(out, 'inputs-flip-probability.png')));
    expect(shown.width).toBeGreaterThan(4 * 28 * 6);
  });

  it('bad input: a window larger than the image, a missing labels file', async () => {
    const out = tmp();
    const r = await cli([
      'sensitivity',
      'fixtures/lenet.onnx',
      '--data',
      'fixtures/mnist/digit-0.npy',
      '--window-size',
      '40',
      '--sigma',
      '1',
      '--out-dir',
      out,
    ]);
    expectBadInput(r, 'fixtures/lenet.onnx', /does not fit/);
    expectBadInput(
      await cli(['sensitivity', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digit-0.npy', '--labels', 'missing.npy', '--sigma', '1', '--out-dir', out]),
      'missing.npy',
      /no such file|cannot read/,
    );
  });
});
