/**
 * `tightness`: closed form against Monte Carlo through the real model. On an (Affine, ReLU, Affine)
 * net the two-stage surrogate is exact, so the Figure-2 slopes must be 1 up to Monte Carlo error;
 * on the LeNet the Table-1 numbers must be finite and the mean close.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectBadInput, cli } from '../helpers/cli.js';
import { fitThroughOrigin, meanStd } from '../../src/experiments/common.js';
import { regimeFactor, summarizeRuns, type TightnessRun } from '../../src/experiments/tightness.js';
import { Rng } from '../../src/moments/montecarlo.js';
import { scatterGridSvg, scatterSvg } from '../../src/report/svg.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'nm-tightness-'));

describe('tightness: helpers', () => {
  it('fits a line through the origin with R^2', async () => {
    const f = fitThroughOrigin([1, 2, 3, 4], [2, 4, 6, 8]);
    expect(f.slope).toBeCloseTo(2, 12);
    expect(f.r2).toBeCloseTo(1, 12);
    const g = fitThroughOrigin([1, 2, 3], [1, 3, 2]);
    expect(g.slope).toBeCloseTo((1 + 6 + 6) / 14, 12);
    expect(g.r2).toBeLessThan(1);
    expect(meanStd([1, 2, 3, Infinity]).mean).toBe(2);
    expect(meanStd([1, 2, 3, Infinity]).dropped).toBe(1);
  });

  it('regime covariances have every variance at most the regime maximum, and random correlations', async () => {
    const n = 30;
    const { Ft, scale } = regimeFactor(n, 200, new Rng(3));
    expect(scale).toBeGreaterThan(0);
    expect(scale).toBeLessThanOrEqual(200);
    // Sigma = F F^T, F^T is n x n (rows = directions)
    const cov = (i: number, j: number) => {
      let s = 0;
      for (let k = 0; k < n; k++) s += Ft[k * n + i] * Ft[k * n + j];
      return s;
    };
    let offDiag = 0;
    for (let i = 0; i < n; i++) {
      expect(cov(i, i)).toBeLessThanOrEqual(scale * (1 + 1e-12));
      for (let j = 0; j < i; j++) offDiag = Math.max(offDiag, Math.abs(cov(i, j)) / Math.sqrt(cov(i, i) * cov(j, j)));
    }
    expect(offDiag).toBeGreaterThan(0.2);
  });

  it('summarizes runs per output: ratios MC/analytic and the mean error in output sd', async () => {
    const run = (k: number): TightnessRun => ({
      run: k,
      analytic: { mean: [2, 0.001], variance: [4, 1], variancePaper: [2, 1] },
      mc: { samples: 100, mean: [2.2, 0.101], variance: [4, 1], meanStdErr: [0.2, 0.1] },
      expectedFlips: [],
    });
    const s = summarizeRuns([run(0), run(1)], 2);
    expect(s.table[0].meanRatio.mean).toBeCloseTo(1.1, 12);
    expect(s.table[0].varianceRatio.mean).toBeCloseTo(1, 12);
    expect(s.table[0].variancePaperRatio.mean).toBeCloseTo(2, 12);
    expect(s.table[0].meanErrorSd.mean).toBeCloseTo(0.1, 12);
    // a mean near 0: the ratio explodes, the error in sd does not
    expect(s.table[1].meanRatio.mean).toBeGreaterThan(100);
    expect(s.table[1].meanErrorSd.mean).toBeCloseTo(0.1, 12);
  });

  it('draws a scatter plot as an SVG document with the fit line and the points', async () => {
    const svg = scatterSvg({ title: 't <x>', xLabel: 'a', yLabel: 'b', series: [{ name: 's', x: [1, 2, 3], y: [1.1, 2, 2.9] }], slope: 0.98 });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('t &lt;x&gt;');
    expect((svg.match(/<circle /g) ?? []).length).toBeGreaterThanOrEqual(3);
    expect(svg).toContain('slope 0.980');
  });

  it('the legend lies below every plot area, the points inside them: one plot and the combined figure', async () => {
    const series = Array.from({ length: 10 }, (_, i) => ({ name: `output ${i}`, x: [1 + i, 2 + i, 30], y: [1 + i, 2.1 + i, 29] }));
    const plot = { title: 'm', xLabel: 'a', yLabel: 'b', series, slope: 0.99 };
    const num = (t: string, name: string) => Number(new RegExp(`${name}="([-0-9.]+)"`).exec(t)![1]);
    for (const svg of [scatterSvg(plot), scatterGridSvg({ title: 'all', subtitle: 's', plots: [plot, { ...plot, log: true }, plot] })]) {
      const rects = svg.match(/<rect class="plot"[^>]*>/g)!;
      const legend = /<g class="legend" transform="translate\(([-0-9.]+) ([-0-9.]+)\)">(.*?)<\/g>/.exec(svg)!;
      expect(legend, svg).not.toBeNull();
      const legendTop = Number(legend[2]);
      for (const r of rects) expect(legendTop).toBeGreaterThan(num(r, 'y') + num(r, 'height'));
      // every series is named in the legend; the whole legend fits inside the document
      for (let i = 0; i < 10; i++) expect(legend[3]).toContain(`>output ${i}<`);
      const ys = [...legend[3].matchAll(/<text x="[-0-9.]+" y="([-0-9.]+)"/g)].map((m) => legendTop + Number(m[1]));
      expect(Math.max(...ys)).toBeLessThan(num(svg, 'height'));
      // data points: all of them inside their plot area's clip
      const groups = svg.match(/<g class="data" clip-path="url\(#plot\d*\)">.*?<\/g>/g)!;
      expect(groups).toHaveLength(rects.length);
      for (const g of groups) expect((g.match(/<circle /g) ?? []).length).toBe(30);
    }
  });
});

describe('tightness: CLI', () => {
  it('on an (Affine, ReLU, Affine) net the Figure-2 slopes are 1 for the mean and the exact variance', async () => {
    const out = tmp();
    const r = await cli([
      'tightness',
      'fixtures/affine-relu-affine.onnx',
      '--synthetic',
      '--max-var',
      '1',
      '--runs',
      '8',
      '--mc',
      '20000',
      '--out-dir',
      out,
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(readFileSync(join(out, 'tightness.json'), 'utf8'));
    expect(rep.schema).toBe('netmoments.tightness/1');
    expect(rep.studies).toHaveLength(1);
    const s = rep.studies[0];
    expect(s.mode).toBe('synthetic');
    expect(s.table).toHaveLength(4);
    expect(Math.abs(s.fit.mean.slope - 1)).toBeLessThan(0.02);
    expect(s.fit.mean.r2).toBeGreaterThan(0.99);
    expect(Math.abs(s.fit.variance.slope - 1)).toBeLessThan(0.03);
    expect(s.fit.variance.r2Uncentered).toBeGreaterThan(0.99);
    // per output, the exact variance ratio is 1 within MC error (sd of a variance estimate ~ sqrt(2/N) = 1%)
    for (const row of s.table) expect(Math.abs(row.varianceRatio.mean - 1)).toBeLessThan(0.03);
    for (const f of Object.values(s.plots) as string[]) expect(readFileSync(join(out, f), 'utf8').startsWith('<svg')).toBe(true);
    expect(s.plots.combined).toBe(`${s.name}-tightness.svg`);
    const csv = readFileSync(join(out, 'runs.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(1 + 8 * 4);
  });

  it('Table 1 on the LeNet: ten logits, finite ratios, the mean within a fraction of an output sd', async () => {
    const out = tmp();
    const r = await cli([
      'tightness',
      'fixtures/lenet.onnx',
      '--data',
      'fixtures/mnist/digits-100.npy',
      '--sigma',
      '8',
      '--runs',
      '2',
      '--mc',
      '2000',
      '--out-dir',
      out,
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(readFileSync(join(out, 'tightness.json'), 'utf8')).studies[0];
    expect(s.mode).toBe('data');
    expect(s.split.index).toBe(2);
    expect(s.table).toHaveLength(10);
    expect(s.runDetails.map((x: { input: number }) => x.input)).toEqual([0, 1]);
    for (const row of s.table) {
      for (const q of ['meanRatio', 'varianceRatio', 'variancePaperRatio', 'meanErrorSd']) expect(Number.isFinite(row[q].mean)).toBe(true);
      expect(row.meanErrorSd.mean).toBeLessThan(2);
    }
    expect(Math.abs(s.fit.mean.slope - 1)).toBeLessThan(0.05);
    expect(existsSync(join(out, `${s.name}-variance-paper.svg`))).toBe(true);
  });

  it('Table 1 gets a propagate column beside two-stage (default method), against the same Monte Carlo; --method two-stage has none', async () => {
    const out = tmp();
    const args = ['tightness', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digits-100.npy', '--sigma', '8', '--runs', '2', '--mc', '4000', '-q'];
    const r = await cli([...args, '--out-dir', out]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(readFileSync(join(out, 'tightness.json'), 'utf8')).studies[0];
    expect(s.propagate).toEqual({ rank: 784, reason: 'every op has a moment rule; two-stage would hold 4 kinked layers fixed' });
    for (const d of s.runDetails) expect(d.propagate.mean).toHaveLength(10);
    // the MC standard error of a mean is 1/sqrt(4000) = 0.016 sd: propagate's mean error is of that order
    for (const row of s.table) {
      expect(row.propagate.meanErrorSd.mean).toBeLessThan(0.08);
      expect(Math.abs(row.propagate.varianceRatio.mean - 1)).toBeLessThan(0.15);
    }
    expect(readFileSync(join(out, 'runs.csv'), 'utf8').split('\n')[0]).toMatch(/,propagate_mean,propagate_variance$/);
    const two = tmp();
    expect((await cli([...args, '--method', 'two-stage', '--out-dir', two])).code).toBe(0);
    const t = JSON.parse(readFileSync(join(two, 'tightness.json'), 'utf8')).studies[0];
    expect(t.propagate.rank).toBeNull();
    expect(t.table[0].propagate).toBeUndefined();
  });

  it('bad usage: no mode, --paper with a model, a missing data file', async () => {
    const out = tmp();
    const r1 = await cli(['tightness', 'fixtures/fc-2.onnx', '--out-dir', out]);
    expect(r1.code).toBe(2);
    expect(r1.stderr.trim().split('\n')).toHaveLength(1);
    expect(r1.stderr).toMatch(/exactly one of --data/);
    expectBadInput(await cli(['tightness', 'fixtures/fc-2.onnx', '--paper', '--out-dir', out]), 'fixtures/fc-2.onnx', /--paper builds its own nets/);
    expectBadInput(await cli(['tightness', 'fixtures/lenet.onnx', '--data', 'nope.npy', '--out-dir', out]), 'nope.npy', /no such file/);
    expect(existsSync(join(out, 'tightness.json'))).toBe(false);
  });
});
