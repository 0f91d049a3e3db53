/**
 * The report's bank path against the moments engine run independently on the same centre.
 *
 * The report computes per input m = zb + A (mu - xb) for a whole group of inputs in one product with
 * the bank's float32 A widened inside onnxruntime, forms each centre's noise quantities once
 * (s_v only for means, the Gram matrix S = (A F)(A F)^T otherwise) and gathers per input
 * (src/linearize/bankMoments.ts). Here every record of a report over a bank is recomputed from the
 * bank's own .npy files, read back here, by the engine (src/moments/network.ts) in the input's
 * coordinates: A (p x n), B, D (d x n) widened to float64 in the test, the noise covariance as given
 * (no factor), m and c2 formed with plain loops. The residual fixture has a skip path across the
 * cut at its ReLU 1, so D is exercised; isotropic, diagonal (with a noise mean) and full noise, exact variance
 * and means only.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { parseNpy } from '../../src/data/npy.js';
import { networkMoments } from '../../src/moments/network.js';
import type { NoiseSpec as Noise } from '../../src/noise.js';
import { loadModel } from '../../src/onnx/load.js';
import { runReport, type ReportOptions } from '../../src/dataset/index.js';
import { sharedOrtLinearAlgebra } from '../../src/runtime/linalg.js';
import { cli, type CliResult } from '../helpers/cli.js';
import { residualData, tmp } from './helpers.js';

const COUNT = 12;
const n = 64;

function npy64(file: string): Float64Array {
  return Float64Array.from(parseNpy(readFileSync(file)).data as Float32Array);
}

/** A seeded full-rank covariance L L^T + 0.01 I scaled to entries ~0.05. */
function covariance(seed: number): Float64Array {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296) * 2 - 1;
  const L = Float64Array.from({ length: n * n }, next);
  const cov = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let t = 0;
      for (let k = 0; k < n; k++) t += L[i * n + k] * L[j * n + k];
      cov[i * n + j] = 0.05 * (t / n) + (i === j ? 0.01 : 0);
    }
  }
  return cov;
}

describe('report with a bank == the moments engine on the centre (residual net, skip path)', () => {
  const dir = tmp('nm-bankpaths-');
  const { data, labels } = residualData(dir, COUNT, 11);
  const bank = join(dir, 'bank');
  let built: CliResult;
  beforeAll(async () => {
    built = await cli(['bank', 'fixtures/residual.onnx', '--data', data, '--relu', '1', '--k', '3', '--out-dir', bank, '--quiet']);
  });
  const x = parseNpy(readFileSync(data)).data as Float32Array;

  const cases: { name: string; noise: Noise; noiseMean?: Float64Array }[] = [
    { name: 'isotropic', noise: { kind: 'isotropic', sigma: 0.3 } },
    {
      name: 'diagonal with a noise mean',
      noise: { kind: 'diagonal', variance: Float64Array.from({ length: n }, (_, j) => 0.02 + 0.002 * (j % 17)) },
      noiseMean: Float64Array.from({ length: n }, (_, j) => 0.05 * Math.sin(j)),
    },
    { name: 'full covariance', noise: { kind: 'full', cov: covariance(5) } },
  ];

  for (const c of cases) {
    for (const variance of ['exact', 'none'] as const) {
      it(`${c.name}, variance ${variance}`, async () => {
        expect(built.code, built.stderr).toBe(0);
        expect(existsSync(join(bank, 'centre-0000', 'D.npy'))).toBe(true);
        const model = loadModel('fixtures/residual.onnx');
        const ds = openDataset(data, { inputShape: [1, 8, 8], labels });
        const o: ReportOptions = {
          noise: c.noise as ReportOptions['noise'],
          noiseMean: c.noiseMean,
          dataFile: data,
          linalg: sharedOrtLinearAlgebra({}),
          relu: 1,
          linearize: { kind: 'bank', path: bank },
          // the bank's own numbers for every input: nearest centre, no re-linearization
          bankFallback: false,
          variance,
        };
        const report = await runReport(model, ds, o);
        expect(report.records).toHaveLength(COUNT);
        const centresUsed = new Set<number>();
        for (const rec of report.records) {
          const cd = join(bank, `centre-${String(rec.centre).padStart(4, '0')}`);
          centresUsed.add(rec.centre!);
          const A = npy64(join(cd, 'A.npy'));
          const B = npy64(join(cd, 'B.npy'));
          const D = npy64(join(cd, 'D.npy'));
          const zb = npy64(join(cd, 'zb.npy'));
          const gb = npy64(join(cd, 'gb.npy'));
          const xb = npy64(join(cd, 'point.npy'));
          const p = zb.length;
          const d = gb.length;
          const delta = Float64Array.from({ length: n }, (_, j) => x[rec.i * n + j] + (c.noiseMean ? c.noiseMean[j] : 0) - xb[j]);
          expect(rec.dist).toBeCloseTo(Math.hypot(...delta), 9);
          const m = Float64Array.from(zb, (z, v) => {
            let t = z;
            for (let j = 0; j < n; j++) t += A[v * n + j] * delta[j];
            return t;
          });
          const c2 = Float64Array.from(gb, (g, i) => {
            let t = g;
            for (let v = 0; v < p; v++) t -= B[i * p + v] * Math.max(zb[v], 0);
            return t;
          });
          const ref = await networkMoments(
            { A: { data: A, rows: p, cols: n }, B: { data: B, rows: d, cols: p }, D: { data: D, rows: d, cols: n }, m, c2, mu: delta },
            c.noise,
            { variance: variance === 'exact', covariance: variance === 'exact', paper: false },
          );
          for (let i = 0; i < d; i++) {
            const scale = Math.sqrt(ref.variance ? ref.variance[i] : 1) + Math.abs(ref.mean[i]);
            expect(Math.abs(rec.mean[i] - ref.mean[i]), `input ${rec.i} output ${i} mean`).toBeLessThan(1e-9 * scale);
            if (variance === 'exact')
              expect(Math.abs(rec.var![i] - ref.variance![i]), `input ${rec.i} output ${i} variance`).toBeLessThan(1e-9 * ref.variance![i]);
          }
          if (variance === 'exact') {
            expect(rec.uncertain).toBe(ref.units.uncertain);
            expect(rec.flip).not.toBeNull();
          } else {
            expect(rec.var).toBeNull();
            expect(rec.flip).toBeNull();
          }
        }
        // the inputs spread over more than one centre, so the grouping by centre is exercised
        expect(centresUsed.size).toBeGreaterThan(1);
      });
    }
  }
});
