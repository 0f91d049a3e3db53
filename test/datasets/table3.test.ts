/**
 * k-means linearization against per-input linearization on the bundled LeNet (the comparison of
 * Table 3 of Bibi et al. 2018; the full numbers over 100 digits are in docs/RESULTS.md):
 *   - with K = the number of inputs every digit is its own centre, and the bank path (Gram matrix
 *     per centre, src/linearize/bankMoments.ts) reproduces the per-input path (the moments engine
 *     on A F) to rounding;
 *   - with fewer centres each digit is linearized away from itself: the means move by many output
 *     standard deviations, and the paper's baseline (each cluster's farthest member) is worse than
 *     the centroid.
 */
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { runReport, type ReportOptions } from '../../src/dataset/index.js';
import { sharedOrtLinearAlgebra } from '../../src/runtime/linalg.js';
import type { SampleRecord } from '../../src/report/summary.js';
import { digits, tmp } from './helpers.js';

const N = 8;

function meanErrors(a: SampleRecord[], ref: SampleRecord[]): number[] {
  return a.flatMap((r, i) => r.mean.map((m, j) => Math.abs(m - ref[i].mean[j]) / Math.sqrt(ref[i].var![j])));
}
const median = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1];

describe('k-means bank vs per-input linearization (LeNet, sigma 8, last ReLU)', () => {
  it('K = N reproduces per-input linearization; K = 2 centroids beat the farthest-member baseline', async () => {
    const { data, labels } = digits(tmp('nm-t3-'), N);
    const model = loadModel('fixtures/lenet.onnx');
    const ds = openDataset(data, { inputShape: [1, 28, 28], labels });
    const base: Omit<ReportOptions, 'linearize'> = { noise: { kind: 'isotropic', sigma: 8 }, dataFile: data, linalg: sharedOrtLinearAlgebra({}) };
    // per-input two-stage linearization: what a bank of K = N centres reproduces
    const ref = await runReport(model, ds, { ...base, linearize: { kind: 'input' }, method: 'two-stage' });
    const own = await runReport(model, ds, { ...base, linearize: { kind: 'kmeans', k: N } });
    expect(ref.records).toHaveLength(N);
    own.records.forEach((r, i) => {
      const q = ref.records[i];
      expect(r.dist).toBe(0);
      for (let j = 0; j < 10; j++) {
        const sd = Math.sqrt(q.var![j]);
        expect(Math.abs(r.mean[j] - q.mean[j])).toBeLessThan(1e-9 * sd + 1e-9 * Math.abs(q.mean[j]));
        expect(Math.abs(r.var![j] - q.var![j])).toBeLessThan(1e-9 * q.var![j]);
      }
      expect(r.pred).toBe(q.pred);
      expect(r.uncertain).toBe(q.uncertain);
      expect(Math.abs(r.flip! - q.flip!)).toBeLessThan(1e-9);
    });
    // the paper's Table 3: every digit at its nearest centre, never re-linearized
    const centroid = await runReport(model, ds, { ...base, linearize: { kind: 'kmeans', k: 2 }, bankFallback: false });
    const farthest = await runReport(model, ds, { ...base, linearize: { kind: 'kmeans', k: 2 }, kmeans: { point: 'farthest' }, bankFallback: false });
    const eC = median(meanErrors(centroid.records, ref.records));
    const eF = median(meanErrors(farthest.records, ref.records));
    // linearizing a digit at a blurred centroid moves its logits' means by whole standard deviations
    expect(eC).toBeGreaterThan(0.5);
    expect(eF).toBeGreaterThan(eC);
    expect(median(centroid.records.map((r) => r.dist!))).toBeLessThan(median(farthest.records.map((r) => r.dist!)));
    // the variance survives much better than the mean
    const ratios = centroid.records.flatMap((r, i) => r.var!.map((v, j) => v / ref.records[i].var![j]));
    expect(median(ratios)).toBeGreaterThan(0.5);
    expect(median(ratios)).toBeLessThan(2);
    expect(centroid.summary.linearization).toMatchObject({ mode: 'kmeans', k: 2, point: 'centroid' });
    expect(farthest.summary.linearization).toMatchObject({ mode: 'kmeans', k: 2, point: 'farthest' });
  });
});
