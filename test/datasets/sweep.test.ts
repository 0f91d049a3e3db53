/**
 * `sweep`: the --sigma list and range syntax; on LeNet digits the flip rate rises with sigma, each
 * point's flip rate is `report`'s at the same sigma (same runner, seed and points), the Monte Carlo
 * check points carry an interval around their rate; the CLI writes sweep.csv, sweep.json (inside
 * schemas/sweep.schema.json) and an SVG with axes, legend and error bars.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { Analyzer } from '../../src/analyze.js';
import { openDataset } from '../../src/data/dataset.js';
import { encodeNpy, npyToFloat32, readNpy } from '../../src/data/npy.js';
import { parseSigmaList, runSweep } from '../../src/dataset/sweep.js';
import { parseNumberList } from '../../src/experiments/common.js';
import { loadModel } from '../../src/onnx/load.js';
import { cli } from '../helpers/cli.js';

describe('sweep --sigma', () => {
  it('takes a list or a start:stop:step range, and refuses the rest', async () => {
    expect(parseSigmaList('1,2,4,8')).toEqual([1, 2, 4, 8]);
    expect(parseSigmaList('0:32:8')).toEqual([0, 8, 16, 24, 32]);
    expect(parseSigmaList('0:1:0.1')[3]).toBe(0.3);
    expect(parseSigmaList('0:30:8')).toEqual([0, 8, 16, 24]);
    for (const bad of ['', '1,,2', '-1,2', '8:0:1', '0:8:0', 'a:b:c', '1,x', '0:1e6:1']) expect(() => parseSigmaList(bad), bad).toThrow(/--sigma/);
    // the list is parseNumberList's (as --mean, --std, --max-var): an empty item is refused there too
    expect(() => parseSigmaList('1,,2')).toThrow("--sigma expects numbers >= 0 as a list (1,2,4,8) or a range (0:32:8), got '1,,2'");
    expect(() => parseNumberList('0.5,', '--mean')).toThrow("--mean expects a comma-separated list of numbers, got '0.5,'");
    expect(parseNumberList(' 0.485, 0.456 ,0.406', '--mean')).toEqual([0.485, 0.456, 0.406]);
  });
});

describe('sweep on LeNet digits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-sweep-'));
  // 8 fixture digits as their own file, so `report` (which takes a whole file) sees the same inputs
  const all = npyToFloat32(readNpy('fixtures/mnist/digits-100.npy'));
  const labels = readNpy('fixtures/mnist/labels-100.npy').data as BigInt64Array;
  const data = join(dir, 'digits-8.npy');
  const labelFile = join(dir, 'labels-8.npy');
  writeFileSync(data, encodeNpy(all.subarray(0, 8 * 784), [8, 1, 28, 28]));
  writeFileSync(labelFile, encodeNpy(labels.subarray(0, 8), [8]));

  it('an Analyzer under other noise shares its engine and gives what a new one gives (both methods); sigma 0 needs a new one', async () => {
    const model = loadModel('fixtures/lenet.onnx');
    const x = all.subarray(0, 784);
    for (const method of ['two-stage', 'propagate'] as const) {
      const at8 = await Analyzer.create(model, { method, noise: { kind: 'isotropic', sigma: 8 } });
      const fresh = await Analyzer.create(model, { method, noise: { kind: 'isotropic', sigma: 48 } });
      try {
        expect(at8.withNoise({ kind: 'isotropic', sigma: 0 })).toBeUndefined();
        const at48 = at8.withNoise({ kind: 'isotropic', sigma: 48 })!;
        const [a, b] = [await at48.analyzeInput(x, 0), await fresh.analyzeInput(x, 0)];
        expect(a.mean, method).toEqual(b.mean);
        expect(a.variance, method).toEqual(b.variance);
        expect(a.flipProbability, method).toBe(b.flipProbability);
        // the noise did change: sigma 48 spreads the logits more than sigma 8
        expect(a.variance![0]).toBeGreaterThan((await at8.analyzeInput(x, 0)).variance![0] * 4);
      } finally {
        await at8.release();
        await fresh.release();
      }
    }
  }, 120_000);

  it("rises with sigma, equals report's flip rate at the same sigma, and puts an interval around the MC rate", async () => {
    const model = loadModel('fixtures/lenet.onnx');
    const ds = openDataset(data, { labels: labelFile, inputShape: [1, 28, 28] });
    const sigmas = [16, 64, 128];
    const res = await runSweep(model, ds, sigmas, { seed: 0, mc: 200, mcInputs: 2, probabilitySamples: 8192, dataFile: data, labelsFile: labelFile });
    expect(res.points.map((p) => p.sigma)).toEqual(sigmas);
    const flips = res.points.map((p) => p.flipRate!);
    expect(flips[0]).toBeLessThan(flips[1]);
    expect(flips[1]).toBeLessThan(flips[2]);
    expect(flips[2]).toBeGreaterThan(0.2); // at sigma 128 LeNet sends a good part of the digits to class 8
    for (const p of res.points) {
      expect(p.accuracyClean).toBe(1);
      expect(p.accuracyUnderNoise!).toBeLessThanOrEqual(1);
      const m = p.mc!;
      expect(m.inputs).toBe(2);
      expect(m.samples).toBe(400);
      expect(m.interval[0]).toBeLessThanOrEqual(m.flipRate);
      expect(m.interval[1]).toBeGreaterThanOrEqual(m.flipRate);
      expect(m.interval[1] - m.interval[0]).toBeLessThan(0.2);
    }
    const r = await cli(['report', 'fixtures/lenet.onnx', '--data', data, '--labels', labelFile, '--sigma', '64', '--out-dir', join(dir, 'rep'), '-q']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(join(dir, 'rep', 'summary.json'), 'utf8'));
    expect(res.points[1].flipRate).toBe(summary.flipRate);
    expect(res.points[1].accuracyUnderNoise).toBe(summary.accuracy.underNoise);
  }, 400_000); // four dataset runs: about a minute alone, several on a loaded 2-core machine

  it('CLI: sweep.csv, sweep.json inside its schema, and an SVG with axes, legend and error bars', async () => {
    const out = join(dir, 'sw');
    const r = await cli([
      'sweep',
      'fixtures/lenet.onnx',
      '--data',
      data,
      '--labels',
      labelFile,
      '--count',
      '4',
      '--sigma',
      '0:64:32',
      '--mc',
      '100',
      '--mc-inputs',
      '2',
      '--out-dir',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/MC flip rate \(95% interval\)/);
    const rep = JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8'));
    const validate = new Ajv2020({ strict: true }).compile(JSON.parse(readFileSync('schemas/sweep.schema.json', 'utf8')));
    expect(validate(rep), JSON.stringify(validate.errors)).toBe(true);
    expect(rep.noise.sigmas).toEqual([0, 32, 64]);
    expect(rep.points[0].flipRate).toBe(0); // no noise, no flips
    expect(rep.points[0].inputs).toBe(4);
    const rows = readFileSync(join(out, 'sweep.csv'), 'utf8').trim().split('\n');
    expect(rows).toHaveLength(4);
    expect(rows[0].split(',').slice(0, 5)).toEqual(['sigma', 'inputs', 'accuracy_clean', 'accuracy_under_noise', 'flip_rate']);
    const svg = readFileSync(join(out, 'sweep.svg'), 'utf8');
    expect(svg).toMatch(/^<svg xmlns/);
    expect(svg).toMatch(/sigma \(noise sd, model input units\)/);
    expect(svg).toMatch(/percent of inputs/);
    expect(svg).toMatch(/Monte Carlo flip rate, 2 inputs \(95% interval\)/);
    expect(svg).toMatch(/flip rate \(analytic, all inputs\)/);
    expect((svg.match(/<path d="M /g) ?? []).length).toBeGreaterThanOrEqual(3); // a diamond per MC point (and the legend's)
  });
});
