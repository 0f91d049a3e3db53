/**
 * The dataset report under the default method (issue 13): with `--linearize input` on LeNet every
 * input's moments are propagated through every layer, the same numbers `analyze` gives, and the
 * summary says so (method, reason, rank, no split); its Monte Carlo columns agree; a k-means bank
 * needs linearization points and runs two-stage, saying why.
 */
import { describe, expect, it } from 'vitest';
import { analyze } from '../../src/analyze.js';
import { openDataset } from '../../src/data/dataset.js';
import { runReport } from '../../src/dataset/index.js';
import { loadModel } from '../../src/onnx/load.js';
import { digits, tmp } from './helpers.js';

describe('dataset report, default method', () => {
  it('propagates per input (the numbers of analyze), and a k-means bank runs two-stage', async () => {
    const { data, labels } = digits(tmp('nm-method-'), 4);
    const model = loadModel('fixtures/lenet.onnx');
    const ds = openDataset(data, { inputShape: [1, 28, 28], labels });
    const noise = { kind: 'isotropic' as const, sigma: 8 };
    const r = await runReport(model, ds, { noise, dataFile: data, linearize: { kind: 'input' }, mc: 4000, mcInputs: 2 });
    expect(r.summary).toMatchObject({ method: 'propagate', rank: 784, split: null });
    expect(r.summary.methodReason).toBe('every op has a moment rule; two-stage would hold 4 kinked layers fixed');
    const xs = ds.getBatch([0, 1, 2, 3]);
    const a = await analyze(model, xs, 4, { noise, probabilitySamples: 0 });
    r.records.forEach((rec, i) => {
      for (let j = 0; j < 10; j++) {
        expect(Math.abs(rec.mean[j] - a.results[i].mean[j])).toBeLessThanOrEqual(1e-9 * (1 + Math.abs(rec.mean[j])));
        expect(Math.abs(rec.var![j] - a.results[i].variance![j])).toBeLessThanOrEqual(1e-9 * rec.var![j]);
      }
      expect(rec.uncertain).toBeNull();
    });
    // Monte Carlo with 4000 samples: a mean's standard error is 0.016 sd
    const sampled = r.records.filter((rec) => rec.mc);
    expect(sampled).toHaveLength(2);
    for (const rec of sampled) for (let j = 0; j < 10; j++) expect(Math.abs(rec.mean[j] - rec.mc!.mean[j]) / Math.sqrt(rec.mc!.var[j])).toBeLessThan(0.1);
    expect(r.files['summary.md']).toMatch(/moments propagated through every layer \(noise factor rank 784\)/);
    const bank = await runReport(model, ds, { noise, dataFile: data, linearize: { kind: 'kmeans', k: 2 }, method: 'propagate', onWarning: () => {} });
    expect(bank.summary).toMatchObject({ method: 'two-stage', methodReason: '--linearize kmeans linearizes at bank centres' });
    expect(bank.summary.split!.index).toBe(2);
  }, 240_000);
});
