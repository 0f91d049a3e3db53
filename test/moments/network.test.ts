import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import {
  type Matrix,
  type NoiseCovariance,
  type ShallowNetwork,
  UnitState,
  expectedFlips,
  networkMoments,
  pairPanel,
  preActivationMean,
} from '../../src/moments/network.js';
import { reluCrossMoment, reluCrossMomentPaper, reluMean, reluPairCorrection, reluVarianceCorrection } from '../../src/moments/relu.js';
import { Phi } from '../../src/moments/special.js';
import { OrtLinearAlgebra } from '../../src/runtime/linalg.js';
import { minEigenvalue, mulberry32, naiveMatMul, naiveTranspose, normalGenerator } from './integrate.js';

interface TestNet {
  net: ShallowNetwork;
  noise: NoiseCovariance;
  /** Sigma = G G^T (n x r), used by the test's own sampler. */
  G: Float64Array;
  r: number;
  mu: Float64Array;
  c1: Float64Array;
}

const mat = (data: Float64Array, rows: number, cols: number): Matrix => ({ data, rows, cols });

/**
 * A random (Affine, ReLU, Affine) net with nonzero mu and c1, plus three special units: one surely
 * on (large positive bias), one surely off, one constant (zero row of A).
 */
function randomNet(seed: number, n: number, p: number, d: number, kind: NoiseCovariance['kind'], skip = false): TestNet {
  const g = normalGenerator(seed);
  const A = Float64Array.from({ length: p * n }, () => g());
  const B = Float64Array.from({ length: d * p }, () => g());
  const c1 = Float64Array.from({ length: p }, () => 0.8 * g());
  const c2 = Float64Array.from({ length: d }, () => g());
  const mu = Float64Array.from({ length: n }, () => 0.7 * g());
  if (p >= 4) {
    c1[0] = 60; // surely on
    c1[1] = -60; // surely off
    for (let j = 0; j < n; j++) A[2 * n + j] = 0; // constant: relu(c1[2])
    c1[2] = 0.9;
  }
  let noise: NoiseCovariance;
  let G: Float64Array;
  let r: number;
  switch (kind) {
    case 'isotropic': {
      const sigma = 0.6;
      noise = { kind, sigma };
      r = n;
      G = new Float64Array(n * n);
      for (let i = 0; i < n; i++) G[i * n + i] = sigma;
      break;
    }
    case 'diagonal': {
      const variance = Float64Array.from({ length: n }, (_, i) => (i === 1 ? 0 : 0.1 + 0.5 * Math.abs(g())));
      noise = { kind, variance };
      r = n;
      G = new Float64Array(n * n);
      for (let i = 0; i < n; i++) G[i * n + i] = Math.sqrt(variance[i]);
      break;
    }
    case 'full': {
      // singular on purpose (rank n - 1), like noise confined to a window
      r = n - 1;
      G = Float64Array.from({ length: n * r }, () => 0.4 * g());
      noise = { kind, cov: naiveMatMul(G, naiveTranspose(G, n, r), n, r, n) };
      break;
    }
    case 'lowrank': {
      r = 2;
      G = Float64Array.from({ length: n * r }, () => 0.5 * g());
      noise = { kind, factor: G, rank: r };
      break;
    }
  }
  const m = naiveMatMul(A, mu, p, n, 1);
  for (let v = 0; v < p; v++) m[v] += c1[v];
  const net: ShallowNetwork = { A: mat(A, p, n), B: mat(B, d, p), m, c2 };
  if (skip) {
    net.D = mat(
      Float64Array.from({ length: d * n }, () => 0.7 * g()),
      d,
      n,
    );
    net.mu = mu;
  }
  return { net, noise, G, r, mu, c1 };
}

/** The net itself, run in float64: g(x) = B relu(A x + c1) + D x + c2. */
function forward(t: TestNet, x: Float64Array, out: Float64Array, z: Float64Array): void {
  const { A, B, D, c2 } = t.net;
  const n = A.cols,
    p = A.rows,
    d = B.rows;
  for (let v = 0; v < p; v++) {
    let s = t.c1[v];
    for (let j = 0; j < n; j++) s += A.data[v * n + j] * x[j];
    z[v] = s > 0 ? s : 0;
  }
  for (let i = 0; i < d; i++) {
    let s = c2[i];
    for (let v = 0; v < p; v++) s += B.data[i * p + v] * z[v];
    if (D) for (let j = 0; j < n; j++) s += D.data[i * n + j] * x[j];
    out[i] = s;
  }
}

