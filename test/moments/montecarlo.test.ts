import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { GaussianSampler, MomentAccumulator, Rng, covarianceFactor, monteCarloMoments, monteCarloMoments64 } from '../../src/moments/montecarlo.js';
import { type NoiseCovariance, networkMoments } from '../../src/moments/network.js';
import { naiveMatMul, naiveTranspose, normalGenerator } from './integrate.js';

describe('Rng (xoshiro128** + polar normals)', () => {
  it('is reproducible per seed and different across seeds', () => {
    const a = new Rng(42),
      b = new Rng(42),
      c = new Rng(43);
    const xa = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(xa);
    expect(Array.from({ length: 5 }, () => c.nextUint32())).not.toEqual(xa);
    expect(() => new Rng(Number.NaN)).toThrow(NetmomentsError);
  });

  it('uniforms and normals have the right moments (within 4 standard errors, 4e5 draws)', () => {
    const r = new Rng(7);
    const N = 400_000;
    let su = 0,
      su2 = 0,
      sz = 0,
      sz2 = 0,
      sz4 = 0,
      minU = 1,
      maxU = 0;
    for (let i = 0; i < N; i++) {
      const u = r.nextDouble();
      su += u;
      su2 += u * u;
      minU = Math.min(minU, u);
      maxU = Math.max(maxU, u);
      const z = r.normal();
      sz += z;
      sz2 += z * z;
      sz4 += z ** 4;
    }
    expect(minU).toBeGreaterThanOrEqual(0);
    expect(maxU).toBeLessThan(1);
    expect(Math.abs(su / N - 0.5)).toBeLessThan(4 * Math.sqrt(1 / 12 / N));
    expect(Math.abs(su2 / N - 1 / 3)).toBeLessThan(4 * Math.sqrt((1 / 5 - 1 / 9) / N));
    expect(Math.abs(sz / N)).toBeLessThan(4 / Math.sqrt(N));
    expect(Math.abs(sz2 / N - 1)).toBeLessThan(4 * Math.sqrt(2 / N));
    expect(Math.abs(sz4 / N - 3)).toBeLessThan(4 * Math.sqrt(96 / N)); // Var(z^4) = 105 - 9
  });
});

describe('covariance factor and sampler', () => {
  /** 6 inputs, noise only on a 2x2 "window" (elements 1, 2, 4, 5) with a rank-2 covariance there. */
  function windowCov(): Float64Array {
    const n = 6;
    const G = new Float64Array(n * 2);
    const g = normalGenerator(3);
    for (const i of [1, 2, 4, 5]) for (let t = 0; t < 2; t++) G[i * 2 + t] = g();
    return naiveMatMul(G, naiveTranspose(G, n, 2), n, 2, n);
  }

  it('factors a singular but valid covariance (rank 2 of 6) exactly', () => {
    const cov = windowCov();
    const f = covarianceFactor(cov, 6);
    expect(f.rank).toBe(2);
    const back = naiveMatMul(f.factor, naiveTranspose(f.factor, 6, 2), 6, 2, 6);
    for (let i = 0; i < 36; i++) expect(Math.abs(back[i] - cov[i])).toBeLessThan(1e-13);
  });

  it('rejects a covariance that is not PSD, naming its most negative eigenvalue; tolerates rounding', () => {
    // eigenvalues 3, -1 and 1
    const bad = Float64Array.of(1, 2, 0, 2, 1, 0, 0, 0, 1);
    expect(() => covarianceFactor(bad, 3)).toThrow(NetmomentsError);
    expect(() => covarianceFactor(bad, 3)).toThrow(/most negative eigenvalue is -1\.00000/);
    expect(() => new GaussianSampler(new Float64Array(3), { kind: 'full', cov: bad })).toThrow(/not positive semi-definite/);
    const nearly = windowCov();
    nearly[0] = -1e-14; // rounding-size negative diagonal on an element without noise
    expect(() => covarianceFactor(nearly, 6)).not.toThrow();
  });

  it('draws have the requested mean and covariance for every noise form (within 4 standard errors)', () => {
    const n = 6;
    const mu = Float64Array.of(1, -2, 0.5, 0, 3, -1);
    const g = normalGenerator(11);
    const F = Float64Array.from({ length: n * 3 }, () => g());
    const noises: [NoiseCovariance, Float64Array][] = [
      [{ kind: 'isotropic', sigma: 0.7 }, Float64Array.from({ length: 36 }, (_, i) => (i % 7 === 0 ? 0.49 : 0))],
      [
        { kind: 'diagonal', variance: Float64Array.of(1, 0, 2, 0.5, 0, 3) },
        Float64Array.from({ length: 36 }, (_, i) => (i % 7 === 0 ? [1, 0, 2, 0.5, 0, 3][i / 7] : 0)),
      ],
      [{ kind: 'lowrank', factor: F, rank: 3 }, naiveMatMul(F, naiveTranspose(F, n, 3), n, 3, n)],
      [{ kind: 'full', cov: windowCov() }, windowCov()],
    ];
    for (const [noise, Sigma] of noises) {
      const s = new GaussianSampler(mu, noise);
      const N = 100_000;
      const x = new Float64Array(N * n);
      s.sample(new Rng(5), x, N);
      const acc = new MomentAccumulator(n, true);
      acc.addBatch(x, N);
      const r = acc.result();
      for (let i = 0; i < n; i++) {
        expect(Math.abs(r.mean[i] - mu[i]), `${noise.kind} mean ${i}`).toBeLessThanOrEqual(4 * Math.sqrt(Sigma[i * n + i] / N) + 1e-15);
        for (let j = 0; j < n; j++) {
          const se = Math.sqrt((Sigma[i * n + i] * Sigma[j * n + j] + Sigma[i * n + j] ** 2) / N); // Gaussian Var of a product
          expect(Math.abs((r.covariance as Float64Array)[i * n + j] - Sigma[i * n + j]), `${noise.kind} cov ${i},${j}`).toBeLessThanOrEqual(4 * se + 1e-15);
        }
      }
    }
  });
});

