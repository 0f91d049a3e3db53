/**
 * The Gram form of a two-stage linearization (src/linearize/linearizer.ts gramByReverse: S =
 * A Sigma A^T from p reverse passes, each block of rows scaled by Sigma and pushed forward again
 * (strategy 'forward'), or the rows kept and multiplied by GEMM in tiles ('gemm')),
 * used when A F would be gigabytes (ImageNet inputs), equals the factored form computed another way
 * (A F from the reverse rows alone, S = (A F)(A F)^T in float64): on LeNet split at ReLU 2 (p = 500,
 * n = 784), isotropic noise, and diagonal noise on a 24 x 24 window (576 > p directions) with an offset mu - xb. The moments from
 * S (bankMoments.ts gramMoments) equal the moments from A F (surrogateMoments). Tolerances: float32
 * tangent runs, 1e-5 of the largest entry.
 */
import { describe, expect, it } from 'vitest';
import { gramMoments } from '../../src/linearize/bankMoments.js';
import { GRAM_BLOCK_ROWS, Linearizer, gramChunk, gramStrategy } from '../../src/linearize/linearizer.js';
import { surrogateMoments } from '../../src/moments/surrogate.js';
import { jsLinearAlgebra } from '../../src/moments/linalg.js';
import type { NoiseFactor } from '../../src/noise.js';
import { loadModel } from '../../src/onnx/load.js';
import { maxAbs, maxAbsDiff, rng } from '../tangent/helpers.js';
import { digit } from './nets.js';

const LENET = new URL('../../fixtures/lenet.onnx', import.meta.url).pathname;

describe('rows per block of the Gram form', () => {
  it('GRAM_BLOCK_ROWS where the working set allows, fewer within 512 MiB a session, never more than p', () => {
    // VGG-11's fc7 bottom: 133 MB a reverse row -> 4 rows; AlexNet's: 9.9 MB -> GRAM_BLOCK_ROWS (8)
    expect(gramChunk(150528, 4096, 132.8e6)).toBe(4);
    expect(gramChunk(150528, 4096, 9.9e6)).toBe(GRAM_BLOCK_ROWS);
    // the forward strategy also pushes the block through the tangent model: its bytes a direction count too
    expect(gramChunk(150528, 4096, 9.9e6, 200e6)).toBe(2);
    expect(gramChunk(150528, 4096, 600e6)).toBe(1);
    expect(gramChunk(784, 5, 1e3)).toBe(5);
    // [m, n] float32 within the linearizer's chunk of 96 MiB
    expect(gramChunk(16e6, 4096, 1e3)).toBe(1);
  });
});

describe('two-stage linearization in its Gram form', () => {
  it('S and the moments equal those of A F (LeNet, ReLU 2)', async () => {
    const warnings: string[] = [];
    const lin = await Linearizer.create(loadModel(LENET), { relu: 2, jacobian: 'auto', flips: false, onWarning: (m) => warnings.push(m) });
    try {
      const r = rng(11);
      const x = Float32Array.from(digit(), (v) => v + r.normal());
      const all = Int32Array.from({ length: 784 }, (_, i) => i);
      const window = all.filter((i) => i % 28 >= 2 && i % 28 < 26 && i >= 2 * 28 && i < 26 * 28);
      const factors: [NoiseFactor, Float64Array | undefined][] = [
        [{ kind: 'axes', n: 784, r: 784, support: all, sd: new Float64Array(784).fill(8) }, undefined],
        [
          { kind: 'axes', n: 784, r: window.length, support: window, sd: Float64Array.from(window, () => 2 + 10 * r.uniform()) },
          Float64Array.from({ length: 784 }, () => 3 * r.normal()),
        ],
      ];
      for (const [factor, delta] of factors) {
        expect(await lin.gramPlanned(factor)).toBe(false); // A F is small here: the factored form by default
        expect(await lin.gramPlanned(factor, 0)).toBe(true);
        const a = await lin.linearize(x, factor, delta);
        const b = await lin.linearize(x, factor, delta, { gram: true, gramMinBytes: 0 });
        expect(a.S).toBeUndefined();
        expect(b.S).toBeDefined();
        expect(b.A.length).toBe(0);
        const p = lin.p;
        const q = factor.r;
        const S = new Float64Array(p * p);
        for (let u = 0; u < p; u++)
          for (let v = 0; v < p; v++) {
            let t = 0;
            for (let k = 0; k < q; k++) t += a.A[u * q + k] * a.A[v * q + k];
            S[u * p + v] = t;
          }
        expect(maxAbs(S)).toBeGreaterThan(0);
        expect(maxAbsDiff(b.S!, S)).toBeLessThanOrEqual(1e-5 * maxAbs(S));
        // the 'gemm' strategy (rows kept, S by GEMM in tiles) where products are given
        expect(gramStrategy(lin.p, lin.n, jsLinearAlgebra)).toBe('gemm');
        expect(gramStrategy(lin.p, lin.n, undefined)).toBe('forward');
        const c = await lin.linearize(x, factor, delta, { gram: true, gramMinBytes: 0, linalg: jsLinearAlgebra, gramTileRows: 64 });
        expect(maxAbsDiff(c.S!, S)).toBeLessThanOrEqual(1e-5 * maxAbs(S));
        if (delta) expect(maxAbsDiff(c.Adelta!, a.Adelta!)).toBeLessThanOrEqual(1e-5 * maxAbs(a.Adelta!));
        // the reverse passes shared with worker threads (their own adjoint sessions, without
        // pre-packed weights: float32 rounding may differ), both strategies
        const w = await lin.linearize(x, factor, delta, { gram: true, gramMinBytes: 0, linalg: jsLinearAlgebra, gramTileRows: 64, gramWorkers: 2 });
        expect(maxAbsDiff(w.S!, S)).toBeLessThanOrEqual(1e-5 * maxAbs(S));
        if (delta) expect(maxAbsDiff(w.Adelta!, a.Adelta!)).toBeLessThanOrEqual(1e-5 * maxAbs(a.Adelta!));
        const wf = await lin.linearize(x, factor, delta, { gram: true, gramMinBytes: 0, gramWorkers: 1 });
        expect(maxAbsDiff(wf.S!, S)).toBeLessThanOrEqual(1e-5 * maxAbs(S));
        expect(warnings).toEqual([]); // the workers were made (else: a warning, and the main thread alone)
        if (delta) expect(maxAbsDiff(b.Adelta!, a.Adelta!)).toBeLessThanOrEqual(1e-5 * maxAbs(a.Adelta!));
        expect(maxAbsDiff(b.B, a.B)).toBe(0);
        const ma = await surrogateMoments(a, factor, { offset: { A: a.Adelta }, paper: true });
        const mb = await gramMoments(jsLinearAlgebra, { ...b, S: b.S! }, { paper: true });
        expect(ma.units.uncertain).toBeGreaterThan(10);
        expect(maxAbsDiff(mb.mean, ma.mean)).toBeLessThanOrEqual(1e-5 * maxAbs(ma.mean));
        expect(maxAbsDiff(mb.variance!, ma.variance!)).toBeLessThanOrEqual(1e-4 * maxAbs(ma.variance!));
        expect(maxAbsDiff(mb.variancePaper!, ma.variancePaper!)).toBeLessThanOrEqual(1e-4 * maxAbs(ma.variancePaper!));
        expect(maxAbsDiff(mb.covariance!, ma.covariance!)).toBeLessThanOrEqual(1e-4 * maxAbs(ma.covariance!));
      }
    } finally {
      await lin.release();
    }
  }, 60_000);
});