/** Plain Monte Carlo with the test's own sampler: estimates and standard errors. */
function monteCarlo(t: TestNet, N: number, seed: number) {
  const n = t.net.A.cols,
    d = t.net.B.rows;
  const g = normalGenerator(seed);
  const ys = new Float64Array(N * d);
  const x = new Float64Array(n),
    eps = new Float64Array(t.r),
    z = new Float64Array(t.net.A.rows),
    y = new Float64Array(d);
  for (let k = 0; k < N; k++) {
    for (let q = 0; q < t.r; q++) eps[q] = g();
    for (let i = 0; i < n; i++) {
      let s = t.mu[i];
      for (let q = 0; q < t.r; q++) s += t.G[i * t.r + q] * eps[q];
      x[i] = s;
    }
    forward(t, x, y, z);
    ys.set(y, k * d);
  }
  const mean = new Float64Array(d);
  for (let k = 0; k < N; k++) for (let i = 0; i < d; i++) mean[i] += ys[k * d + i];
  for (let i = 0; i < d; i++) mean[i] /= N;
  const cov = new Float64Array(d * d),
    m4 = new Float64Array(d * d);
  for (let k = 0; k < N; k++) {
    for (let i = 0; i < d; i++) {
      const ei = ys[k * d + i] - mean[i];
      for (let j = i; j < d; j++) {
        const pr = ei * (ys[k * d + j] - mean[j]);
        cov[i * d + j] += pr;
        m4[i * d + j] += pr * pr;
      }
    }
  }
  const covSe = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = i; j < d; j++) {
      const c = cov[i * d + j] / N;
      covSe[i * d + j] = covSe[j * d + i] = Math.sqrt(Math.max(0, m4[i * d + j] / N - c * c) / N);
      cov[i * d + j] = cov[j * d + i] = cov[i * d + j] / (N - 1);
    }
  const meanSe = Float64Array.from({ length: d }, (_, i) => Math.sqrt(cov[i * d + i] / N));
  return { mean, meanSe, cov, covSe };
}

/** Brute force from the literal formulas: K_uv = Rosenbaum - means, Cov = B K B^T + skip terms. */
function bruteForce(t: TestNet) {
  const { A, B, D } = t.net;
  const n = A.cols,
    p = A.rows,
    d = B.rows;
  const Sigma = naiveMatMul(t.G, naiveTranspose(t.G, n, t.r), n, t.r, n);
  const S = naiveMatMul(naiveMatMul(A.data, Sigma, p, n, n), naiveTranspose(A.data, p, n), p, n, p);
  const s = Float64Array.from({ length: p }, (_, v) => Math.sqrt(Math.max(0, S[v * p + v])));
  const K = new Float64Array(p * p),
    K0 = new Float64Array(p * p);
  for (let u = 0; u < p; u++)
    for (let v = 0; v < p; v++) {
      const rho = s[u] > 0 && s[v] > 0 ? S[u * p + v] / (s[u] * s[v]) : 0;
      const mu = t.net.m[u],
        mv = t.net.m[v];
      K[u * p + v] = reluCrossMoment(mu, s[u], mv, s[v], rho) - reluMean(mu, s[u]) * reluMean(mv, s[v]);
      K0[u * p + v] = reluCrossMomentPaper(s[u], s[v], rho) - (s[u] * s[v]) / (2 * Math.PI);
    }
  const Bt = naiveTranspose(B.data, d, p);
  const cov = naiveMatMul(naiveMatMul(B.data, K, d, p, p), Bt, d, p, d);
  const paper = naiveMatMul(naiveMatMul(B.data, K0, d, p, p), Bt, d, p, d);
  if (D) {
    const Dt = naiveTranspose(D.data, d, n);
    const DSD = naiveMatMul(naiveMatMul(D.data, Sigma, d, n, n), Dt, d, n, d);
    // B diag(Phi(a)) A Sigma D^T
    const BPhi = Float64Array.from(B.data, (b, idx) => {
      const v = idx % p;
      return s[v] > 0 ? b * Phi(t.net.m[v] / s[v]) : 0;
    });
    const cross = naiveMatMul(naiveMatMul(naiveMatMul(BPhi, A.data, d, p, n), Sigma, d, n, n), Dt, d, n, d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i * d + j] += DSD[i * d + j] + cross[i * d + j] + cross[j * d + i];
  }
  return { cov, paperVar: Float64Array.from({ length: d }, (_, i) => paper[i * d + i]) };
}