describe('MomentAccumulator (Chan / Pebay merging)', () => {
  it('merging batches equals one two-pass computation, including M3, M4 and the co-moments', () => {
    const d = 3;
    const g = normalGenerator(21);
    const N = 10_007;
    const y = Float64Array.from({ length: N * d }, (_, i) => 100 + (i % 3) * g() + (g() > 1 ? 5 : 0));
    const acc = new MomentAccumulator(d, true);
    for (let k = 0; k < N;) {
      const b = Math.min(N - k, 1 + ((k * 7919) % 1000));
      acc.addBatch(y.subarray(k * d, (k + b) * d), b);
      k += b;
    }
    const one = new MomentAccumulator(d, true);
    one.addBatch(y, N);
    for (let i = 0; i < d; i++) {
      expect(acc.mean[i]).toBeCloseTo(one.mean[i], 11);
      for (const [x, z] of [
        [acc.M2[i], one.M2[i]],
        [acc.M3[i], one.M3[i]],
        [acc.M4[i], one.M4[i]],
      ]) {
        expect(Math.abs(x - z)).toBeLessThan(1e-9 * Math.abs(z) + 1e-9);
      }
      for (let j = 0; j < d; j++) expect(Math.abs((acc.C as Float64Array)[i * d + j] - (one.C as Float64Array)[i * d + j])).toBeLessThan(1e-8);
    }
    // the variance's standard error is sqrt((m4 - m2^2) / N), checked directly
    const r = acc.result();
    let m2 = 0,
      m4 = 0;
    for (let k = 0; k < N; k++) {
      const e = y[k * d + 1] - one.mean[1];
      m2 += e * e;
      m4 += e ** 4;
    }
    m2 /= N;
    m4 /= N;
    expect(r.varianceStdErr[1]).toBeCloseTo(Math.sqrt((m4 - m2 * m2) / N), 10);
    expect(r.variance[1]).toBeCloseTo((m2 * N) / (N - 1), 10);
  });
});

