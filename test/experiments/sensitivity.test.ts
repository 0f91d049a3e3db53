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
import { expectBadInput, runCli } from '../helpers/cli.js';
import { Analyzer } from '../../src/analyze.js';
import { openDataset } from '../../src/data/dataset.js';
import { readNpy, npyToFloat64 } from '../../src/data/npy.js';
import { RestrictedSurrogate, pointSurrogate } from '../../src/experiments/common.js';
import { classAverages, windowPositions, type SensitivityResult } from '../../src/experiments/sensitivity.js';
import { networkMoments } from '../../src/moments/network.js';
import { windowIndices } from '../../src/noise.js';
import { loadModel } from '../../src/onnx/load.js';
import { heatmapPng, viridis } from '../../src/report/heatmap.js';

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

  it('window positions and per-class averages', () => {
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

  it('heat maps: a PNG with the panels in viridis and a colour bar', () => {
    const png = PNG.sync.read(Buffer.from(heatmapPng([{ title: 'a', values: [0, 1, 2, 3], rows: 2, cols: 2 }], { cell: 10, title: 'T' })));
    expect(png.width).toBeGreaterThan(20);
    const colours = new Set<string>();
    for (let i = 0; i < png.width * png.height; i++) colours.add(`${png.data[4 * i]},${png.data[4 * i + 1]},${png.data[4 * i + 2]}`);
    expect(colours.has(viridis(0).join(','))).toBe(true);
    expect(colours.has(viridis(1).join(','))).toBe(true);
  });
});

describe('sensitivity: CLI on the LeNet', () => {
  it('writes per-image and per-class maps of the documented shapes, not constant, and PNG heat maps', () => {
    const out = tmp();
    const r = runCli([
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
  });

  it('bad input: a window larger than the image, a missing labels file', () => {
    const out = tmp();
    const r = runCli(['sensitivity', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digit-0.npy', '--window-size', '40', '--sigma', '1', '--out-dir', out]);
    expectBadInput(r, 'fixtures/lenet.onnx', /does not fit/);
    expectBadInput(
      runCli(['sensitivity', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digit-0.npy', '--labels', 'missing.npy', '--sigma', '1', '--out-dir', out]),
      'missing.npy',
      /no such file|cannot read/,
    );
  });
});