function maxAbs(x: Float64Array): number {
  let m = 0;
  for (const v of x) m = Math.max(m, Math.abs(v));
  return m;
}

describe("network moments vs Monte Carlo (10^6 samples, the test's own sampler)", () => {
  const cases: [string, NoiseCovariance['kind'], boolean][] = [
    ['isotropic noise', 'isotropic', false],
    ['diagonal noise with a zero variance', 'diagonal', false],
    ['singular full covariance', 'full', false],
    ['low-rank factor', 'lowrank', false],
    ['skip path D, isotropic', 'isotropic', true],
    ['skip path D, singular full covariance', 'full', true],
  ];
  cases.forEach(([name, kind, skip], idx) => {
    it(`mean, exact variance and covariance within 4 standard errors: ${name}`, async () => {
      const t = randomNet(100 + idx, 5, 8, 3, kind, skip);
      const res = await networkMoments(t.net, t.noise);
      const mc = monteCarlo(t, 1_000_000, 7 + idx);
      const d = 3;
      for (let i = 0; i < d; i++) {
        expect(Math.abs(res.mean[i] - mc.mean[i]), `mean ${i}`).toBeLessThan(4 * mc.meanSe[i]);
        for (let j = 0; j < d; j++) {
          const c = res.covariance as Float64Array;
          expect(Math.abs(c[i * d + j] - mc.cov[i * d + j]), `cov ${i},${j}`).toBeLessThan(4 * mc.covSe[i * d + j]);
        }
      }
      // the analytic answer is the exact one, not just close: the literal formulas (Rosenbaum minus the
      // product of the means, B K B^T) agree to the ~1e-9 those lose to cancellation around the surely-on
      // unit (m ~ 60); the next test shows the engine itself is accurate to ~1e-14
      const bf = bruteForce(t);
      const scale = maxAbs(bf.cov);
      for (let i = 0; i < d * d; i++) expect(Math.abs((res.covariance as Float64Array)[i] - bf.cov[i]) / scale).toBeLessThan(1e-8);
      expect(res.units.state[0]).toBe(UnitState.On);
      expect(res.units.state[1]).toBe(UnitState.Off);
      expect(res.units.state[2]).toBe(UnitState.Constant);
    });
  });

  it('the centred form keeps the digits the literal formula loses (30-digit reference)', async () => {
    // The 'diagonal noise' net above; reference Cov(g) from mpmath at 30 digits (Rosenbaum's formula
    // with a quadrature Phi2). The literal float64 formula is off by up to 1.6e-9 relative here.
    const ref = [
      2.91098081755016, 1.1151589945597522, 1.232460424278871, 1.1151589945597509, 0.6991686339761229, 0.187377472097873, 1.2324604242788735,
      0.18737747209787392, 2.2360317763110955,
    ];
    const t = randomNet(101, 5, 8, 3, 'diagonal');
    const res = await networkMoments(t.net, t.noise);
    for (let i = 0; i < 9; i++) expect(Math.abs((res.covariance as Float64Array)[i] - ref[i]) / ref[i], `element ${i}`).toBeLessThan(1e-13);
  });

  it("the paper's variance (Theorem 2) equals its literal formula B (C0 - m0 m0^T) B^T and underestimates here", async () => {
    const t = randomNet(300, 4, 7, 3, 'isotropic');
    const res = await networkMoments(t.net, t.noise);
    const bf = bruteForce(t);
    for (let i = 0; i < 3; i++) expect(Math.abs((res.variancePaper as Float64Array)[i] - bf.paperVar[i]) / bf.paperVar[i]).toBeLessThan(1e-12);
    expect([...(res.variancePaper as Float64Array)]).not.toEqual([...(res.variance as Float64Array)]);
  });
});