describe('monteCarloMoments', () => {
  const n = 4,
    d = 2;
  const W = Float64Array.of(1, -2, 0.5, 0, 0.3, 0.3, -1, 2);
  const bias = Float64Array.of(5, -3);
  const mu = Float64Array.of(0.2, -0.4, 1, 0);
  const noise: NoiseCovariance = { kind: 'diagonal', variance: Float64Array.of(0.5, 1, 0, 2) };
  const linear = async (x: Float32Array | Float64Array, b: number) => {
    const y = new Float64Array(b * d);
    for (let k = 0; k < b; k++)
      for (let i = 0; i < d; i++) {
        let s = bias[i];
        for (let j = 0; j < n; j++) s += W[i * n + j] * x[k * n + j];
        y[k * d + i] = s;
      }
    return y;
  };

  it('estimates the moments of a linear map within 4 standard errors and is reproducible', async () => {
    let sawFloat32 = false;
    const res = await monteCarloMoments(
      async (x, b) => {
        sawFloat32 = x instanceof Float32Array;
        return linear(x, b);
      },
      d,
      mu,
      noise,
      { samples: 200_000, batchSize: 999, covariance: true, seed: 3 },
    );
    expect(sawFloat32).toBe(true);
    const v = noise.kind === 'diagonal' ? noise.variance : new Float64Array();
    for (let i = 0; i < d; i++) {
      let m = bias[i];
      for (let j = 0; j < n; j++) m += W[i * n + j] * mu[j];
      expect(Math.abs(res.mean[i] - m)).toBeLessThan(4 * res.meanStdErr[i]);
      for (let k = 0; k < d; k++) {
        let c = 0;
        for (let j = 0; j < n; j++) c += W[i * n + j] * W[k * n + j] * v[j];
        if (i === k) expect(Math.abs(res.variance[i] - c)).toBeLessThan(4 * res.varianceStdErr[i]);
        expect(Math.abs((res.covariance as Float64Array)[i * d + k] - c)).toBeLessThan(0.05 * Math.max(1, Math.abs(c)));
      }
    }
    const again = await monteCarloMoments64(linear, d, mu, noise, { samples: 5000, seed: 9 });
    const again2 = await monteCarloMoments64(linear, d, mu, noise, { samples: 5000, seed: 9 });
    expect([...again.mean]).toEqual([...again2.mean]);
  });

  it('agrees with the analytic moments of a ReLU net (library sampler, float64)', async () => {
    const g = normalGenerator(77);
    const p = 6;
    const A = Float64Array.from({ length: p * n }, () => g());
    const B = Float64Array.from({ length: d * p }, () => g());
    const c1 = Float64Array.from({ length: p }, () => g());
    const m = naiveMatMul(A, mu, p, n, 1).map((x, v) => x + c1[v]);
    const net = { A: { data: A, rows: p, cols: n }, B: { data: B, rows: d, cols: p }, m, c2: new Float64Array(d) };
    const exact = await networkMoments(net, noise);
    const mc = await monteCarloMoments64(
      async (x, b) => {
        const y = new Float64Array(b * d);
        for (let k = 0; k < b; k++)
          for (let v = 0; v < p; v++) {
            let z = c1[v];
            for (let j = 0; j < n; j++) z += A[v * n + j] * x[k * n + j];
            if (z > 0) for (let i = 0; i < d; i++) y[k * d + i] += B[i * p + v] * z;
          }
        return y;
      },
      d,
      mu,
      noise,
      { samples: 300_000, seed: 5 },
    );
    for (let i = 0; i < d; i++) {
      expect(Math.abs(mc.mean[i] - exact.mean[i])).toBeLessThan(4 * mc.meanStdErr[i]);
      expect(Math.abs(mc.variance[i] - (exact.variance as Float64Array)[i])).toBeLessThan(4 * mc.varianceStdErr[i]);
    }
  });

  it('reports user errors as NetmomentsErrors', async () => {
    await expect(monteCarloMoments(async () => new Float64Array(3), d, mu, noise, { samples: 10 })).rejects.toThrow(/returned 3 values/);
    await expect(monteCarloMoments(linear, d, mu, noise, { samples: 1 })).rejects.toBeInstanceOf(NetmomentsError);
    await expect(monteCarloMoments(linear, d, mu, { kind: 'isotropic', sigma: -1 }, { samples: 10 })).rejects.toBeInstanceOf(NetmomentsError);
  });
});