describe('network moments: identities and properties', () => {
  it("the paper's variance equals the exact variance when m = 0 (with and without a skip path)", async () => {
    for (const [kind, skip] of [
      ['isotropic', false],
      ['full', false],
      ['lowrank', true],
      ['diagonal', true],
    ] as const) {
      const t = randomNet(400, 4, 6, 3, kind, skip);
      t.net.m = new Float64Array(6);
      const res = await networkMoments(t.net, t.noise);
      for (let i = 0; i < 3; i++) {
        const v = (res.variance as Float64Array)[i];
        expect(Math.abs((res.variancePaper as Float64Array)[i] - v) / v, `${kind} skip=${skip}`).toBeLessThan(1e-12);
      }
    }
  });

  it('the covariance is symmetric positive semi-definite and its diagonal is the variance (property test)', async () => {
    const kinds = ['isotropic', 'diagonal', 'full', 'lowrank'] as const;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(...kinds),
        fc.boolean(),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.double({ min: 0.01, max: 30, noNaN: true }),
        async (n, p, d, kind, skip, seed, meanScale) => {
          const t = randomNet(seed, Math.max(n, 2), p, d, kind, skip);
          for (let v = 0; v < p; v++) t.net.m[v] *= meanScale; // from all uncertain to mostly decided
          const res = await networkMoments(t.net, t.noise);
          const C = res.covariance as Float64Array;
          let trace = 0;
          for (let i = 0; i < d; i++) {
            trace += C[i * d + i];
            expect(C[i * d + i]).toBe((res.variance as Float64Array)[i]);
            expect((res.variancePaper as Float64Array)[i]).toBeGreaterThanOrEqual(-1e-12);
            for (let j = 0; j < d; j++) expect(C[i * d + j]).toBe(C[j * d + i]);
          }
          expect(minEigenvalue(C, d)).toBeGreaterThanOrEqual(-1e-10 * Math.max(trace, 1e-300));
        },
      ),
      { numRuns: 150, seed: 42 },
    );
  });

  it('the pair kernel equals s_u s_v c(a_u, a_v; rho) of relu.ts for every branch of rho (incl. +-1)', () => {
    const q = 7;
    const a = Float64Array.of(-8.3, -2, -0.4, 0, 0.9, 3.3, 8.4);
    const s = Float64Array.of(0.5, 1, 2, 1.5, 0.7, 3, 1.1);
    const rhos = [-1, -0.999, -0.93, -0.9, -0.6, -0.2, 0, 0.25, 0.5, 0.8, 0.924, 0.925, 0.97, 1];
    const diag = Float64Array.from(a, (x, u) => s[u] * s[u] * reluVarianceCorrection(x));
    for (let k = 0; k < rhos.length; k++) {
      const R = new Float64Array(q * q);
      for (let u = 0; u < q; u++) for (let v = 0; v < q; v++) R[u * q + v] = u === v ? 1 : rhos[(k + u + 2 * v) % rhos.length];
      const panel = Float64Array.from(R, (r, i) => r * s[Math.floor(i / q)] * s[i % q]);
      pairPanel(panel, q, q, 0, s, a, diag, false);
      for (let u = 0; u < q; u++)
        for (let v = u + 1; v < q; v++) {
          const want = s[u] * s[v] * reluPairCorrection(a[u], a[v], R[u * q + v]);
          expect(Math.abs(panel[u * q + v] - want), `a=${a[u]},${a[v]} rho=${R[u * q + v]}`).toBeLessThanOrEqual(1e-15 * s[u] * s[v]);
          expect(panel[v * q + u]).toBe(panel[u * q + v]);
        }
    }
  });

  it('pair panels of any size give the same answer (memory-bounded folding)', async () => {
    const t = randomNet(500, 6, 40, 5, 'full');
    for (let v = 0; v < 40; v++) t.net.m[v] *= 0.2;
    const whole = await networkMoments(t.net, t.noise);
    expect(whole.units.uncertain).toBeGreaterThan(30);
    for (const panelElements of [1, 37, 200, 1000]) {
      const part = await networkMoments(t.net, t.noise, { panelElements });
      const scale = maxAbs(whole.covariance as Float64Array);
      for (let i = 0; i < 25; i++) expect(Math.abs((part.covariance as Float64Array)[i] - (whole.covariance as Float64Array)[i]) / scale).toBeLessThan(1e-13);
      for (let i = 0; i < 5; i++) {
        const w = (whole.variancePaper as Float64Array)[i];
        expect(Math.abs((part.variancePaper as Float64Array)[i] - w) / w).toBeLessThan(1e-13);
      }
      expect(part.pairTerms).toBe(whole.pairTerms);
    }
    const u = whole.units.uncertain;
    expect(whole.pairTerms).toBe((u * (u + 1)) / 2);
  });

  it('options: variance without covariance, no paper variance', async () => {
    const t = randomNet(600, 4, 10, 4, 'diagonal', true);
    const full = await networkMoments(t.net, t.noise);
    const v = await networkMoments(t.net, t.noise, { covariance: false, paper: false });
    expect(v.covariance).toBeUndefined();
    expect(v.variancePaper).toBeUndefined();
    expect(v.paperPairTerms).toBe(0);
    for (let i = 0; i < 4; i++) expect((v.variance as Float64Array)[i]).toBeCloseTo((full.variance as Float64Array)[i], 12);
    const m = await networkMoments(t.net, t.noise, { covariance: false, variance: false, paper: false });
    expect(m.variance).toBeUndefined();
    expect([...m.mean]).toEqual([...full.mean]);
  });

  it('per-unit a, s, Phi(a) and the expected flips', async () => {
    const t = randomNet(700, 3, 6, 2, 'isotropic');
    const res = await networkMoments(t.net, t.noise, { variance: false, covariance: false, paper: false });
    let flips = 0;
    for (let v = 0; v < 6; v++) {
      const s = 0.6 * Math.hypot(...t.net.A.data.subarray(v * 3, v * 3 + 3));
      expect(res.units.s[v]).toBeCloseTo(s, 13);
      if (s > 0) {
        expect(res.units.a[v]).toBeCloseTo(t.net.m[v] / s, 12);
        expect(res.units.Phi[v]).toBeCloseTo(Phi(t.net.m[v] / s), 14);
        flips += Phi(-Math.abs(t.net.m[v] / s));
      }
    }
    expect(expectedFlips(res.units)).toBeCloseTo(flips, 14);
    expect(res.units.on + res.units.off + res.units.uncertain + res.units.constant).toBe(6);
  });

  it('preActivationMean is bottom(xb) + A (mu - xb)', () => {
    const A = mat(Float64Array.of(1, 2, 3, 4, 5, 6), 2, 3);
    const m = preActivationMean(Float64Array.of(10, 20), A, Float64Array.of(1, 1, 1), Float64Array.of(0, 1, 2));
    expect([...m]).toEqual([10 + 1 - 3, 20 + 4 - 6]);
  });

  it('user errors are NetmomentsErrors', async () => {
    const t = randomNet(800, 3, 4, 2, 'isotropic');
    const bad = async (net: ShallowNetwork, noise: NoiseCovariance) => {
      await expect(networkMoments(net, noise)).rejects.toBeInstanceOf(NetmomentsError);
    };
    await bad({ ...t.net, m: new Float64Array(3) }, t.noise);
    await bad({ ...t.net, c2: new Float64Array(5) }, t.noise);
    await bad({ ...t.net, D: mat(new Float64Array(6), 2, 3) }, t.noise); // D without mu
    await bad(t.net, { kind: 'isotropic', sigma: -1 });
    await bad(t.net, { kind: 'diagonal', variance: Float64Array.of(1, Number.NaN, 1) });
    await bad(t.net, { kind: 'full', cov: Float64Array.of(1, 0.5, 0, 0, 1, 0, 0, 0, 1) }); // not symmetric
    await bad(t.net, { kind: 'lowrank', factor: new Float64Array(5), rank: 2 });
    const A = Float64Array.from(t.net.A.data);
    A[3] = Infinity;
    await bad({ ...t.net, A: mat(A, 4, 3) }, t.noise);
  });
});

describe('network moments on onnxruntime', () => {
  const ort = new OrtLinearAlgebra({ minFlops: 0 });
  afterAll(() => ort.release());

  it('equal the plain TypeScript results', async () => {
    for (const kind of ['isotropic', 'full', 'lowrank', 'diagonal'] as const) {
      const t = randomNet(900, 30, 120, 12, kind, kind === 'full');
      const u = mulberry32(1);
      for (let v = 0; v < 120; v++) t.net.m[v] *= u();
      const js = await networkMoments(t.net, t.noise, { panelElements: 2000 });
      const on = await networkMoments(t.net, t.noise, { linalg: ort, panelElements: 2000 });
      const scale = maxAbs(js.covariance as Float64Array);
      for (let i = 0; i < 144; i++) expect(Math.abs((on.covariance as Float64Array)[i] - (js.covariance as Float64Array)[i]) / scale).toBeLessThan(1e-12);
      for (let i = 0; i < 12; i++) {
        const w = (js.variancePaper as Float64Array)[i];
        expect(Math.abs((on.variancePaper as Float64Array)[i] - w) / w).toBeLessThan(1e-12);
      }
      for (let i = 0; i < 12; i++) expect(Math.abs(on.mean[i] - js.mean[i])).toBeLessThan(1e-12 * maxAbs(js.mean));
    }
  });
});
